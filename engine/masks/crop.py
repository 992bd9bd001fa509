"""The one check every mask makes on the crop it is given."""

from __future__ import annotations

import numpy as np

from engine.errors import InvalidInput


def check_crop(name: str, crop: np.ndarray) -> int:
    """The size S of a square S×S BGR uint8 crop; ``InvalidInput`` otherwise."""
    if (
        not isinstance(crop, np.ndarray)
        or crop.dtype != np.uint8
        or crop.ndim != 3
        or crop.shape[2] != 3
        or crop.shape[0] != crop.shape[1]
        or crop.shape[0] == 0
    ):
        raise InvalidInput(
            f"a face mask needs {name} as a square BGR uint8 crop, "
            f"got shape {getattr(crop, 'shape', None)}"
        )
    return int(crop.shape[0])
