"""The occlusion mask: XSeg occluders (MODELS-2.md §6.1, §6.3).

The crop is resized to 256² (bilinear) and fed NHWC, BGR, /255 as ``input``; output 0
is a 256×256 probability, 1 where the face is visible and 0 where something covers
it, used as is. Exports differ in how they shape it ([1,256,256,1], [1,256,256] or
[1,1,256,256]), so it is read by element count. Several occluders (FaceFusion's
``many``) are combined by the element-wise minimum at 256², before resizing back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from engine.errors import InvalidInput, ModelUnavailable
from engine.families.table import OCCLUDER_IO
from engine.masks.crop import check_crop
from engine.masks.model import load, numpy_type
from engine.masks.soften import soften
from engine.models.registry import ModelSpec
from engine.runtime import SessionCache

SIZE = 256


class Occluder:
    """One loaded XSeg file; thread-safe (ONNX Runtime sessions are)."""

    def __init__(self, sessions: SessionCache, spec: ModelSpec, path: str | Path) -> None:
        self.name = spec.name
        self.session, bound = load(sessions, spec, path, "occluder", "xseg", OCCLUDER_IO)
        self.input_name = bound.inputs[0].name
        self.input_type = numpy_type(self.name, bound.inputs[0])
        output = bound.outputs[0]
        self.output_name = output.name
        if output.shape is not None and all(d is not None for d in output.shape):
            count = int(np.prod(output.shape))
            if count != SIZE * SIZE:
                raise ModelUnavailable(self._bad_output(output.shape))

    def probability(self, crop_256: np.ndarray) -> np.ndarray:
        """The 256×256 float32 visibility of a 256² BGR uint8 crop, clipped to [0, 1]."""
        batch = crop_256[np.newaxis].astype(self.input_type) * self.input_type(1 / 255)
        result = self.session.run([self.output_name], {self.input_name: batch})[0]
        if result.size != SIZE * SIZE:
            raise ModelUnavailable(self._bad_output(result.shape))
        return np.clip(result.reshape(SIZE, SIZE).astype(np.float32, copy=False), 0.0, 1.0)

    def _bad_output(self, shape: Sequence[int | None]) -> str:
        return (
            f"model {self.name} (family xseg): output {self.output_name!r} has shape "
            f"{list(shape)}, expected {SIZE}×{SIZE} values ([1,256,256,1], [1,256,256] "
            f"or [1,1,256,256])"
        )


def occlusion_mask(occluders: Sequence[Occluder], crop: np.ndarray) -> np.ndarray:
    """The softened S×S occlusion mask of a BGR crop: the minimum over ``occluders``."""
    if not occluders:
        raise InvalidInput("the occlusion mask needs at least one occluder")
    size = check_crop("crop", crop)
    small = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    visible = occluders[0].probability(small)
    for occluder in occluders[1:]:
        np.minimum(visible, occluder.probability(small), out=visible)
    if size != SIZE:
        visible = cv2.resize(visible, (size, size), interpolation=cv2.INTER_LINEAR)
    return soften(visible)
