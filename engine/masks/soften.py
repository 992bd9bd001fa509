"""FaceFusion's "soften" step for the occlusion, region and area masks (MODELS-2.md §6.3).

Gaussian blur, clip to [0.5, 1], map m → (m − 0.5)·2: everything the blur leaves below
one half becomes 0 and the edge turns into a steep ramp inside the shape. FaceFusion
blurs with σ = 5 on its crops; σ here scales with the crop (5·S/256) so that a
pixel-boosted crop gets the same edge relative to the face — at S = 256 it is exactly
FaceFusion's.
"""

from __future__ import annotations

import cv2
import numpy as np

SIGMA_AT_256 = 5.0


def soften_sigma(size: int) -> float:
    """The blur σ for an S×S crop."""
    return SIGMA_AT_256 * size / 256.0


def soften(mask: np.ndarray) -> np.ndarray:
    """The softened float32 mask (a new array); ``mask`` is an S×S float mask."""
    mask = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    blurred = cv2.GaussianBlur(mask, (0, 0), soften_sigma(mask.shape[1]))
    np.clip(blurred, 0.5, 1.0, out=blurred)
    blurred -= 0.5
    blurred *= 2.0
    return blurred
