"""Masks, colour correction and paste-back of an aligned face crop into its frame.

Every swapper and the enhancer produce an aligned square crop plus the frame →
crop matrix that made it; these helpers put it back. Paste-back runs once per
face per video frame, so it works only inside the bounding box of the warped
mask and never converts the whole frame to float.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from engine.errors import InvalidInput

# Mask weights below this cannot move a uint8 pixel by half a level (255 / 512 < 0.5),
# so they are treated as zero: pixels there stay exactly as they were.
MASK_EPSILON = 1.0 / 512.0

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
    _check_image("crop", crop)
    _check_image("reference", reference)
    if crop.shape != reference.shape:
        raise InvalidInput(
            f"colour transfer needs equal sizes, got {crop.shape} and {reference.shape}"
        )
    if mask.shape != crop.shape[:2]:
        raise InvalidInput(f"mask shape {mask.shape} does not match crop {crop.shape[:2]}")
    region = (mask > 0.5).astype(np.uint8)
    if not region.any():
        return crop.copy()
    src = cv2.cvtColor(crop.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_BGR2LAB)
    ref = cv2.cvtColor(reference.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_BGR2LAB)
    src_mean, src_std = (v.reshape(3) for v in cv2.meanStdDev(src, mask=region))
    ref_mean, ref_std = (v.reshape(3) for v in cv2.meanStdDev(ref, mask=region))
    ratio = np.clip(ref_std / np.maximum(src_std, 1e-3), 0.5, 2.0)
    # matched = (src − src_mean)·ratio + ref_mean, as one per-channel affine map.
    scale = ratio.astype(np.float32)
    shift = (ref_mean - src_mean * ratio).astype(np.float32)
    matched = src * scale + shift
    np.clip(matched[..., 0], 0.0, 100.0, out=matched[..., 0])
    bgr = cv2.cvtColor(matched, cv2.COLOR_LAB2BGR)
    np.clip(bgr, 0.0, 1.0, out=bgr)  # guard: convertScaleAbs would fold negatives up
    return cv2.convertScaleAbs(bgr, alpha=255.0)


def paste_back(
    frame: np.ndarray, crop: np.ndarray, matrix: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """A new frame with ``crop`` warped back by the inverse of ``matrix`` and blended by ``mask``.

    ``matrix`` maps frame → crop (as returned by ``align.warp_face``); ``mask``
    holds crop-sized weights in 0..1 (scale it to fade the whole face).
    Pixels where the warped mask is zero are returned unchanged, bit for bit.
    """
    region = _warp_region(frame, crop, matrix, mask)
    result = frame.copy()
    if region is None:
        return result
    (x0, y0, x1, y1), warped, weights = region
    roi = frame[y0:y1, x0:x1]
    result[y0:y1, x0:x1] = _blend(roi, warped, weights)
    return result


def seamless_paste(
    frame: np.ndarray, crop: np.ndarray, matrix: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Like ``paste_back`` but Poisson-blended (``cv2.seamlessClone``) and then feathered.

    The Poisson solve matches the crop's gradients to the frame at the mask
    border, which hides seams in lighting better than alpha alone; the feathered
    mask is applied afterwards so that nothing outside the mask changes.
    """
    region = _warp_region(frame, crop, matrix, mask)
    result = frame.copy()
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
    if bw < 3 or bh < 3:
        result[y0:y1, x0:x1] = _blend(roi, warped, weights)
        return result
    center = (bx + bw // 2, by + bh // 2)
    cloned = cv2.seamlessClone(src, dst, binary, center, cv2.NORMAL_CLONE)
    cloned = cloned[border:-border, border:-border]
    result[y0:y1, x0:x1] = _blend(roi, cloned, weights)
    return result


def _warp_region(
    frame: np.ndarray, crop: np.ndarray, matrix: np.ndarray, mask: np.ndarray
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
    """Warp crop and mask into the frame box the mask covers; None when it covers nothing."""
    _check_image("frame", frame)
    _check_image("crop", crop)
    if mask.shape != crop.shape[:2]:
        raise InvalidInput(f"mask shape {mask.shape} does not match crop {crop.shape[:2]}")
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3) or not np.isfinite(matrix).all():
        raise InvalidInput(f"paste-back needs a finite 2x3 matrix, got shape {matrix.shape}")
    weights = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    weights[weights < MASK_EPSILON] = 0.0
    rows = np.flatnonzero(weights.any(axis=1))
    cols = np.flatnonzero(weights.any(axis=0))
    if rows.size == 0:
        return None
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array(
        [
            [cols[0] - 1, rows[0] - 1],
            [cols[-1] + 1, rows[0] - 1],
            [cols[0] - 1, rows[-1] + 1],
            [cols[-1] + 1, rows[-1] + 1],
        ],
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
    local = inverse.copy()
    local[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(
        crop, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    weights = cv2.warpAffine(
        weights,
        local,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    weights[weights < MASK_EPSILON] = 0.0
    return (x0, y0, x1, y1), warped, weights


def _blend(roi: np.ndarray, warped: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights·warped + (1 − weights)·roi``, rounded; exact ``roi`` where the weight is 0.

    ``cv2.blendLinear`` does this in one pass, about ten times faster than the
    same expression in numpy float32 on a face-sized region.
    """
    return cv2.blendLinear(warped, np.ascontiguousarray(roi), weights, 1.0 - weights)


def _check_image(name: str, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InvalidInput(f"{name} must be a uint8 image array")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInput(f"{name} must be a BGR image of shape (H, W, 3), got {image.shape}")
