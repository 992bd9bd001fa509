"""Small stand-ins for the face maskers with the real files' interfaces (MODELS-2.md §6.1).

XSeg occluder: ``input`` f32 [1,256,256,3] NHWC → ``output`` f32 [1,256,256,1], the
visibility (1 visible, 0 covered). BiSeNet parser: ``input`` f32 [1,3,512,512] →
``output`` f32 [1,19,512,512] class scores. Both graphs really read their input, so
a wrong layout or normalisation shows in the result; the layout arguments make the
wrong files a loader must refuse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9
OCCLUDER_SIZE = 256
PARSER_SIZE = 512
PARSER_CELL = 8  # the parser's score maps are drawn on a 64×64 grid, upsampled ×8
CLASSES = 19

Block = tuple[int, int, int, int]  # rows y0:y1, columns x0:x1 in the 512² parser input


def occluder_pattern(visible: str) -> np.ndarray:
    """The 256×256 visibility a pattern occluder outputs: ``upper`` (rows 0–127
    visible) or ``left`` (columns 0–127 visible)."""
    pattern = np.zeros((OCCLUDER_SIZE, OCCLUDER_SIZE), np.float32)
    half = OCCLUDER_SIZE // 2
    if visible == "upper":
        pattern[:half] = 1.0
    elif visible == "left":
        pattern[:, :half] = 1.0
    else:
        raise ValueError(visible)
    return pattern


def make_occluder(
    path: str | Path,
    visible: str = "upper",
    input_shape: Sequence[int] = (1, 256, 256, 3),
    output_shape: Sequence[int] = (1, 256, 256, 1),
) -> Path:
    """An XSeg stand-in. ``visible``: ``upper`` or ``left`` (a fixed pattern, see
    ``occluder_pattern``) or ``blue``: the visibility is the input's channel 0 (blue
    in FaceFusion's BGR, /255 feed) — it shows the feed's layout and scale."""
    count = int(np.prod(output_shape))
    initializers = [numpy_helper.from_array(np.array(output_shape, np.int64), "out_shape")]
    if visible == "blue":
        initializers += [
            numpy_helper.from_array(np.array([0], np.int64), "start"),
            numpy_helper.from_array(np.array([1], np.int64), "end"),
            numpy_helper.from_array(np.array([-1], np.int64), "axis"),
        ]
        nodes = [
            helper.make_node("Slice", ["input", "start", "end", "axis"], ["visibility"]),
            helper.make_node("Reshape", ["visibility", "out_shape"], ["output"]),
        ]
    else:
        pattern = occluder_pattern(visible)
        if count != pattern.size:  # a wrong-size output file: pattern cut to fit
            pattern = np.resize(pattern, count)
        initializers += [
            numpy_helper.from_array(pattern.reshape(-1), "pattern"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ]
        nodes = [
            # 0·mean(input) + pattern: the output depends on the input's graph edge only.
            helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
            helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
            helper.make_node("Add", ["pattern", "nothing"], ["flat"]),
            helper.make_node("Reshape", ["flat", "out_shape"], ["output"]),
        ]
    return _save(
        path,
        nodes,
        initializers,
        helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape)),
        helper.make_tensor_value_info("output", TensorProto.FLOAT, list(output_shape)),
        "xseg_standin",
    )


def make_parser(
    path: str | Path,
    blocks: Mapping[int, Sequence[Block]] | None = None,
    red_class: int | None = None,
    classes: int = CLASSES,
    input_shape: Sequence[int] = (1, 3, 512, 512),
) -> Path:
    """A BiSeNet stand-in. Scores: background (class 0) 0.5 everywhere, class ``c`` 1.0
    inside each of ``blocks[c]`` (multiples of 8 px), every other class 0. With
    ``red_class``, background is 1.5 instead and ``red_class`` scores the input's
    channel 0 (R after the ImageNet normalisation: 2.25 for R = 255), so only a red,
    correctly normalised RGB feed wins there."""
    grid = PARSER_SIZE // PARSER_CELL
    scores = np.zeros((1, classes, grid, grid), np.float32)
    scores[0, 0] = 1.5 if red_class is not None else 0.5
    for label, rectangles in (blocks or {}).items():
        for y0, y1, x0, x1 in rectangles:
            cells = [v // PARSER_CELL for v in (y0, y1, x0, x1)]
            scores[0, label, cells[0] : cells[1], cells[2] : cells[3]] = 1.0
    initializers = [
        numpy_helper.from_array(scores, "scores_small"),
        numpy_helper.from_array(np.array([1, 1, PARSER_CELL, PARSER_CELL], np.float32), "scales"),
    ]
    nodes = [helper.make_node("Resize", ["scores_small", "", "scales"], ["scores"], mode="nearest")]
    if red_class is None:  # 0·mean(input): any input layout loads (for the wrong files)
        initializers.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
        nodes += [
            helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
            helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
            helper.make_node("Add", ["scores", "nothing"], ["output"]),
        ]
    else:
        weights = np.zeros((1, classes, 1, 1), np.float32)
        weights[0, red_class] = 1.0
        initializers += [
            numpy_helper.from_array(weights, "red_weights"),
            numpy_helper.from_array(np.array([0], np.int64), "start"),
            numpy_helper.from_array(np.array([1], np.int64), "end"),
            numpy_helper.from_array(np.array([1], np.int64), "axis"),
        ]
        nodes += [
            helper.make_node("Slice", ["input", "start", "end", "axis"], ["red"]),
            helper.make_node("Mul", ["red", "red_weights"], ["red_scores"]),
            helper.make_node("Add", ["scores", "red_scores"], ["output"]),
        ]
    return _save(
        path,
        nodes,
        initializers,
        helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape)),
        helper.make_tensor_value_info(
            "output", TensorProto.FLOAT, [1, classes, PARSER_SIZE, PARSER_SIZE]
        ),
        "bisenet_standin",
    )


def _save(path, nodes, initializers, input_info, output_info, name: str) -> Path:
    graph = helper.make_graph(nodes, name, [input_info], [output_info], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path
