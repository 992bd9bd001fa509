"""The embedded ``classic`` swapper: no model, works on a fresh offline machine.

It copies the source face's pixels onto each target face: both faces are
aligned to the same ``arcface_128`` template crop by their five landmarks (a
similarity transform), the source crop takes the target's colour (LAB mean and
standard deviation inside the face oval), and the result is blended back
through a feathered oval mask, by alpha or by Poisson (``seamlessClone``).
It cannot change expression or pose the way a learned swapper does; it is the
fallback until a better model is installed.
"""

from __future__ import annotations

import cv2
import numpy as np

from engine.align import estimate_affine
from engine.errors import InvalidInput
from engine.faces import Face
from engine.options import SwapOptions
from engine.paste import color_transfer, paste_back, seamless_paste
from engine.swappers.base import SourceIdentity

TEMPLATE = "arcface_128"
# The face oval in arcface_128 template coordinates (fractions of the crop): it runs
# from the forehead just above the brows to the chin and between the cheeks.
OVAL_CENTER = (0.5, 0.56)
OVAL_AXES = (0.26, 0.34)
MIN_CROP, MAX_CROP = 64, 512


class ClassicSwapper:
    """Similarity-aligned pixel transfer with colour matching and a feathered oval mask."""

    name = "classic"
    needs_embedding = False

    def swap(
        self, frame: np.ndarray, target: Face, source: SourceIdentity, options: SwapOptions
    ) -> np.ndarray:
        _check_frame("target frame", frame)
        _check_frame("source image", source.image)
        target_points = _landmarks("target face", target)
        source_points = _landmarks("source face", source.face)
        size = crop_size(target_points)
        target_matrix = estimate_affine(target_points, TEMPLATE, size)
        source_matrix = estimate_affine(source_points, TEMPLATE, size)
        # Replicate the border: a small source photo may not cover the whole crop.
        source_crop = cv2.warpAffine(
            source.image,
            source_matrix,
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        mask = oval_mask(size, options.mask_blur, options.mask_padding)
        if options.color_correction:
            target_crop = cv2.warpAffine(
                frame,
                target_matrix,
                (size, size),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            source_crop = color_transfer(source_crop, target_crop, mask)
        if options.blend_mode == "poisson":
            return seamless_paste(frame, source_crop, target_matrix, mask)
        return paste_back(frame, source_crop, target_matrix, mask)


def crop_size(landmarks: np.ndarray) -> int:
    """The template crop size at which the target face keeps its own resolution.

    Working at the target's scale avoids blurring large faces (a fixed small crop
    would be upscaled on paste-back) and wasting time on small ones.
    """
    matrix = estimate_affine(landmarks, TEMPLATE, 128)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    native = 128.0 / max(scale, 1e-6)
    return int(np.clip(round(native / 2) * 2, MIN_CROP, MAX_CROP))


def oval_mask(size: int, blur: float, padding: float) -> np.ndarray:
    """Feathered face oval in an aligned crop, with the box mask's blur and padding rules.

    ``padding`` shrinks both axes by that fraction of the crop; ``blur`` feathers
    the edge with a Gaussian of sigma ``0.125·blur·size`` (FaceFusion's box-mask
    rule), after shrinking the oval by two sigmas so the feather ends near the
    oval's drawn edge rather than spilling past it.
    """
    if not 0.0 <= blur <= 1.0:
        raise InvalidInput(f"mask blur must be between 0 and 1, got {blur!r}")
    if not 0.0 <= padding <= 0.5:
        raise InvalidInput(f"mask padding must be between 0 and 0.5, got {padding!r}")
    blur_amount = int(size * 0.5 * blur)
    shrink = padding * size + blur_amount // 2
    axes = (
        max(int(round(OVAL_AXES[0] * size - shrink)), 1),
        max(int(round(OVAL_AXES[1] * size - shrink)), 1),
    )
    center = (int(round(OVAL_CENTER[0] * size)), int(round(OVAL_CENTER[1] * size)))
    canvas = np.zeros((size, size), dtype=np.uint8)
    cv2.ellipse(canvas, center, axes, 0, 0, 360, 255, thickness=-1, lineType=cv2.LINE_AA)
    mask = canvas.astype(np.float32) / 255.0
    if blur_amount > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), blur_amount * 0.25)
    return mask


def _landmarks(what: str, face: Face) -> np.ndarray:
    points = np.asarray(face.landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise InvalidInput(f"{what} needs five finite (x, y) landmarks, got shape {points.shape}")
    return points


def _check_frame(what: str, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise InvalidInput(f"{what} must be a BGR uint8 image array")
    if image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInput(f"{what} must have shape (H, W, 3), got {image.shape}")
