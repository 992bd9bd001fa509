"""Checking a model file's tensors against its family, once, when the model loads.

A catalogue entry names a family; the family fixes the input and output tensors the
pre- and post-processing feed and read. A file whose tensors do not fit is refused
with an error naming the model and the tensor, before any frame reaches it (a wrong
file would otherwise fail deep in a job, or worse, run and produce garbage).

Dimensions are matched loosely where exports differ: a dimension the family leaves
open (``None``) accepts anything, and a dimension the file leaves dynamic (a name or
``-1``) accepts the family's value. Output 0 is the result; files may carry extra
outputs after the ones a family reads (HyperSwap's ``mask``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ModelUnavailable

Dim = int | None
"""A family's dimension: a fixed size, or None (any size)."""

FLOAT = ("float32",)
FLOATS = ("float32", "float16")
ANY_FLOAT = ("float32", "float16", "float64")
INTEGERS = ("int64", "int32")


@dataclass(frozen=True)
class TensorSpec:
    """One tensor a family feeds or reads.

    ``name`` None: matched by position (exports name it differently). ``dtypes``: the
    element types accepted. ``shape`` None: any rank and shape.
    """

    name: str | None
    dtypes: tuple[str, ...] = FLOATS
    shape: tuple[Dim, ...] | None = None


@dataclass(frozen=True)
class FamilyIO:
    """The tensors of one family: required inputs, optional inputs (fed only when the
    file declares them, by name) and the outputs read, by position."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    optional_inputs: tuple[TensorSpec, ...] = ()
    extra_inputs_allowed: bool = False


@dataclass(frozen=True)
class Tensor:
    """A tensor as the file declares it: dims are ints, or None where dynamic."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None

    def dim(self, axis: int, default: int) -> int:
        """The size of ``axis``; ``default`` where the file leaves it dynamic."""
        if self.shape is None or axis >= len(self.shape) or self.shape[axis] is None:
            return default
        return int(self.shape[axis])  # type: ignore[arg-type]


@dataclass(frozen=True)
class BoundIO:
    """A file's tensors matched to its family: ``inputs[i]`` is the file's tensor for the
    family's i-th input; ``optional`` holds the optional inputs the file declares;
    ``outputs[i]`` the file's i-th output."""

    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    optional: dict[str, Tensor]

    def input(self, name: str) -> Tensor:
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        raise KeyError(name)


_ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _dims(shape: Any) -> tuple[int | None, ...] | None:
    if shape is None:
        return None
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def session_tensors(session: Any) -> tuple[list[Tensor], list[Tensor]]:
    """(inputs, outputs) of an onnxruntime session."""

    def convert(items: Sequence[Any]) -> list[Tensor]:
        return [
            Tensor(item.name, _ONNX_TYPES.get(item.type, item.type), _dims(item.shape))
            for item in items
        ]

    return convert(session.get_inputs()), convert(session.get_outputs())


def file_tensors(path: str | Path) -> tuple[list[Tensor], list[Tensor]]:
    """(inputs, outputs) read from an ONNX file's graph without building a session."""
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise ModelUnavailable(f"cannot read {Path(path).name} as an ONNX model: {exc}") from exc
    initializers = {item.name for item in model.graph.initializer}

    def convert(values: Any) -> list[Tensor]:
        tensors = []
        for value in values:
            if value.name in initializers:
                continue
            kind = value.type.tensor_type
            dtype = helper.tensor_dtype_to_np_dtype(kind.elem_type).name if kind.elem_type else "?"
            shape = None
            if kind.HasField("shape"):
                shape = tuple(
                    d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                    for d in kind.shape.dim
                )
            tensors.append(Tensor(value.name, dtype, shape))
        return tensors

    return convert(model.graph.input), convert(model.graph.output)


def bind(model: str, family: str, io: FamilyIO, inputs: list[Tensor], outputs: list[Tensor]):
    """Match a file's tensors to its family's, or ``ModelUnavailable`` naming the tensor."""
    where = f"model {model} (family {family})"
    optional_names = {spec.name for spec in io.optional_inputs}
    remaining = [t for t in inputs if t.name not in optional_names]
    bound: list[Tensor] = []
    by_name = {t.name: t for t in remaining}
    named = all(spec.name in by_name for spec in io.inputs if spec.name is not None)
    if not io.extra_inputs_allowed and len(remaining) != len(io.inputs):
        raise ModelUnavailable(
            f"{where} has inputs {_names(inputs)}, but the family takes "
            f"{len(io.inputs)}: {_spec_names(io.inputs)}"
        )
    for position, spec in enumerate(io.inputs):
        if spec.name is not None and named:
            tensor = by_name[spec.name]
        elif spec.name is not None and not named and len(remaining) == len(io.inputs):
            tensor = remaining[position]  # renamed export: fed by position
        elif spec.name is None and position < len(remaining):
            tensor = remaining[position]
        else:
            raise ModelUnavailable(
                f"{where} has no input {spec.name!r}; its inputs are {_names(inputs)}"
            )
        _check(where, "input", tensor, spec)
        bound.append(tensor)
    optional = {}
    for spec in io.optional_inputs:
        tensor = next((t for t in inputs if t.name == spec.name), None)
        if tensor is not None:
            _check(where, "input", tensor, spec)
            optional[str(spec.name)] = tensor
    if len(outputs) < len(io.outputs):
        raise ModelUnavailable(
            f"{where} has {len(outputs)} output(s) {_names(outputs)}, but the family reads "
            f"{len(io.outputs)}"
        )
    for spec, tensor in zip(io.outputs, outputs, strict=False):
        _check(where, "output", tensor, spec)
    return BoundIO(tuple(bound), tuple(outputs), optional)


def bind_session(model: str, family: str, io: FamilyIO, session: Any) -> BoundIO:
    """``bind`` for a loaded onnxruntime session."""
    inputs, outputs = session_tensors(session)
    return bind(model, family, io, inputs, outputs)


def _check(where: str, role: str, tensor: Tensor, spec: TensorSpec) -> None:
    if tensor.dtype not in spec.dtypes:
        raise ModelUnavailable(
            f"{where}: {role} {tensor.name!r} has element type {tensor.dtype}, "
            f"expected {' or '.join(spec.dtypes)}"
        )
    if spec.shape is None or tensor.shape is None:
        return
    if len(tensor.shape) != len(spec.shape):
        raise ModelUnavailable(
            f"{where}: {role} {tensor.name!r} has shape {_shape(tensor.shape)}, "
            f"expected {_shape(spec.shape)}"
        )
    for have, want in zip(tensor.shape, spec.shape, strict=True):
        if have is not None and want is not None and have != want:
            raise ModelUnavailable(
                f"{where}: {role} {tensor.name!r} has shape {_shape(tensor.shape)}, "
                f"expected {_shape(spec.shape)}"
            )


def _shape(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _names(tensors: Sequence[Tensor]) -> str:
    return ", ".join(f"{t.name!r} {_shape(t.shape) if t.shape else ''}".strip() for t in tensors)


def _spec_names(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(repr(s.name) if s.name else "(by position)" for s in specs)
