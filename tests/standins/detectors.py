"""Stand-ins for FaceFusion's retinaface_10g, yoloface_8n and yunet_2023_mar.

Each has its family's real interface (MODELS-2.md §10): input ``input`` f32
[1, 3, H, W]; retinaface nine 2-D outputs ``"0"``…``"8"`` (scores, boxes,
keypoints for strides 8/16/32, two anchors per cell, like FaceFusion's
scrfd_2.5g), yoloface one output ``output0`` [1, 20, 8400] at 640, yunet twelve
outputs ``cls_8`` … ``kps_32``, each [1, N_s, C].

They really look at their input. A "face" is one grid cell of the face stride
(anchor 0 of it) whose top half is bluer than its bottom half: with Δ = (mean of
the blue channel over the top half − over the bottom half) − (the same for red),
in 0–255 pixel units, a cell scores

- retinaface: sigmoid(4 · (Δ / 128 − 1))   (it sees (x − 127.5) / 128)
- yoloface:   Δ / 255                      (it sees x / 255)
- yunet:      cls = Δ / 255, obj = ``obj``  (it sees raw 0–255), FF score cls · obj

Uniform areas (grey, the zero canvas) have Δ = 0; a red face (what a BGR→RGB
swap would make of a blue one) and an upside-down face have Δ < 0, and a face
lying on its side has Δ = 0, so orientation matters as it does for real faces.
Every face decodes, in the detector's input pixels, to the box
``cell + BOX · side`` and the landmarks ``cell + KEYPOINTS · side``, where
``cell`` is the cell's top-left corner and ``side`` the stride.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDES = (8, 16, 32)
# The face box and landmarks, as fractions of the cell side from its top-left corner.
BOX = (-0.25, -0.5, 1.25, 1.75)
KEYPOINTS = np.array(
    [[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], dtype=np.float32
)
_OFF = -20.0  # logit of every anchor that is not a face anchor


def draw_face(
    image: np.ndarray, x: int, y: int, side: int, blue: int = 255, *, turn: int = 0
) -> np.ndarray:
    """Draw a stand-in face of ``side`` px at (x, y): top half blue, bottom half black.

    ``turn`` (0, 90, 180, 270) draws it turned clockwise by that angle, i.e. upright
    again once the image is turned counter-clockwise by ``turn``."""
    patch = np.zeros((side, side, 3), np.uint8)
    patch[: side // 2, :, 0] = blue
    image[y : y + side, x : x + side] = np.rot90(patch, -turn // 90)
    return image


def _delta_kernel(stride: int, scale: float) -> np.ndarray:
    """A stride×stride kernel giving ``scale`` · Δ of one cell (see the module doc)."""
    kernel = np.zeros((3, stride, stride), np.float32)
    half = stride // 2
    weight = 2.0 / (stride * stride) * scale
    kernel[0, :half], kernel[0, half:] = weight, -weight
    kernel[2, :half], kernel[2, half:] = -weight, weight
    return kernel


def _save(nodes, inits, inputs, outputs, path: str | Path, name: str) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 15)], producer_name="fusion-studio-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def _image_input(size: int | None) -> onnx.ValueInfoProto:
    side = size if size else "?"
    return helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, side, side])


def _cells(nodes: list, inits: list, tag: str, stride: int, values: np.ndarray) -> str:
    """A per-cell constant map [1, len(values), H/s, W/s] that follows the input size."""
    inits += [
        numpy_helper.from_array(np.zeros((len(values), 3, 1, 1), np.float32), f"{tag}_w"),
        numpy_helper.from_array(values.astype(np.float32), f"{tag}_b"),
    ]
    nodes += [
        helper.make_node(
            "AveragePool",
            ["input"],
            [f"{tag}_pool"],
            kernel_shape=[stride] * 2,
            strides=[stride] * 2,
        ),
        helper.make_node("Conv", [f"{tag}_pool", f"{tag}_w", f"{tag}_b"], [f"{tag}_map"]),
    ]
    return f"{tag}_map"


def _delta(nodes: list, inits: list, tag: str, stride: int, weight: np.ndarray, bias) -> str:
    """A [1, C, H/s, W/s] map of ``weight`` kernels (C, 3, s, s) applied per cell."""
    inits += [
        numpy_helper.from_array(weight.astype(np.float32), f"{tag}_w"),
        numpy_helper.from_array(np.asarray(bias, np.float32), f"{tag}_b"),
    ]
    nodes.append(
        helper.make_node(
            "Conv", ["input", f"{tag}_w", f"{tag}_b"], [f"{tag}_map"], strides=[stride] * 2
        )
    )
    return f"{tag}_map"


def _rows(nodes: list, inits: list, source: str, out: str, shape: list[int]) -> None:
    """NCHW map → cells in row-major order (x fastest, channels last), reshaped to ``shape``."""
    inits.append(numpy_helper.from_array(np.array(shape, np.int64), f"{out}_shape"))
    nodes += [
        helper.make_node("Transpose", [source], [f"{out}_nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", [f"{out}_nhwc", f"{out}_shape"], [out]),
    ]


def make_retinaface(
    path: str | Path,
    *,
    face_stride: int = 16,
    box: tuple[float, float, float, float] = BOX,
    keypoints: np.ndarray = KEYPOINTS,
    input_size: int | None = None,
    kps_width: int = 10,
) -> Path:
    """RetinaFace stand-in; ``input_size`` None = dynamic H/W (as FF's file is assumed to
    be); ``kps_width`` ≠ 10 makes a broken file."""
    nodes, inits, outputs = [], [], []
    distances = np.array([-box[0], -box[1], box[2], box[3]], np.float32)
    heads = (("score", 1), ("bbox", 4), ("kps", kps_width))
    for head, width in heads:
        for stride in STRIDES:
            name, tag = str(len(outputs)), f"{head}{stride}"
            if head == "score":
                weight = np.zeros((2, 3, stride, stride), np.float32)
                bias = np.full(2, _OFF, np.float32)
                if stride == face_stride:
                    weight[0] = _delta_kernel(stride, 4.0)  # 4 · Δ/128 on normalised input
                    bias[0] = -4.0
                logits = _delta(nodes, inits, tag, stride, weight, bias)
                _rows(nodes, inits, logits, f"{tag}_logit", [-1, 1])
                nodes.append(helper.make_node("Sigmoid", [f"{tag}_logit"], [name]))
            else:
                per_anchor = distances if head == "bbox" else keypoints.reshape(-1)[:width]
                constant = _cells(nodes, inits, tag, stride, np.tile(per_anchor, 2))
                _rows(nodes, inits, constant, name, [-1, width])
            rows = f"n{stride}"
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [rows, width]))
    return _save(nodes, inits, [_image_input(input_size)], outputs, path, "retinaface_standin")


def make_yolo_face(
    path: str | Path,
    *,
    face_stride: int = 32,
    box: tuple[float, float, float, float] = BOX,
    keypoints: np.ndarray = KEYPOINTS,
    rows: int = 20,
) -> Path:
    """YOLOv8-face stand-in at 640×640: one output [1, 20, 8400] (``rows`` ≠ 20 = broken)."""
    size = 640
    nodes, inits, parts = [], [], []
    columns = []
    for stride in STRIDES:
        cells = size // stride
        ys, xs = np.mgrid[:cells, :cells]
        columns.append(np.stack([xs.ravel(), ys.ravel()], axis=1) * stride)
        if stride == face_stride:
            weight = _delta_kernel(stride, 1.0)[None]  # Δ / 255 on x / 255 input
            score = _delta(nodes, inits, f"score{stride}", stride, weight, [0.0])
            _rows(nodes, inits, score, f"score{stride}_rows", [1, 1, -1])
            parts.append(f"score{stride}_rows")
        else:
            zeros = np.zeros((1, 1, cells * cells), np.float32)
            inits.append(numpy_helper.from_array(zeros, f"score{stride}_rows"))
            parts.append(f"score{stride}_rows")
    corner = np.concatenate(columns).astype(np.float32)  # (8400, 2) cell top-left, px
    stride_of = np.concatenate([np.full((size // s) ** 2, s, np.float32) for s in STRIDES])
    side = stride_of[:, None]
    x1y1, x2y2 = corner + np.array(box[:2]) * side, corner + np.array(box[2:]) * side
    centre, extent = (x1y1 + x2y2) / 2, x2y2 - x1y1
    points = corner[:, None, :] + keypoints[None] * side[:, None, :]
    triplets = np.concatenate([points, np.full((len(corner), 5, 1), 0.9, np.float32)], axis=2)
    before = np.concatenate([centre, extent], axis=1).T[None].astype(np.float32)
    after = triplets.reshape(len(corner), 15).T[None].astype(np.float32)[:, : rows - 5]
    inits += [numpy_helper.from_array(before, "boxes"), numpy_helper.from_array(after, "points")]
    nodes += [
        helper.make_node("Concat", parts, ["scores"], axis=2),
        helper.make_node("Concat", ["boxes", "scores", "points"], ["output0"], axis=1),
    ]
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, rows, len(corner)])
    return _save(nodes, inits, [_image_input(size)], [output], path, "yolo_face_standin")


def make_yunet(
    path: str | Path,
    *,
    face_stride: int = 16,
    box: tuple[float, float, float, float] = BOX,
    keypoints: np.ndarray = KEYPOINTS,
    obj: float = 0.8,
    obj_width: int = 1,
) -> Path:
    """YuNet stand-in at 640×640: twelve outputs [1, N_s, C] named like OpenCV zoo's
    (``obj_width`` ≠ 1 makes a broken file)."""
    size = 640
    nodes, inits, outputs = [], [], []
    x1, y1, x2, y2 = box
    offsets = np.array(
        [(x1 + x2) / 2, (y1 + y2) / 2, math.log(x2 - x1), math.log(y2 - y1)], np.float32
    )
    for head, width in (("cls", 1), ("obj", obj_width), ("bbox", 4), ("kps", 10)):
        for stride in STRIDES:
            name = f"{head}_{stride}"
            if head == "cls":
                scale = 1.0 / 255.0 if stride == face_stride else 0.0
                weight = _delta_kernel(stride, scale)[None]
                source = _delta(nodes, inits, name, stride, weight, [0.0])
            else:
                values = {
                    "obj": np.full(width, obj if stride == face_stride else 0.0),
                    "bbox": offsets,
                    "kps": keypoints.reshape(-1),
                }[head]
                source = _cells(nodes, inits, name, stride, values)
            _rows(nodes, inits, source, name, [1, -1, width])
            cells = (size // stride) ** 2
            outputs.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, cells, width])
            )
    return _save(nodes, inits, [_image_input(size)], outputs, path, "yunet_standin")
