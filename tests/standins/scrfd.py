"""A tiny stand-in for SCRFD (``scrfd_2.5g.onnx``) with the real model's interface.

Same input (``input`` f32 [1, 3, ?, ?]) and outputs (``"0"``…``"8"``: scores,
boxes, keypoints per stride, 2-D, [N_s, 1|4|10]), so the real loading and
decoding code runs. It "detects" bright cells: at stride 32, a grid cell whose
mean normalised value is near white scores high; its box is exactly that cell
and its keypoints sit at fixed fractions of it (``KEYPOINTS``). Everything else
scores ~0, so an ordinary photo gives no faces. Options build the other
layouts insightface supports (no keypoints, five strides, 3-D outputs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FACE_STRIDE = 32
# Keypoints as fractions of the detected cell: eyes, nose, mouth corners.
KEYPOINTS = np.array(
    [[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], dtype=np.float32
)
_GAIN, _WHITE = 60.0, 0.85  # logit = gain · (cell mean − white level)


def make_scrfd(
    path: str | Path,
    input_size: int | None = None,
    *,
    keypoints: bool = True,
    five_strides: bool = False,
    batched: bool = False,
) -> Path:
    """Write the stand-in to ``path`` and return it.

    ``input_size`` None declares dynamic height/width like FaceFusion's file;
    a number declares a static square input of that size (a static export).
    ``keypoints`` False drops the keypoint heads (6 or 10 outputs),
    ``five_strides`` uses strides 8…128 with one anchor (10 or 15 outputs),
    ``batched`` gives 3-D outputs [1, N, C].
    """
    strides = (8, 16, 32, 64, 128) if five_strides else (8, 16, 32)
    anchors = 1 if five_strides else 2
    heads = [("score", 1), ("bbox", 4)] + ([("kps", 10)] if keypoints else [])
    nodes, inits, outputs = [], [], []
    for head, width in heads:
        for stride in strides:
            name = str(len(outputs))
            weight, bias = _head_params(head, stride, anchors)
            tag = f"{head}{stride}"
            inits += [
                numpy_helper.from_array(weight, f"{tag}_w"),
                numpy_helper.from_array(bias, f"{tag}_b"),
                numpy_helper.from_array(
                    np.array([1, -1, width] if batched else [-1, width], np.int64), f"{tag}_shape"
                ),
            ]
            nodes += [
                helper.make_node(
                    "AveragePool",
                    ["input"],
                    [f"{tag}_pool"],
                    kernel_shape=[stride, stride],
                    strides=[stride, stride],
                ),
                helper.make_node("Conv", [f"{tag}_pool", f"{tag}_w", f"{tag}_b"], [f"{tag}_conv"]),
                helper.make_node("Transpose", [f"{tag}_conv"], [f"{tag}_nhwc"], perm=[0, 2, 3, 1]),
            ]
            flat = f"{tag}_flat" if head == "score" else name
            nodes.append(helper.make_node("Reshape", [f"{tag}_nhwc", f"{tag}_shape"], [flat]))
            if head == "score":
                nodes.append(helper.make_node("Sigmoid", [flat], [name]))
            rows = f"n{stride}"
            dims = [1, rows, width] if batched else [rows, width]
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    side = input_size if input_size else "?"
    graph = helper.make_graph(
        nodes,
        "scrfd_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, side, side])],
        outputs,
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 15)], producer_name="fusion-studio-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def _head_params(head: str, stride: int, anchors: int) -> tuple[np.ndarray, np.ndarray]:
    """1×1 conv weights and biases of one head: constants except the stride-32 score."""
    if head == "score":
        weight = np.zeros((anchors, 3, 1, 1), np.float32)
        bias = np.full(anchors, -20.0, np.float32)
        if stride == FACE_STRIDE:
            weight[0] = _GAIN / 3.0
            bias[0] = -_GAIN * _WHITE
        return weight, bias
    if head == "bbox":
        per_anchor = np.array([0.0, 0.0, 1.0, 1.0], np.float32)  # the anchor's own cell
    else:
        per_anchor = KEYPOINTS.reshape(-1)
    bias = np.tile(per_anchor, anchors)
    return np.zeros((bias.size, 3, 1, 1), np.float32), bias
