"""Masks, colour correction and paste-back of an aligned face crop into its frame.

Every swapper and the enhancer produce an aligned square crop plus the frame →
crop matrix that made it; these helpers put it back. Paste-back runs once per
face per video frame, so it works only inside the bounding box of the warped
mask and never converts the whole frame to float.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from engine.errors import InvalidInput

# Mask weights below this cannot move a uint8 pixel by half a level (255 / 512 < 0.5),
# so they are treated as zero: pixels there stay exactly as they were.
MASK_EPSILON = 1.0 / 512.0

_BELOW_EPSILON = float(np.nextafter(np.float32(MASK_EPSILON), np.float32(0.0)))

Padding = float | Sequence[float]


def box_mask(size: int | tuple[int, int], blur: float = 0.3, padding: Padding = 0.0) -> np.ndarray:
    """FaceFusion's box mask: ones with a trimmed, Gaussian-feathered border.

    ``size`` is the crop size (an int for square crops, else ``(width, height)``).
    ``blur`` in 0..1: the blur amount is ``0.5·blur·width`` and the Gaussian sigma a
    quarter of that; a border of half the blur amount (at least 1 px) is zeroed
    first so that the feather ends inside the crop. ``padding`` is a fraction of
    the crop trimmed from each side, either one number or ``(top, right, bottom,
    left)``.
    """
    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if width <= 0 or height <= 0:
        raise InvalidInput(f"mask size must be positive, got {size!r}")
    if not 0.0 <= blur <= 1.0:
        raise InvalidInput(f"mask blur must be between 0 and 1, got {blur!r}")
    top, right, bottom, left = _padding4(padding)
    blur_amount = int(width * 0.5 * blur)
    blur_area = max(blur_amount // 2, 1)
    mask = np.ones((height, width), dtype=np.float32)
    mask[: max(blur_area, int(height * top)), :] = 0
    mask[height - max(blur_area, int(height * bottom)) :, :] = 0
    mask[:, : max(blur_area, int(width * left))] = 0
    mask[:, width - max(blur_area, int(width * right)) :] = 0
    if blur_amount > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), blur_amount * 0.25)
        cv2.threshold(mask, 1.0, 1.0, cv2.THRESH_TRUNC, dst=mask)  # the blur rounds over 1
    return mask


def _padding4(padding: Padding) -> tuple[float, float, float, float]:
    values = (padding,) * 4 if isinstance(padding, int | float) else tuple(padding)
    if len(values) != 4:
        raise InvalidInput(f"mask padding must be one number or four, got {padding!r}")
    for value in values:
        if not 0.0 <= float(value) <= 0.5:
            raise InvalidInput(f"mask padding must be between 0 and 0.5, got {padding!r}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def color_transfer(crop: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Match the LAB mean and standard deviation of ``crop`` to ``reference`` inside ``mask``.

    Both images are aligned crops of the same size (the new face and the
    original target face); statistics are taken where the mask exceeds 0.5 and
    the correction is applied to the whole crop. The std ratio is bounded so
    that a flat region cannot blow up the contrast.
    """
    found = color_map(crop, reference, mask)
    return crop.copy() if found is None else found.apply(crop)


@dataclass(frozen=True)
class ColorMap:
    """The correction ``color_transfer`` finds: per LAB channel ``lab·scale + shift``
    (L kept in 0..100). A pointwise map of colours, so it can be applied to the crop or,
    cheaper when the face is small in the frame, to the crop already warped into it."""

    scale: np.ndarray
    shift: np.ndarray

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (BGR uint8) mapped: exactly (float LAB) when it has no more pixels
        than the colour table, else through the table (``_table_map``)."""
        _check_image("image", image)
        if image.shape[0] * image.shape[1] <= _TABLE_ENTRIES:
            return cv2.convertScaleAbs(
                _matched_bgr(_lab(image), self.scale, self.shift), alpha=255.0
            )
        return _table_map(image, self.scale, self.shift)


def color_map(crop: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> ColorMap | None:
    """The map that gives ``crop`` the LAB mean and std of ``reference`` where ``mask``
    exceeds 0.5 (std ratio bounded to 0.5..2); None when the mask covers nothing.

    It runs per face per frame, so the statistics come from a regular sample of at
    most ``STATS_SIDE``² pixels: an unbiased estimate, and a face crop has plenty.
    """
    _check_image("crop", crop)
    _check_image("reference", reference)
    if crop.shape != reference.shape:
        raise InvalidInput(
            f"colour transfer needs equal sizes, got {crop.shape} and {reference.shape}"
        )
    if mask.shape != crop.shape[:2]:
        raise InvalidInput(f"mask shape {mask.shape} does not match crop {crop.shape[:2]}")
    step = -(-max(crop.shape[:2]) // STATS_SIDE)
    region = (mask[::step, ::step] > 0.5).astype(np.uint8)
    if step > 1 and not region.any():  # a sliver the sample misses: use every pixel
        step = 1
        region = (mask > 0.5).astype(np.uint8)
    if not region.any():
        return None
    src = _lab(crop[::step, ::step])
    ref = _lab(reference[::step, ::step])
    src_mean, src_std = (v.reshape(3) for v in cv2.meanStdDev(src, mask=region))
    ref_mean, ref_std = (v.reshape(3) for v in cv2.meanStdDev(ref, mask=region))
    ratio = np.clip(ref_std / np.maximum(src_std, 1e-3), 0.5, 2.0)
    # matched = (src − src_mean)·ratio + ref_mean, as one per-channel affine map.
    return ColorMap(ratio, ref_mean - src_mean * ratio)


# The colour table: the correction is a fixed function of a pixel's colour, so large crops
# are mapped through a table of it, computed per call (exactly, in float LAB) on a grid
# of colours: every blue level × green and red every TABLE_STEP levels. ``cv2.remap``
# then reads it with bilinear interpolation in green and red (blue is exact): x = blue·n
# + red/step, y = green/step. The error against mapping every pixel exactly is at most
# one level for ordinary corrections (a few levels in rare pixels near the gamut's edge
# for extreme ones), at a fifth of the cost at 1024 px.
STATS_SIDE = 128
TABLE_STEP = 15  # 255 = 17·15: the grid holds 0 and 255 exactly
_TABLE_N = 255 // TABLE_STEP + 1
_TABLE_ENTRIES = _TABLE_N * _TABLE_N * 256


def _lab(image: np.ndarray) -> np.ndarray:
    """Float LAB (L 0..100) of a BGR uint8 image (any strides)."""
    return cv2.cvtColor(image.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_BGR2LAB)


def _matched_bgr(lab: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """BGR in 0..1 of LAB pixels after the per-channel map ``lab·scale + shift``, L kept
    in 0..100."""
    matrix = np.zeros((3, 4), np.float32)
    matrix[:, :3] = np.diag(scale)
    matrix[:, 3] = shift
    matched = cv2.transform(lab, matrix)
    np.clip(matched[..., 0], 0.0, 100.0, out=matched[..., 0])
    bgr = cv2.cvtColor(matched, cv2.COLOR_LAB2BGR)
    np.clip(bgr, 0.0, 1.0, out=bgr)  # guard: convertScaleAbs would fold negatives up
    return bgr


@lru_cache(maxsize=1)
def _table_lab() -> np.ndarray:
    """The grid's colours in float LAB, laid out as the table: (n + 1, 256·n + 1, 3)."""
    levels = np.arange(_TABLE_N, dtype=np.float32) * TABLE_STEP
    green, blue, red = np.meshgrid(levels, np.arange(256, dtype=np.float32), levels, indexing="ij")
    grid = np.stack([blue, green, red], axis=-1).reshape(_TABLE_N, 256 * _TABLE_N, 3)
    # One more row and column, never weighted, so that every bilinear read is inside.
    grid = cv2.copyMakeBorder(grid, 0, 1, 0, 1, cv2.BORDER_REPLICATE)
    lab = _lab(grid.astype(np.uint8))
    lab.setflags(write=False)
    return lab


def _table_map(crop: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``crop`` mapped through the colour table of ``lab·scale + shift`` (see above)."""
    table = cv2.convertScaleAbs(
        cv2.cvtColor(_matched_bgr(_table_lab(), scale, shift), cv2.COLOR_BGR2BGRA), alpha=255.0
    )  # four channels: OpenCV's remap is several times faster on BGRA than on BGR
    blue, green, red = planes = [np.empty(crop.shape[:2], np.uint8) for _ in range(3)]
    cv2.split(crop, planes)  # into given buffers: ten times faster than its own outputs
    x = cv2.addWeighted(blue, float(_TABLE_N), red, 1.0 / TABLE_STEP, 0.0, dtype=cv2.CV_32F)
    y = cv2.addWeighted(green, 1.0 / TABLE_STEP, green, 0.0, 0.0, dtype=cv2.CV_32F)
    mapped = cv2.remap(table, x, y, cv2.INTER_LINEAR)
    return cv2.cvtColor(mapped, cv2.COLOR_BGRA2BGR)


def paste_back(
    frame: np.ndarray,
    crop: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray,
    *,
    color: ColorMap | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """A new frame with ``crop`` warped back by the inverse of ``matrix`` and blended by ``mask``.

    ``matrix`` maps frame → crop (as returned by ``align.warp_face``); ``mask``
    holds crop-sized weights in 0..1 (scale it to fade the whole face).
    Pixels where the warped mask is zero are returned unchanged, bit for bit.
    ``color``: a colour correction (``color_map``) to apply on the way, to the crop or
    to the warped face, whichever has fewer pixels (a small face at a large pixel-boost
    size: ten times fewer). ``out``: write into this frame-sized array instead of a copy
    of ``frame`` (it may be ``frame`` itself, for a caller that owns it).
    """
    region = _warp_region(frame, crop, matrix, mask, color)
    result = _output(frame, out)
    if region is None:
        return result
    (x0, y0, x1, y1), warped, weights = region
    _blend(frame[y0:y1, x0:x1], warped, weights, result[y0:y1, x0:x1])
    return result


def seamless_paste(
    frame: np.ndarray,
    crop: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray,
    *,
    color: ColorMap | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Like ``paste_back`` but Poisson-blended (``cv2.seamlessClone``) and then feathered.

    The Poisson solve matches the crop's gradients to the frame at the mask
    border, which hides seams in lighting better than alpha alone; the feathered
    mask is applied afterwards so that nothing outside the mask changes.
    """
    region = _warp_region(frame, crop, matrix, mask, color)
    result = _output(frame, out)
    if region is None:
        return result
    (x0, y0, x1, y1), warped, weights = region
    roi = frame[y0:y1, x0:x1]
    border = 2  # seamlessClone ignores the mask's outer pixel and needs room around it
    pad = (border, border, border, border)
    dst = cv2.copyMakeBorder(np.ascontiguousarray(roi), *pad, cv2.BORDER_REPLICATE)
    src = cv2.copyMakeBorder(warped, *pad, cv2.BORDER_REPLICATE)
    binary = np.zeros(dst.shape[:2], dtype=np.uint8)
    binary[border:-border, border:-border][weights > 0] = 255
    bx, by, bw, bh = cv2.boundingRect(binary)
    if bw >= 3 and bh >= 3:
        center = (bx + bw // 2, by + bh // 2)
        cloned = cv2.seamlessClone(src, dst, binary, center, cv2.NORMAL_CLONE)
        warped = cloned[border:-border, border:-border]
    _blend(roi, warped, weights, result[y0:y1, x0:x1])
    return result


def _output(frame: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return frame.copy()
    if out.shape != frame.shape or out.dtype != np.uint8:
        raise InvalidInput(f"out must be a uint8 array of shape {frame.shape}, got {out.shape}")
    if out is not frame:
        np.copyto(out, frame)
    return out


def _warp_region(
    frame: np.ndarray,
    crop: np.ndarray,
    matrix: np.ndarray,
    mask: np.ndarray,
    color: ColorMap | None = None,
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
    """Warp crop and mask into the frame box the mask covers; None when it covers nothing.

    The crop is warped as BGRA with one replicated border pixel and a constant border
    beyond: where the mask reaches, that reads exactly what ``BORDER_REPLICATE`` would,
    and OpenCV's constant-border four-channel warp is several times faster than its
    replicate or three-channel ones (a face's region can be a million pixels).
    """
    _check_image("frame", frame)
    _check_image("crop", crop)
    if mask.shape != crop.shape[:2]:
        raise InvalidInput(f"mask shape {mask.shape} does not match crop {crop.shape[:2]}")
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3) or not np.isfinite(matrix).all():
        raise InvalidInput(f"paste-back needs a finite 2x3 matrix, got shape {matrix.shape}")
    weights = np.asarray(mask, dtype=np.float32)
    left, top, columns, rows = cv2.boundingRect(cv2.compare(weights, MASK_EPSILON, cv2.CMP_GE))
    if columns == 0 or rows == 0:
        return None
    inverse = cv2.invertAffineTransform(matrix)
    right, bottom = left + columns, top + rows  # one past the last covered column / row
    corners = np.array(
        [[left - 1, top - 1], [right, top - 1], [left - 1, bottom], [right, bottom]],
        dtype=np.float64,
    )
    points = corners @ inverse[:, :2].T + inverse[:, 2]
    height, width = frame.shape[:2]
    x0 = max(int(np.floor(points[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(points[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(points[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(points[:, 1].max())) + 2, height)
    if x1 <= x0 or y1 <= y0:
        return None
    local = matrix.copy()  # region → crop, for WARP_INVERSE_MAP
    local[:, 2] += matrix[:, :2] @ (x0, y0)
    padded = local.copy()
    padded[:, 2] += 1.0  # the padded crop's pixel p + 1 is the crop's p
    size = (x1 - x0, y1 - y0)
    # A colour map is pointwise: apply it to whichever of crop and region is smaller.
    early = color is not None and crop.shape[0] * crop.shape[1] <= size[0] * size[1]
    if early:
        crop = color.apply(crop)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(
        _padded_bgra(crop), padded, size, flags=flags, borderMode=cv2.BORDER_CONSTANT
    )
    weights = cv2.warpAffine(
        weights, local, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0
    )
    # Weights clipped to 0..1 after the warp (it only interpolates), then below ε → 0.
    cv2.threshold(weights, 1.0, 1.0, cv2.THRESH_TRUNC, dst=weights)
    cv2.threshold(weights, _BELOW_EPSILON, 0.0, cv2.THRESH_TOZERO, dst=weights)  # NaN → 0
    warped = cv2.cvtColor(warped, cv2.COLOR_BGRA2BGR)
    if color is not None and not early:
        warped = color.apply(warped)
    return (x0, y0, x1, y1), warped, weights


def _padded_bgra(crop: np.ndarray) -> np.ndarray:
    """``crop`` as BGRA with its edge pixels repeated once around it, in one pass."""
    height, width = crop.shape[:2]
    padded = np.empty((height + 2, width + 2, 4), np.uint8)
    cv2.cvtColor(crop, cv2.COLOR_BGR2BGRA, dst=padded[1:-1, 1:-1])
    padded[0], padded[-1] = padded[1], padded[-2]
    padded[:, 0], padded[:, -1] = padded[:, 1], padded[:, -2]
    return padded


def _blend(roi: np.ndarray, warped: np.ndarray, weights: np.ndarray, dst: np.ndarray) -> None:
    """``dst = weights·warped + (1 − weights)·roi``, rounded; exact ``roi`` where the weight
    is 0. ``dst`` may be ``roi`` itself.

    ``cv2.blendLinear`` does this in one pass, about ten times faster than the
    same expression in numpy float32 on a face-sized region.
    """
    cv2.blendLinear(warped, roi, weights, 1.0 - weights, dst=dst)


def _check_image(name: str, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InvalidInput(f"{name} must be a uint8 image array")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInput(f"{name} must be a BGR image of shape (H, W, 3), got {image.shape}")
