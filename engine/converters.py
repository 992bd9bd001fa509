"""Source-embedding converters (CrossFace, MODELS-2.md §5.3).

GHOST, SimSwap and HiFiFace were trained with their own identity encoders; FaceFusion
does not run those. A small converter model maps the ArcFace w600k embedding into each
model's identity space instead: input ``input`` = the raw (not normalised) embedding,
float32 [1, 512]; output 0, flattened, is the 512-d identity the swapper is fed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import ModelUnavailable
from engine.families.io import bind_session
from engine.families.table import CONVERTER_IO
from engine.runtime import SessionCache
from engine.swappers.identity import EMBEDDING_SIZE, raw_embedding

if TYPE_CHECKING:
    from engine.models.registry import ModelSpec


class Converter:
    """Runs one converter file; the file's tensors are checked against CONVERTER_IO at load."""

    def __init__(self, sessions: SessionCache, spec: ModelSpec, path: str | Path) -> None:
        self.name = spec.name
        self.session = sessions.get(Path(path))
        bound = bind_session(spec.name, spec.family or "crossface", CONVERTER_IO, self.session)
        self._input = bound.inputs[0]
        self._output = bound.outputs[0]
        self._dtype = np.dtype(self._input.dtype)
        shape = self._output.shape
        known = shape is not None and all(d is not None for d in shape)
        if known and int(np.prod(shape)) != EMBEDDING_SIZE:
            raise ModelUnavailable(self._wrong_size(shape))

    def convert(self, raw_embedding_: np.ndarray) -> np.ndarray:
        """The (512,) float32 identity for the swapper, from a raw recognizer embedding."""
        raw = raw_embedding(raw_embedding_)
        feed = {self._input.name: raw.reshape(1, EMBEDDING_SIZE).astype(self._dtype)}
        output = np.asarray(self.session.run([self._output.name], feed)[0])
        if output.size != EMBEDDING_SIZE:
            raise ModelUnavailable(self._wrong_size(output.shape))
        return output.reshape(EMBEDDING_SIZE).astype(np.float32)

    def _wrong_size(self, shape: tuple) -> str:
        return (
            f"model {self.name} (converter): output {self._output.name!r} has shape "
            f"{list(shape)}, expected {EMBEDDING_SIZE} values"
        )
