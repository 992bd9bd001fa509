"""A small stand-in for inswapper_128.onnx with the real file's interface.

Same input/output names and shapes as the real model (``target`` f32
[1,3,128,128], ``source`` f32 [1,512] → ``output`` f32 [1,3,128,128]) and the
512×512 ``emap`` as the last graph initializer, unused by the graph as in the
real model. The graph really uses both inputs: the output is the target crop,
dimmed, plus a smooth colour pattern computed from the source latent, so a
different identity gives visibly different pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9


def make_inswapper(
    path: str | Path,
    seed: int = 0,
    emap_shape: tuple[int, ...] | None = (512, 512),
    input_names: tuple[str, str] = ("target", "source"),
) -> Path:
    """Write the stand-in model to ``path`` and return the path.

    ``emap_shape=None`` leaves the emap out (the last initializer is then a
    weight matrix of another shape); another shape makes a wrong emap. Other
    ``input_names`` exercise the loader's by-position fallback.
    """
    rng = np.random.default_rng(seed)
    image_name, latent_name = input_names
    # A unit latent times N(0, 0.15²) weights gives per-cell shifts of about ±0.15.
    weights = rng.normal(0.0, 0.15, size=(512, 3 * 8 * 8)).astype(np.float32)
    initializers = [
        numpy_helper.from_array(weights, "latent_weights"),
        numpy_helper.from_array(np.array([1, 3, 8, 8], dtype=np.int64), "pattern_shape"),
        numpy_helper.from_array(np.array([1, 1, 16, 16], dtype=np.float32), "pattern_scales"),
        numpy_helper.from_array(np.array(0.85, dtype=np.float32), "gain"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "low"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "high"),
    ]
    if emap_shape is not None:
        # Not orthogonal, so the latent's length depends on the normalisation rule.
        emap = rng.normal(0.0, 1.0 / np.sqrt(512), size=emap_shape).astype(np.float32)
        initializers.append(numpy_helper.from_array(emap, "emap"))
    nodes = [
        helper.make_node("MatMul", [latent_name, "latent_weights"], ["pattern_flat"]),
        helper.make_node("Reshape", ["pattern_flat", "pattern_shape"], ["pattern_small"]),
        helper.make_node(
            "Resize", ["pattern_small", "", "pattern_scales"], ["pattern"], mode="linear"
        ),
        helper.make_node("Mul", [image_name, "gain"], ["dimmed"]),
        helper.make_node("Add", ["dimmed", "pattern"], ["raw"]),
        helper.make_node("Clip", ["raw", "low", "high"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "inswapper_standin",
        [
            helper.make_tensor_value_info(image_name, TensorProto.FLOAT, [1, 3, 128, 128]),
            helper.make_tensor_value_info(latent_name, TensorProto.FLOAT, [1, 512]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path
