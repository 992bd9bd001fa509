"""Loading a masker model: its catalogue entry must be of the right kind and family, and
its file's tensors must fit that family (checked once, at load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InvalidOptions, ModelUnavailable
from engine.families.io import BoundIO, FamilyIO, Tensor, bind_session
from engine.models.registry import ModelSpec
from engine.runtime import SessionCache


def load(
    sessions: SessionCache, spec: ModelSpec, path: str | Path, kind: str, family: str, io: FamilyIO
) -> tuple[Any, BoundIO]:
    """(session, bound tensors) for ``spec``; ``InvalidOptions`` when it is not a ``kind``
    of ``family``, ``ModelUnavailable`` when the file's tensors do not fit."""
    if spec.kind != kind or spec.family != family:
        raise InvalidOptions(
            f"model {spec.name} is a {spec.kind} of family {spec.family or '?'}, "
            f"not a {kind} of family {family}"
        )
    session = sessions.get(path)
    return session, bind_session(spec.name, family, io, session)


def numpy_type(model: str, tensor: Tensor) -> type[np.floating]:
    """The numpy type to feed ``tensor`` with (float16 exports take float16)."""
    types = {"float32": np.float32, "float16": np.float16}
    if tensor.dtype not in types:
        raise ModelUnavailable(f"model {model}: input {tensor.name!r} has type {tensor.dtype}")
    return types[tensor.dtype]
