"""Stand-ins for the face-enhancer files (gfpgan, codeformer, gpen, restoreformer).

The real files (MODELS-2.md §8) take ``input`` [1,3,S,S] in [−1, 1] (RGB) and give
output 0 [1,3,S,S] in [−1, 1]; CodeFormer may also declare ``weight`` float64 [1].
These stand-ins keep that interface and compute something a test can predict:

    y = input·gain + offset        (per RGB channel of the model's input)
    y = y·max(weight)              (when ``weight`` is declared)
    y = y·(1 − M) + M              (when ``marks``: M = 1 in squares around those points)
    y = y[:, :, :c, :c]            (when ``crop_output`` c: a file whose output is smaller)

so ``gain`` 1, ``offset`` 0 is an identity, and a mark paints white where the test
expects a template point. Every name, type and shape can be overridden to build the
wrong files a loader must refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9

Shape = Sequence[int | str]


def make_enhancer(
    path: str | Path,
    size: int = 512,
    *,
    gain: Sequence[float] = (1.0, 1.0, 1.0),
    offset: Sequence[float] = (0.0, 0.0, 0.0),
    weight: bool = False,
    marks: Sequence[tuple[float, float]] = (),
    mark_radius: int = 0,
    input_name: str = "input",
    input_shape: Shape | None = None,
    output_shape: Shape | None = None,
    elem_type: int = TensorProto.FLOAT,
    weight_type: int = TensorProto.DOUBLE,
    weight_shape: Shape = (1,),
    extra_inputs: Sequence[str] = (),
    crop_output: int = 0,
) -> Path:
    """Write the stand-in to ``path`` and return the path."""
    channels = 3
    if input_shape is not None and isinstance(input_shape[1], int):
        channels = input_shape[1]
    initializers = [
        numpy_helper.from_array(_per_channel(gain, channels), "gain"),
        numpy_helper.from_array(_per_channel(offset, channels), "offset"),
    ]
    nodes = [helper.make_node("Cast", [input_name], ["x"], to=TensorProto.FLOAT)]
    nodes += [
        helper.make_node("Mul", ["x", "gain"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["y0"]),
    ]
    last = "y0"
    inputs = [
        helper.make_tensor_value_info(
            input_name, elem_type, list(input_shape or (1, 3, size, size))
        )
    ]
    if weight:
        inputs.append(helper.make_tensor_value_info("weight", weight_type, list(weight_shape)))
        nodes += [
            helper.make_node("Cast", ["weight"], ["weight_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMax", ["weight_f"], ["weight_1"], keepdims=0),
            helper.make_node("Mul", [last, "weight_1"], ["y1"]),
        ]
        last = "y1"
    for name in extra_inputs:
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1]))
        nodes.append(helper.make_node("Add", [last, name], [f"{name}_added"]))
        last = f"{name}_added"
    if marks:
        marked = np.zeros((1, 1, size, size), np.float32)
        for x, y in marks:
            cx, cy = int(round(x)), int(round(y))
            marked[
                ...,
                cy - mark_radius : cy + mark_radius + 1,
                cx - mark_radius : cx + mark_radius + 1,
            ] = 1
        initializers += [
            numpy_helper.from_array(marked, "marks"),
            numpy_helper.from_array(1.0 - marked, "unmarked"),
        ]
        nodes += [
            helper.make_node("Mul", [last, "unmarked"], ["kept"]),
            helper.make_node("Add", ["kept", "marks"], ["y2"]),
        ]
        last = "y2"
    if crop_output:
        initializers += [
            numpy_helper.from_array(np.array([0, 0], np.int64), "crop_starts"),
            numpy_helper.from_array(np.array([crop_output] * 2, np.int64), "crop_ends"),
            numpy_helper.from_array(np.array([2, 3], np.int64), "crop_axes"),
        ]
        nodes.append(
            helper.make_node("Slice", [last, "crop_starts", "crop_ends", "crop_axes"], ["y3"])
        )
        last = "y3"
    nodes.append(helper.make_node("Cast", [last], ["output"], to=elem_type))
    graph = helper.make_graph(
        nodes,
        "enhancer_standin",
        inputs,
        [
            helper.make_tensor_value_info(
                "output", elem_type, list(output_shape or (1, 3, size, size))
            )
        ],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def _per_channel(values: Sequence[float], channels: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.size != channels:
        array = np.resize(array, channels)
    return array.reshape(1, channels, 1, 1)
