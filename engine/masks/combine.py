"""Combining masks (MODELS-2.md §6.4): the element-wise minimum, clipped to [0, 1].

No product and no union anywhere, and no blur after combining.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.errors import InvalidInput
from engine.paste import MASK_EPSILON


def combine(masks: Sequence[np.ndarray]) -> np.ndarray:
    """A new float32 array: the minimum of ``masks`` (all the same shape), in [0, 1]."""
    if not masks:
        raise InvalidInput("combining face masks needs at least one mask")
    shape = masks[0].shape
    if any(mask.shape != shape for mask in masks):
        raise InvalidInput(f"face masks differ in shape: {[m.shape for m in masks]}")
    result = np.array(masks[0], dtype=np.float32, copy=True)
    for mask in masks[1:]:
        np.minimum(result, mask, out=result)
    return np.clip(result, 0.0, 1.0, out=result)


def is_empty(mask: np.ndarray) -> bool:
    """Whether the mask lets nothing through: paste-back would leave the face untouched
    (weights below ``MASK_EPSILON`` cannot move a uint8 pixel and count as zero)."""
    return not bool((np.asarray(mask) >= MASK_EPSILON).any())
