"""Tiny stand-ins for the 68-point landmarkers, fan_68_5 and fairface, with the real
files' interfaces (MODELS-2.md §7, §11).

- ``make_landmarker``: ``input`` f32 [1, 3, 256, 256] → output 0 [1, 68, 3] (x, y,
  score in 64-px heatmap units; names as CS binds them: 2dfan4 ``landmarks`` plus
  ``heatmaps`` [1, 68, 64, 64], peppa_wutz ``output``). Either fixed rows, or every
  point at the centroid of the crop's bright pixels (so a dot in the frame must come
  back where it is, whatever the crop did on the way).
- ``make_fan_68_5``: ``input`` [1, 5, 2] (float32 or float64) → ``output`` [1, 68, 2] =
  a fixed weighting of the five points plus a constant offset in unit space.
- ``make_fairface``: ``input`` f32 [1, 3, 224, 224] → int64 [1] ``race_id``,
  ``gender_id``, ``age_id`` that depend on the crop (see ``fairface_answers``), or
  float logits [1, C] with the same argmax.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 8
POINTS = 68
HEATMAP = 64
CROP = 256
FAIRFACE = 224
# fairface stand-in: the window (rows, cols) around arcface_112_v2's left eye at 224
# (76.59, 103.39), and the age line age_id = clip(floor(4·mean + 4), 0, 8).
EYE_ROWS = (98, 109)
EYE_COLS = (71, 82)
AGE_GAIN, AGE_OFFSET = 4.0, 4.0
CLASS_COUNTS = {"race_id": 7, "gender_id": 2, "age_id": 9}


def _save(nodes, inputs, outputs, inits, path: str | Path, name: str) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fusion-studio-tests"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def make_landmarker(
    path: str | Path,
    family: str = "2dfan4",
    *,
    rows: np.ndarray | None = None,
    peaks: np.ndarray | None = None,
    heatmaps: bool = True,
    track_bright: bool = False,
    side: int = CROP,
) -> Path:
    """Write a 2dfan4 / peppa_wutz stand-in.

    ``rows`` (68, 3): the fixed (x, y, score) answer. ``track_bright``: instead, every
    point is the centroid of the pixels brighter than half, with score 1. 2dfan4 with
    ``heatmaps`` also answers heatmaps whose per-point maxima are ``peaks`` (68,).
    ``side`` other than 256 declares a wrong input size.
    """
    value = helper.make_tensor_value_info
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),  # ties outputs to the input
    ]
    if track_bright:
        grid = np.arange(CROP, dtype=np.float32) / np.float32(CROP / HEATMAP)
        inits += [
            numpy_helper.from_array(np.array(0.5, np.float32), "half"),
            numpy_helper.from_array(np.tile(grid, (CROP, 1)), "grid_x"),
            numpy_helper.from_array(np.tile(grid[:, None], (1, CROP)), "grid_y"),
            numpy_helper.from_array(np.array(1e-6, np.float32), "tiny"),
            numpy_helper.from_array(np.ones((1, 1, 1), np.float32), "one"),
            numpy_helper.from_array(np.array([1, 1, 1], np.int64), "row_shape"),
            numpy_helper.from_array(np.array([1, POINTS, 3], np.int64), "out_shape"),
        ]
        nodes += [
            helper.make_node("ReduceMean", ["input"], ["grey"], axes=[1], keepdims=1),
            helper.make_node("Sub", ["grey", "half"], ["shifted"]),
            helper.make_node("Relu", ["shifted"], ["weight"]),
            helper.make_node("ReduceSum", ["weight"], ["total0"], keepdims=1),
            helper.make_node("Add", ["total0", "tiny"], ["total"]),
            helper.make_node("Mul", ["weight", "grid_x"], ["wx"]),
            helper.make_node("Mul", ["weight", "grid_y"], ["wy"]),
            helper.make_node("ReduceSum", ["wx"], ["sx"], keepdims=1),
            helper.make_node("ReduceSum", ["wy"], ["sy"], keepdims=1),
            helper.make_node("Div", ["sx", "total"], ["cx4"]),
            helper.make_node("Div", ["sy", "total"], ["cy4"]),
            helper.make_node("Reshape", ["cx4", "row_shape"], ["cx"]),
            helper.make_node("Reshape", ["cy4", "row_shape"], ["cy"]),
            helper.make_node("Concat", ["cx", "cy", "one"], ["row"], axis=2),
            helper.make_node("Expand", ["row", "out_shape"], ["rows"]),
        ]
    else:
        fixed = np.asarray(rows, np.float32).reshape(1, POINTS, 3)
        inits.append(numpy_helper.from_array(fixed, "fixed_rows"))
        nodes.append(helper.make_node("Identity", ["fixed_rows"], ["rows"]))
    first = "landmarks" if family == "2dfan4" else "output"
    nodes.append(helper.make_node("Add", ["rows", "nothing"], [first]))
    outputs = [value(first, TensorProto.FLOAT, [1, POINTS, 3])]
    if family == "2dfan4" and heatmaps:
        pattern = np.full((HEATMAP, HEATMAP), 0.25, np.float32)
        pattern[20, 30] = 1.0  # each map's maximum is its peak
        inits += [
            numpy_helper.from_array(
                np.asarray(peaks, np.float32).reshape(1, POINTS, 1, 1), "peaks"
            ),
            numpy_helper.from_array(pattern, "pattern"),
        ]
        nodes += [
            helper.make_node("Mul", ["peaks", "pattern"], ["maps"]),
            helper.make_node("Add", ["maps", "nothing"], ["heatmaps"]),
        ]
        outputs.append(value("heatmaps", TensorProto.FLOAT, [1, POINTS, HEATMAP, HEATMAP]))
    inputs = [value("input", TensorProto.FLOAT, [1, 3, side, side])]
    return _save(nodes, inputs, outputs, inits, path, f"{family}_standin")


def make_fan_68_5(
    path: str | Path, weights: np.ndarray, offset: np.ndarray, dtype: str = "float32"
) -> Path:
    """Write a fan_68_5 stand-in: output = ``weights`` (68, 5) · points + ``offset`` (2,)."""
    np_dtype = np.dtype(dtype)
    onnx_type = helper.np_dtype_to_tensor_dtype(np_dtype)
    inits = [
        numpy_helper.from_array(np.asarray(weights, np_dtype).reshape(POINTS, 5), "weights"),
        numpy_helper.from_array(np.asarray(offset, np_dtype).reshape(2), "offset"),
    ]
    nodes = [
        helper.make_node("MatMul", ["weights", "input"], ["mixed"]),
        helper.make_node("Add", ["mixed", "offset"], ["output"]),
    ]
    inputs = [helper.make_tensor_value_info("input", onnx_type, [1, 5, 2])]
    outputs = [helper.make_tensor_value_info("output", onnx_type, [1, POINTS, 2])]
    return _save(nodes, inputs, outputs, inits, path, "fan_68_5_standin")


def fairface_answers(blob: np.ndarray) -> dict[str, int]:
    """What the fairface stand-in answers for a normalised RGB blob [1, 3, 224, 224]:
    gender 1 when the red mean beats the blue mean in the left-eye window, age from
    the overall mean, race the brightest channel."""
    eye = blob[0, :, EYE_ROWS[0] : EYE_ROWS[1], EYE_COLS[0] : EYE_COLS[1]].mean(axis=(1, 2))
    age = np.clip(np.floor(np.float32(AGE_GAIN) * blob.mean() + np.float32(AGE_OFFSET)), 0, 8)
    return {
        "race_id": int(np.argmax(blob[0].mean(axis=(1, 2)))),
        "gender_id": int(eye[0] > eye[2]),
        "age_id": int(age),
    }


def make_fairface(path: str | Path, *, logits: bool = False) -> Path:
    """Write the fairface stand-in (class ids, or with ``logits`` float scores [1, C])."""
    value = helper.make_tensor_value_info
    inits = [
        numpy_helper.from_array(np.array([0, 0, EYE_ROWS[0], EYE_COLS[0]], np.int64), "eye_start"),
        numpy_helper.from_array(np.array([1, 3, EYE_ROWS[1], EYE_COLS[1]], np.int64), "eye_end"),
        numpy_helper.from_array(np.array([0], np.int64), "red"),
        numpy_helper.from_array(np.array([2], np.int64), "blue"),
        numpy_helper.from_array(np.array(AGE_GAIN, np.float32), "age_gain"),
        numpy_helper.from_array(np.array(AGE_OFFSET, np.float32), "age_offset"),
        numpy_helper.from_array(np.array(0.0, np.float32), "age_low"),
        numpy_helper.from_array(np.array(8.0, np.float32), "age_high"),
        numpy_helper.from_array(np.array([1], np.int64), "one_shape"),
    ]
    nodes = [
        helper.make_node("Slice", ["input", "eye_start", "eye_end"], ["eye"]),
        helper.make_node("ReduceMean", ["eye"], ["eye_means"], axes=[0, 2, 3], keepdims=0),
        helper.make_node("Gather", ["eye_means", "red"], ["eye_red"], axis=0),
        helper.make_node("Gather", ["eye_means", "blue"], ["eye_blue"], axis=0),
        helper.make_node("Greater", ["eye_red", "eye_blue"], ["is_female"]),
        helper.make_node("Cast", ["is_female"], ["gender_ids"], to=TensorProto.INT64),
        helper.make_node("ReduceMean", ["input"], ["overall"], keepdims=0),
        helper.make_node("Mul", ["overall", "age_gain"], ["age_scaled"]),
        helper.make_node("Add", ["age_scaled", "age_offset"], ["age_line"]),
        helper.make_node("Floor", ["age_line"], ["age_floor"]),
        helper.make_node("Clip", ["age_floor", "age_low", "age_high"], ["age_clipped"]),
        helper.make_node("Cast", ["age_clipped"], ["age_scalar"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["age_scalar", "one_shape"], ["age_ids"]),
        helper.make_node("ReduceMean", ["input"], ["channel_means"], axes=[2, 3], keepdims=0),
        helper.make_node("ArgMax", ["channel_means"], ["race_ids"], axis=1, keepdims=0),
    ]
    outputs = []
    for name in ("race_id", "gender_id", "age_id"):
        ids = f"{name[:-3]}_ids"
        if not logits:
            nodes.append(helper.make_node("Identity", [ids], [name]))
            outputs.append(value(name, TensorProto.INT64, [1]))
            continue
        # logits = −(class − id)²: the argmax is the id.
        count = CLASS_COUNTS[name]
        inits.append(
            numpy_helper.from_array(np.arange(count, dtype=np.float32)[None], f"{name}_classes")
        )
        nodes += [
            helper.make_node("Cast", [ids], [f"{name}_float"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", [f"{name}_float", "one_shape"], [f"{name}_column"]),
            helper.make_node("Sub", [f"{name}_classes", f"{name}_column"], [f"{name}_gap"]),
            helper.make_node("Mul", [f"{name}_gap", f"{name}_gap"], [f"{name}_square"]),
            helper.make_node("Neg", [f"{name}_square"], [name]),
        ]
        outputs.append(value(name, TensorProto.FLOAT, [1, count]))
    inputs = [value("input", TensorProto.FLOAT, [1, 3, FAIRFACE, FAIRFACE])]
    return _save(nodes, inputs, outputs, inits, path, "fairface_standin")
