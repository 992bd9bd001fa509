"""The area mask: one convex hull over chosen 68-point landmarks (MODELS-2.md §6.3).

The face's 68 frame-space landmarks are moved into the crop with the crop matrix;
the hull is taken over the union of all chosen areas' points (one hull, not one per
area), filled with 1 and softened.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from engine.align import transform_points
from engine.errors import InvalidInput, InvalidOptions
from engine.masks.soften import soften

SUBPIXEL_BITS = 4  # cv2.fillConvexPoly's fixed-point shift: vertices to 1/16 px
LIMIT = float(1 << 20)


def area_mask(
    size: int, matrix: np.ndarray, landmarks_68: np.ndarray | None, points: Sequence[int]
) -> np.ndarray:
    """The softened S×S mask of the hull of ``landmarks_68[points]`` in the crop."""
    if landmarks_68 is None:
        raise InvalidOptions(
            "the 'area' face mask needs the face's 68-point landmarks; run a 68-point "
            "landmarker (or fan_68_5) with it"
        )
    landmarks = np.asarray(landmarks_68, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    if landmarks.shape != (68, 2) or not np.isfinite(landmarks).all():
        raise InvalidInput(f"68-point landmarks must be 68 finite (x, y), got {landmarks.shape}")
    if matrix.shape != (2, 3) or not np.isfinite(matrix).all():
        raise InvalidInput(f"the crop matrix must be a finite 2x3 matrix, got {matrix.shape}")
    crop_points = transform_points(landmarks[list(points)], matrix)
    np.clip(crop_points, -LIMIT, LIMIT, out=crop_points)  # int32 fixed point cannot overflow
    hull = cv2.convexHull(np.rint(crop_points * (1 << SUBPIXEL_BITS)).astype(np.int32))
    mask = np.zeros((size, size), dtype=np.float32)
    cv2.fillConvexPoly(mask, hull, 1.0, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    return soften(mask)
