"""A tiny stand-in for the ArcFace recognizer with the real model's interface.

Input ``input`` f32 [1, 3, 112, 112] (FaceFusion's arcface_w600k_r50) or a
dynamic batch (insightface's w600k_r50); output [B, 512]. The embedding is a
fixed random projection of the 8×8 average-pooled crop: the same crop always
gives the same vector, different faces give different ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EMBEDDING_SIZE = 512
_POOL = 14  # 112 / 14 = 8 cells per side


def make_arcface(
    path: str | Path, *, batch: int | None = 1, mxnet: bool = False, seed: int = 0
) -> Path:
    """Write the stand-in to ``path`` and return it.

    ``batch`` None declares a dynamic batch dimension. ``mxnet`` builds the
    graph like an MXNet export: it takes raw 0–255 pixels and starts with
    ``_minus``/``_mul`` nodes doing ``(x − 127.5) / 127.5`` itself, which is
    what insightface looks for to feed such models mean 0 / std 1.
    """
    rng = np.random.default_rng(seed)
    features = 3 * (112 // _POOL) ** 2
    projection = rng.standard_normal((features, EMBEDDING_SIZE)).astype(np.float32)
    projection /= np.sqrt(features)
    inits = [
        numpy_helper.from_array(projection, "projection"),
        numpy_helper.from_array(
            rng.standard_normal(EMBEDDING_SIZE).astype(np.float32) * 0.1, "offset"
        ),
    ]
    nodes = []
    source = "input"
    if mxnet:
        inits += [
            numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
            numpy_helper.from_array(np.array(1 / 127.5, np.float32), "scale"),
        ]
        nodes += [
            helper.make_node("Sub", ["input"], ["centred"], name="_minus0"),
            helper.make_node("Mul", ["centred", "scale"], ["scaled"], name="_mul0"),
        ]
        nodes[0].input.append("mean")
        source = "scaled"
    nodes += [
        helper.make_node(
            "AveragePool",
            [source],
            ["pooled"],
            kernel_shape=[_POOL, _POOL],
            strides=[_POOL, _POOL],
            name="pool",
        ),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "projection"], ["projected"], name="project"),
        helper.make_node("Add", ["projected", "offset"], ["output"], name="offset_add"),
    ]
    dim = batch if batch else "batch"
    graph = helper.make_graph(
        nodes,
        "arcface_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [dim, 3, 112, 112])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [dim, EMBEDDING_SIZE])],
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
