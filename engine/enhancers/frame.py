"""Whole-frame upscalers (family ``real_esrgan``, MODELS-2.md §9), run tile by tile.

A frame is upscaled in fixed-size tiles so memory is bounded by the tile, not the
frame. Tiling is *exact*: tiles overlap by ``o`` input pixels on every side and only
each tile's core (the tile less its ``o``-pixel border) is kept, the cores placed edge
to edge. An output pixel of a core depends only on input pixels within the network's
receptive-field radius, all inside its tile when the radius is ≤ ``o``, so the result
is the one the network gives on the whole frame at once — no seams, no blending.

Frame borders are reflect-padded (``cv2.BORDER_REFLECT_101``), by FaceFusion's amount
(pad + overlap = 24 px) but with mirrored content instead of FaceFusion's zeros, so
the picture's edge gets no dark fringe.

Overlap: the family's 8 px (FaceFusion's). Real-ESRGAN's *theoretical* receptive
field (hundreds of 3×3 convolutions) is far larger than any tile, so no practical
overlap makes it bit-exact; its effective field decays within a few pixels, and 8 px
is what FaceFusion ships. Networks whose radius is ≤ ``overlap`` get exact results;
pass a larger ``overlap`` for a network that needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.errors import InvalidInput, InvalidOptions, ModelUnavailable
from engine.families.io import BoundIO, bind_session
from engine.families.table import FRAME_ENHANCER_FAMILIES, FRAME_ENHANCER_IO
from engine.models.registry import ModelSpec
from engine.runtime import SessionCache

MAX_SCALE = 8
PROBE_SIZE = 64  # divisible by every pixel-unshuffle factor up to MAX_SCALE
DEFAULT_BATCH = 4

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Tile:
    """One tile: its window's top-left in the padded frame, and the frame rows/columns
    [y0, y1) × [x0, x1) its core fills."""

    top: int
    left: int
    y0: int
    y1: int
    x0: int
    x1: int


def tile_starts(length: int, tile: int, core: int) -> list[int]:
    """Window starts along one padded axis of ``length`` ≥ ``tile``: every ``core``
    pixels, the last one moved back to end at the edge (its core then overlaps the
    previous one's, with the same values)."""
    return [*range(0, length - tile, core), length - tile]


class FrameEnhancer:
    """Runs one frame-enhancer file on whole frames; shared by the jobs of a worker.

    ``tile``: the tile side for a file with dynamic height/width (a fixed file's own
    size always wins; default the family's 256). ``overlap``: context kept around each
    tile's core (default the family's 8). ``batch``: tiles per run when the file's batch
    axis is dynamic (a fixed batch axis is filled to its size).
    """

    def __init__(
        self,
        sessions: SessionCache,
        spec: ModelSpec,
        path: str | Path,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        family = FRAME_ENHANCER_FAMILIES.get(spec.family)
        if family is None:
            raise ModelUnavailable(
                f"model {spec.name}: family {spec.family!r} is not a frame enhancer "
                f"({', '.join(FRAME_ENHANCER_FAMILIES)})"
            )
        self.name = spec.name
        self.path = Path(path)
        self.session = sessions.get(self.path)
        io = bind_session(spec.name, spec.family, FRAME_ENHANCER_IO, self.session)
        self._input = io.inputs[0]
        self._output = io.outputs[0].name
        self._dtype = np.float16 if self._input.dtype == "float16" else np.float32
        if overlap is not None and not (isinstance(overlap, int) and overlap >= 0):
            raise InvalidOptions(f"frame enhancer overlap must be an integer ≥ 0; got {overlap!r}")
        self.overlap = family.overlap if overlap is None else overlap
        self.tile = self._tile_size(family.tile if tile is None else tile)
        if self.tile <= 2 * self.overlap:
            error = InvalidOptions if tile is not None or overlap is not None else ModelUnavailable
            raise error(
                f"model {self.name}: tile {self.tile} leaves no core with overlap "
                f"{self.overlap} (the tile must exceed twice the overlap)"
            )
        self.border = family.pad + self.overlap
        fixed_batch = self._input.shape[0] if self._input.shape else None
        self._batch = fixed_batch or max(1, int(batch))
        self._fixed_batch = fixed_batch is not None
        self.scale = self._scale(io, spec)

    # -- set-up ---------------------------------------------------------------------------

    def _tile_size(self, requested: int) -> int:
        """The file's fixed input size, else ``requested`` (dynamic axes)."""
        shape = self._input.shape or (None, 3, None, None)
        height, width = shape[2], shape[3]
        if height is None and width is None:
            if not isinstance(requested, int) or requested < 1:
                raise InvalidOptions(
                    f"frame enhancer tile must be a positive integer; got {requested!r}"
                )
            return requested
        if height != width:
            raise ModelUnavailable(
                f"model {self.name}: input {self._input.name!r} must be square with both "
                f"sides fixed or both dynamic; it is {height}×{width}"
            )
        return int(height)  # type: ignore[arg-type]

    def _scale(self, io: BoundIO, spec: ModelSpec) -> int:
        """From the file's fixed output/input ratio; else the catalogue's; else measured
        by running one tile of zeros."""
        out_shape = io.outputs[0].shape
        in_shape = self._input.shape
        if in_shape and out_shape and len(out_shape) == 4:
            ratios = {
                (out_shape[axis], in_shape[axis])
                for axis in (2, 3)
                if out_shape[axis] is not None and in_shape[axis] is not None
            }
            if ratios:
                return self._checked_scale(ratios, "its declared shapes")
        if spec.scale is not None:
            return int(spec.scale)
        size = self.tile if in_shape and in_shape[2] is not None else min(self.tile, PROBE_SIZE)
        probe = np.zeros((self._batch if self._fixed_batch else 1, 3, size, size), self._dtype)
        result = self.session.run([self._output], {self._input.name: probe})[0]
        return self._checked_scale({(result.shape[2], size), (result.shape[3], size)}, "one tile")

    def _checked_scale(self, ratios: set[tuple[int, int]], source: str) -> int:
        scales = {out / inp for out, inp in ratios}
        scale = next(iter(scales))
        if len(scales) != 1 or not float(scale).is_integer() or not 1 <= scale <= MAX_SCALE:
            pairs = ", ".join(f"{inp}→{out}" for out, inp in sorted(ratios))
            raise ModelUnavailable(
                f"model {self.name}: output {self._output!r} is not an integer upscale "
                f"1…{MAX_SCALE} of input {self._input.name!r} by {source} ({pairs})"
            )
        return int(scale)

    # -- public ---------------------------------------------------------------------------

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the enhanced frame, so callers can bound megapixels."""
        return width * self.scale, height * self.scale

    def enhance(
        self, frame: np.ndarray, *, blend: float, progress: Progress | None = None
    ) -> np.ndarray:
        """The frame upscaled ×scale: the bilinear-resized original mixed with the
        network's output by ``blend`` (0: only the resize, 1: only the network)."""
        try:
            alpha = float(blend)
        except (TypeError, ValueError):
            alpha = float("nan")
        if not 0.0 <= alpha <= 1.0:
            raise InvalidOptions(f"frame enhancer blend must be between 0 and 1; got {blend!r}")
        _check_frame(frame)
        height, width = frame.shape[:2]
        size = self.output_size(width, height)
        resized = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
        if alpha == 0.0:
            return resized
        enhanced = self.upscale(frame, progress=progress)
        return cv2.addWeighted(resized, 1.0 - alpha, enhanced, alpha, 0.0)

    def upscale(self, frame: np.ndarray, *, progress: Progress | None = None) -> np.ndarray:
        """The network's output for the whole frame (uint8 BGR, H·s × W·s), tile by tile."""
        _check_frame(frame)
        height, width = frame.shape[:2]
        s, o, border = self.scale, self.overlap, self.border
        # Reflect-pad; a frame smaller than a tile gets more (beyond the cores it uses).
        extra_y = max(0, self.tile - (height + 2 * border))
        extra_x = max(0, self.tile - (width + 2 * border))
        padded = cv2.copyMakeBorder(
            frame, border, border + extra_y, border, border + extra_x, cv2.BORDER_REFLECT_101
        )
        tiles = list(self._tiles(padded.shape[0], padded.shape[1], height, width))
        canvas = np.empty((height * s, width * s, 3), np.uint8)
        done = 0
        if progress is not None:
            progress(0, len(tiles))
        for start in range(0, len(tiles), self._batch):
            group = tiles[start : start + self._batch]
            cores = self._run(padded, group)
            for item, core in zip(group, cores, strict=False):
                top = (item.y0 + border - item.top - o) * s
                left = (item.x0 + border - item.left - o) * s
                rows, cols = (item.y1 - item.y0) * s, (item.x1 - item.x0) * s
                canvas[item.y0 * s : item.y1 * s, item.x0 * s : item.x1 * s] = core[
                    top : top + rows, left : left + cols
                ]
            done += len(group)
            if progress is not None:
                progress(done, len(tiles))
        return canvas

    # -- tiles ----------------------------------------------------------------------------

    def _tiles(self, padded_h: int, padded_w: int, height: int, width: int) -> Iterator[Tile]:
        """The windows whose cores cover the frame, row-major."""
        t, o, border = self.tile, self.overlap, self.border
        core = t - 2 * o
        for top in tile_starts(padded_h, t, core):
            y0, y1 = max(top + o - border, 0), min(top + t - o - border, height)
            if y0 >= y1:
                continue
            for left in tile_starts(padded_w, t, core):
                x0, x1 = max(left + o - border, 0), min(left + t - o - border, width)
                if x0 < x1:
                    yield Tile(top, left, y0, y1, x0, x1)

    def _run(self, padded: np.ndarray, group: list[Tile]) -> np.ndarray:
        """Run a batch of windows; returns their upscaled cores as uint8 BGR
        [n, (T − 2o)·s, (T − 2o)·s, 3]."""
        t, s, o = self.tile, self.scale, self.overlap
        windows = np.stack([padded[g.top : g.top + t, g.left : g.left + t] for g in group])
        count = len(group)
        if self._fixed_batch and count < self._batch:  # a fixed batch axis: fill it up
            fill = np.repeat(windows[-1:], self._batch - count, axis=0)
            windows = np.concatenate([windows, fill])
        tensor = windows[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
        output = self.session.run([self._output], {self._input.name: tensor.astype(self._dtype)})
        result = np.asarray(output[0])
        expected = (len(windows), 3, t * s, t * s)
        if result.shape != expected:
            raise ModelUnavailable(
                f"model {self.name}: output {self._output!r} has shape {list(result.shape)} "
                f"for input shape {list(tensor.shape)}, expected {list(expected)} (scale {s})"
            )
        core = result[:count, :, o * s : (t - o) * s, o * s : (t - o) * s]
        core = core.astype(np.float32).transpose(0, 2, 3, 1) * np.float32(255.0)
        return np.rint(np.clip(core, 0.0, 255.0)).astype(np.uint8)[..., ::-1]


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3:
        raise InvalidInput("the frame to enhance must be a BGR uint8 image array")
    if frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InvalidInput(f"the frame to enhance must have shape (H, W, 3); got {frame.shape}")
