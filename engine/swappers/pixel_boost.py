"""Pixel boost: run a swapper of native size M on a crop of k·M pixels (MODELS-2.md §5.5).

The k·M crop is split into k² polyphase sub-images of M×M ("implode", space to depth):
sub-image ``i·k + j`` holds crop pixel ``(a·k + i, b·k + j)`` at ``(a, b)``, so each is a
whole face, k times downsampled and shifted by a sub-pixel. Each is swapped on its own
and the results are interleaved back ("explode", depth to space). The swapped face then
keeps the detail of a large target face instead of being upscaled from M pixels.

``implode_blob`` and ``explode_bgr`` do the same split and merge for a swapper's network
blob directly, with the per-channel normalisation and BGR↔RGB swap folded in: rows
``a·k + i`` of an image, viewed as an M×M image of k (or 3·k) channels, hold the
sub-images (i, 0..k−1) side by side, so ``cv2.split`` / ``cv2.merge`` per i and one
OpenCV scale-and-convert per plane replace numpy's strided copies and float temporaries
(about ten times faster at 1024 px, where they ran per face per frame).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
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


def implode_blob(
    crop: np.ndarray, k: int, scale: Sequence[float], offset: Sequence[float]
) -> np.ndarray:
    """The (k², 3, M, M) float32 RGB blob of a (k·M, k·M, 3) BGR uint8 crop:
    ``blob[i·k + j, c, a, b] = crop[a·k + i, b·k + j, 2 − c]·scale[c] + offset[c]``."""
    size = _check(crop.shape[:2], k, "crop")
    if crop.dtype != np.uint8 or crop.shape[2:] != (3,):
        raise InvalidInput(
            f"pixel boost: the crop must be BGR uint8, got {crop.dtype} {crop.shape}"
        )
    m = size // k
    blob = np.empty((k * k, 3, m, m), np.float32)
    # Into given buffers: cv2.split allocating its own outputs is ten times slower, and
    # 3 then k channels at a time take its fast paths (3·k channels at once do not).
    channels = [np.empty((size, size), np.uint8) for _ in range(3)]
    cv2.split(np.ascontiguousarray(crop), channels)
    tiles = [np.empty((m, m), np.uint8) for _ in range(k)]
    for bgr, channel in enumerate(channels):
        c = 2 - bgr  # RGB index
        rows = channel.reshape(m, k, size)
        for i in range(k):
            if k == 1:
                tiles[0] = channel
            else:
                cv2.split(rows[:, i].reshape(m, m, k), tiles)  # tile (i, j) = tiles[j]
            for j, tile in enumerate(tiles):
                cv2.addWeighted(
                    tile, float(scale[c]), tile, 0.0, float(offset[c]),
                    dst=blob[i * k + j, c], dtype=cv2.CV_32F,
                )  # fmt: skip
    return blob


def explode_bgr(
    blob: np.ndarray | Sequence[np.ndarray], k: int, scale: Sequence[float], offset: Sequence[float]
) -> np.ndarray:
    """The (k·M, k·M, 3) BGR uint8 crop of k² RGB (3, M, M) float sub-images (an array
    (k², 3, M, M) or a sequence), the inverse of ``implode_blob``: pixel (a·k + i, b·k + j),
    BGR channel 2 − c, is ``blob[i·k + j][c, a, b]·scale[c] + offset[c]`` rounded and
    saturated to 0..255."""
    if k < 1 or len(blob) != k * k:
        raise InvalidInput(f"pixel boost: {k}x{k} needs {k * k} sub-images, got {len(blob)}")
    tiles = [np.asarray(tile, dtype=np.float32) for tile in blob]
    m = tiles[0].shape[-1] if tiles[0].ndim == 3 else 0
    if m == 0 or any(tile.shape != (3, m, m) for tile in tiles):
        raise InvalidInput(f"pixel boost: the sub-images must all be (3, {m}, {m}) RGB")
    size = k * m
    crop = np.empty((size, size, 3), np.uint8)
    rows = crop.reshape(m, k, size * 3)
    for i in range(k):
        planes = []
        for j in range(k):
            tile = tiles[i * k + j]
            for c in (2, 1, 0):
                plane = np.ascontiguousarray(tile[c])
                planes.append(
                    cv2.addWeighted(
                        plane, float(scale[c]), plane, 0.0, float(offset[c]), dtype=cv2.CV_8U
                    )
                )
        cv2.merge(planes, dst=rows[:, i].reshape(m, m, 3 * k))
    return crop


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
