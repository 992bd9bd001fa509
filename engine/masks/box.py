"""The box mask (MODELS-2.md §6.3), cached: it depends only on size, blur and padding.

Every face of every frame of a job asks for the same box, so it is built once per
(size, blur, padding) and shared, read-only, by all callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from engine.paste import box_mask as _paste_box_mask


def box_mask(
    size: int, blur: float, padding: float | Sequence[float] = (0.0, 0.0, 0.0, 0.0)
) -> np.ndarray:
    """The S×S float32 box mask, read-only (copy it before writing); ``padding`` is
    (top, right, bottom, left) or one number for all four."""
    values = (padding,) * 4 if isinstance(padding, int | float) else padding
    return _cached(int(size), float(blur), tuple(float(v) for v in values))


@lru_cache(maxsize=32)
def _cached(size: int, blur: float, padding: tuple[float, ...]) -> np.ndarray:
    mask = _paste_box_mask(size, blur, padding)
    mask.setflags(write=False)
    return mask
