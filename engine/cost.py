"""A job's work, bounded when it is submitted, before any frame is processed.

Cost is counted in face-swap units: frames × faces × pixel-boost sub-images ×
(1 + face enhancers). It is an upper estimate from what a submit knows cheaply (the
target's size and length, the options, the chosen models' native sizes), never from
running a detector:

- faces: 1 with the ``one`` selector; ``MANY_FACES`` otherwise (an estimate: the
  faces of a frame are not counted at submit);
- sub-images: (P / M)² for a pixel-boost size P over the swapper's native size M;
  with ``auto``, the largest P a face of that frame could need (a face is at most as
  large as the frame's shorter side), capped at 1024;
- the frame enhancer multiplies the output's pixels by its scale², and its output
  size is bounded separately (``output_pixels``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import InvalidInput, ModelUnavailable
from engine.families.table import FRAME_ENHANCER_FAMILIES, MAX_PIXEL_BOOST, SWAPPER_FAMILIES
from engine.options import SwapOptions

if TYPE_CHECKING:
    from engine.models.manager import ModelManager

MANY_FACES = 4


@dataclass(frozen=True)
class JobCost:
    """What a job will do: its cost in face-swap units and its output frame size."""

    units: float
    sub_images: int
    faces_per_frame: int
    output_width: int
    output_height: int

    @property
    def output_pixels(self) -> int:
        return self.output_width * self.output_height


def boost_factor(options: SwapOptions, native: int, width: int, height: int) -> int:
    """Sub-images per face: (P / M)² for the job's pixel-boost size P (``auto``: the largest
    a face of this frame could need)."""
    if native <= 0 or options.pixel_boost == "native":
        return 1
    if options.pixel_boost == "auto":
        largest = min(MAX_PIXEL_BOOST, max(min(width, height), native))
        k = max(1, -(-largest // native))  # ceil: the smallest multiple at or above
        k = min(k, MAX_PIXEL_BOOST // native) or 1
    else:
        k = max(1, int(options.pixel_boost) // native)
    return k * k


def job_cost(
    options: SwapOptions,
    *,
    width: int,
    height: int,
    frames: int,
    swapper_native: int,
    frame_enhancer_scale: int = 1,
) -> JobCost:
    """The cost of one job over a target of ``frames`` frames of ``width``×``height``."""
    faces = 1 if options.selector == "one" else MANY_FACES
    sub_images = boost_factor(options, swapper_native, width, height)
    units = float(max(frames, 1) * faces * sub_images * (1 + len(options.enhancer)))
    scale = max(int(frame_enhancer_scale), 1)
    return JobCost(units, sub_images, faces, width * scale, height * scale)


def check_cost(cost: JobCost, max_output_pixels: int | None, max_units: float | None) -> None:
    """``InvalidInput`` when a job exceeds the operator's caps, saying by how much."""
    if max_output_pixels is not None and cost.output_pixels > max_output_pixels:
        raise InvalidInput(
            f"the output would be {cost.output_width}×{cost.output_height} "
            f"({cost.output_pixels / 1e6:.1f} megapixels after the frame enhancer); the limit "
            f"is {max_output_pixels / 1e6:.1f} megapixels (--max-output-megapixels). Choose a "
            "smaller frame enhancer scale, or none"
        )
    if max_units is not None and cost.units > max_units:
        raise InvalidInput(
            f"this job would cost {cost.units:,.0f} face-swap units (frames × "
            f"{cost.faces_per_frame} face(s) × {cost.sub_images} pixel-boost sub-image(s) × "
            f"enhancers); the limit is {max_units:,.0f} (--max-job-cost). Trim the video, "
            "lower pixel_boost, or use fewer enhancers"
        )


def native_size(models: ModelManager, swapper: str) -> int:
    """A swapper's native crop size from its catalogue entry, its file's input, or its
    family (0 for the classic swapper, which has no network)."""
    try:
        spec = models.spec(swapper)
    except ModelUnavailable:
        return 0
    family = SWAPPER_FAMILIES.get(spec.family)
    if family is None:
        return 0
    if isinstance(spec.input_size, int):
        return spec.input_size
    size = _file_input_size(models, swapper)
    return size or family.default_size


def frame_enhancer_scale(models: ModelManager, name: str | None) -> int:
    """A frame enhancer's scale from its entry, or its file's fixed shapes; 4 when neither
    tells (dynamic axes; the largest scale of the built-in catalogue, so the bound errs on
    the safe side)."""
    if not name:
        return 1
    try:
        spec = models.spec(name)
    except ModelUnavailable:
        return 1
    if spec.family not in FRAME_ENHANCER_FAMILIES:
        return 1
    if spec.scale:
        return int(spec.scale)
    path = models.path(name)
    if path is None:
        return 4
    stat = path.stat()
    return _scale_of(str(path), stat.st_size, stat.st_mtime_ns) or 4


def trimmed_frames(
    frames: int, duration: float | None, start: float | None, end: float | None
) -> int:
    """The frames a trimmed video keeps (proportional to the kept duration)."""
    if not duration or duration <= 0 or (start is None and end is None):
        return max(frames, 1)
    kept = min(end if end is not None else duration, duration) - (start or 0.0)
    return max(1, int(round(frames * max(kept, 0.0) / duration)))


def _file_input_size(models: ModelManager, name: str) -> int:
    """The spatial size of a model file's first 4-D input, read from its graph (0 if the
    file is missing or its axes are dynamic)."""
    path = models.path(name)
    if path is None:
        return 0
    stat = path.stat()
    return _input_size_of(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _scale_of(path: str, size: int, mtime_ns: int) -> int:
    """Output size over input size of a file with fixed spatial axes (0 if dynamic)."""
    from engine.families.io import file_tensors

    try:
        inputs, outputs = file_tensors(path)
    except ModelUnavailable:
        return 0
    if not inputs or not outputs or not inputs[0].shape or not outputs[0].shape:
        return 0
    source, result = inputs[0].shape, outputs[0].shape
    if len(source) != 4 or len(result) != 4 or not source[2] or not result[2]:
        return 0
    scale, rest = divmod(int(result[2]), int(source[2]))
    return scale if rest == 0 and scale >= 1 else 0


@functools.lru_cache(maxsize=64)
def _input_size_of(path: str, size: int, mtime_ns: int) -> int:
    """Cached by the file's identity: reading a large graph is not a per-submit cost."""
    from engine.families.io import file_tensors

    try:
        inputs, _ = file_tensors(path)
    except ModelUnavailable:
        return 0
    for tensor in inputs:
        if tensor.shape is not None and len(tensor.shape) == 4 and tensor.shape[2]:
            return int(tensor.shape[2])
    return 0
