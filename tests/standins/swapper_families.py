"""Small stand-ins for the neural swapper families and the CrossFace converters.

A swapper stand-in has a real file's interface (MODELS-2.md §5.2): inputs ``target``
f32 [B, 3, M, M] and ``source`` (f32 [B, 512], or an image [B, 3, S, S]), output
``output`` f32 [B, 3, M, M] (plus HyperSwap's ``mask`` [B, 1, M, M] when asked), batch
1 or dynamic. Its graph is an *inverse* of the family's pre-processing, with numbers the
caller passes in: it undoes the input normalisation (``y = x·std + mean`` per RGB
channel), applies a per-channel curve on [0, 1] (``y``, ``y²``, ``√y`` or ``0``, so the
three channels behave differently), then maps into the family's output range
(``(f − out_mean) / out_std``). With correct pre- and post-processing the swapped crop
is the curve of the target crop, pixel for pixel. ``marks`` adds ``n·marks`` to the
n-th item of a batch, so a test can see which run each sub-image went through. The
source input is really read (its sum, times zero, is added).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9
CURVES = ("y", "y2", "sqrt", "zero")
MAX_MARKS = 64

Triple = tuple[float, float, float]


def _channels(values: Sequence[float], name: str) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, np.float32).reshape(1, 3, 1, 1), name)


def _save(graph: onnx.GraphProto, path: str | Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def make_swapper(
    path: str | Path,
    *,
    size: int,
    undo_mean: Triple,
    undo_std: Triple,
    out_mean: Triple = (0.0, 0.0, 0.0),
    out_std: Triple = (1.0, 1.0, 1.0),
    curves: tuple[str, str, str] = ("y", "y", "y"),
    source_size: int | None = None,
    batch: int | None = 1,
    mask_output: bool = False,
    emap: np.ndarray | None = None,
    marks: float = 0.0,
    input_names: tuple[str, str] = ("target", "source"),
    source_dim: int = 512,
) -> Path:
    """Write a swapper stand-in (module docstring) and return its path.

    ``curves``: the function of each RGB output channel. ``source_size``: an image
    source [B, 3, S, S] instead of an embedding [B, ``source_dim``]. ``emap``: stored as
    the last graph initializer, unused by the graph (like inswapper's).
    """
    if any(curve not in CURVES for curve in curves):
        raise ValueError(f"curves must be among {CURVES}, got {curves}")
    target_name, source_name = input_names
    dim = batch if batch else "batch"
    masks = {curve: [1.0 if c == curve else 0.0 for c in curves] for curve in CURVES}
    inits = [
        _channels(undo_std, "undo_std"),
        _channels(undo_mean, "undo_mean"),
        _channels(out_mean, "out_mean"),
        _channels(out_std, "out_std"),
        _channels(masks["y"], "c_linear"),
        _channels(masks["y2"], "c_square"),
        _channels(masks["sqrt"], "c_root"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Mul", [target_name, "undo_std"], ["scaled"]),
        helper.make_node("Add", ["scaled", "undo_mean"], ["unit_raw"]),
        helper.make_node("Clip", ["unit_raw", "zero", "one"], ["unit"]),
        helper.make_node("Mul", ["unit", "unit"], ["square"]),
        helper.make_node("Sqrt", ["unit"], ["root"]),
        helper.make_node("Mul", ["unit", "c_linear"], ["part_linear"]),
        helper.make_node("Mul", ["square", "c_square"], ["part_square"]),
        helper.make_node("Mul", ["root", "c_root"], ["part_root"]),
        helper.make_node("Add", ["part_linear", "part_square"], ["partial"]),
        helper.make_node("Add", ["partial", "part_root"], ["curved"]),
        helper.make_node("ReduceSum", [source_name], ["source_sum"], keepdims=1),
        helper.make_node("Mul", ["source_sum", "zero"], ["source_zero"]),
        helper.make_node("Add", ["curved", "source_zero"], ["with_source"]),
    ]
    last = "with_source"
    if marks:
        table = (np.arange(MAX_MARKS, dtype=np.float32) * np.float32(marks)).reshape(-1, 1, 1, 1)
        inits += [
            numpy_helper.from_array(table, "mark_table"),
            numpy_helper.from_array(np.array([0], np.int64), "first"),
            numpy_helper.from_array(np.array([1], np.int64), "second"),
        ]
        nodes += [
            helper.make_node("Shape", [target_name], ["target_shape"]),
            helper.make_node("Slice", ["target_shape", "first", "second"], ["batch_size"]),
            helper.make_node("Slice", ["mark_table", "first", "batch_size", "first"], ["mark"]),
            helper.make_node("Add", [last, "mark"], ["marked"]),
        ]
        last = "marked"
    nodes += [
        helper.make_node("Sub", [last, "out_mean"], ["centred"]),
        helper.make_node("Div", ["centred", "out_std"], ["output"]),
    ]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, [dim, 3, size, size])]
    if mask_output:
        nodes.append(helper.make_node("ReduceMean", ["output"], ["mask"], axes=[1], keepdims=1))
        outputs.append(
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, [dim, 1, size, size])
        )
    if emap is not None:
        inits.append(numpy_helper.from_array(np.asarray(emap, np.float32), "emap"))
    source_shape = [dim, 3, source_size, source_size] if source_size else [dim, source_dim]
    graph = helper.make_graph(
        nodes,
        "swapper_standin",
        [
            helper.make_tensor_value_info(target_name, TensorProto.FLOAT, [dim, 3, size, size]),
            helper.make_tensor_value_info(source_name, TensorProto.FLOAT, source_shape),
        ],
        outputs,
        initializer=inits,
    )
    return _save(graph, path)


def make_plain(
    path: str | Path,
    inputs: Sequence[tuple[str, Sequence[int | str]]],
    outputs: Sequence[tuple[str, Sequence[int]]],
) -> Path:
    """A file with exactly these float32 inputs and outputs (zeros that read every input):
    for testing what loading refuses."""
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    nodes = []
    total = None
    for number, (name, _) in enumerate(inputs):
        nodes.append(helper.make_node("ReduceSum", [name], [f"sum{number}"], keepdims=0))
        if total is None:
            total = f"sum{number}"
        else:
            nodes.append(helper.make_node("Add", [total, f"sum{number}"], [f"total{number}"]))
            total = f"total{number}"
    nodes.append(helper.make_node("Mul", [total, "zero"], ["nothing"]))
    for number, (name, shape) in enumerate(outputs):
        inits.append(numpy_helper.from_array(np.array(shape, np.int64), f"shape{number}"))
        nodes.append(helper.make_node("Expand", ["nothing", f"shape{number}"], [name]))
    graph = helper.make_graph(
        nodes,
        "plain_standin",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in outputs],
        initializer=inits,
    )
    return _save(graph, path)


def make_converter(
    path: str | Path, matrix: np.ndarray, input_name: str = "input", input_dim: int = 512
) -> Path:
    """A CrossFace stand-in: ``output`` [1, 512] = ``input`` [1, input_dim] · ``matrix``."""
    matrix = np.asarray(matrix, np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", [input_name, "matrix"], ["output"])],
        "converter_standin",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, input_dim])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, matrix.shape[1]])],
        initializer=[numpy_helper.from_array(matrix, "matrix")],
    )
    return _save(graph, path)
