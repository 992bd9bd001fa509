"""Pixel boost: run a swapper of native size M on a crop of k·M pixels (MODELS-2.md §5.5).

The k·M crop is split into k² polyphase sub-images of M×M ("implode", space to depth):
sub-image ``i·k + j`` holds crop pixel ``(a·k + i, b·k + j)`` at ``(a, b)``, so each is a
whole face, k times downsampled and shifted by a sub-pixel. Each is swapped on its own
and the results are interleaved back ("explode", depth to space). The swapped face then
keeps the detail of a large target face instead of being upscaled from M pixels.
"""

from __future__ import annotations

import numpy as np

from engine.errors import InvalidInput


def implode(crop: np.ndarray, k: int) -> np.ndarray:
    """(k², M, M, …) sub-images of a (k·M, k·M, …) crop, ordered i-major (index i·k + j)."""
    size = _check(crop.shape[:2], k, "crop")
    m = size // k
    rest = crop.shape[2:]
    # crop[a·k + i, b·k + j] → grid[a, i, b, j] → tiles[i, j, a, b]
    grid = crop.reshape(m, k, m, k, *rest)
    order = (1, 3, 0, 2, *range(4, 4 + len(rest)))
    return np.ascontiguousarray(grid.transpose(order)).reshape(k * k, m, m, *rest)


def explode(tiles: np.ndarray, k: int) -> np.ndarray:
    """The (k·M, k·M, …) crop whose pixel (a·k + i, b·k + j) is pixel (a, b) of tile i·k + j."""
    if k < 1 or tiles.ndim < 3 or tiles.shape[0] != k * k:
        raise InvalidInput(f"pixel boost: {k}x{k} needs {k * k} sub-images, got {tiles.shape}")
    m = _check(tiles.shape[1:3], 1, "sub-image")
    rest = tiles.shape[3:]
    grid = tiles.reshape(k, k, m, m, *rest)
    order = (2, 0, 3, 1, *range(4, 4 + len(rest)))
    return np.ascontiguousarray(grid.transpose(order)).reshape(k * m, k * m, *rest)


def _check(shape: tuple[int, ...], k: int, what: str) -> int:
    if not isinstance(k, int | np.integer) or k < 1:
        raise InvalidInput(f"pixel boost factor must be a positive integer, got {k!r}")
    height, width = shape
    if height != width or height == 0 or height % k:
        raise InvalidInput(
            f"pixel boost: the {what} must be square with a side divisible by {k}, "
            f"got {height}x{width}"
        )
    return int(height)
