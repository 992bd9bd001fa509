"""A small stand-in for gfpgan_1.4.onnx with the real file's interface.

``input`` f32 [1,3,512,512] in [−1, 1] → ``output`` f32 [1,3,512,512]: a mild,
deterministic restoration look-alike (half a 3×3 smoothing, slightly brightened).
With ``with_weight`` the model also declares FaceFusion's optional ``weight``
input (float64 [1]) and uses it to scale the output, so a loader that forgets
to feed it fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9


def make_gfpgan(path: str | Path, with_weight: bool = False) -> Path:
    """Write the stand-in model to ``path`` and return the path."""
    kernel = np.full((3, 1, 3, 3), 1.0 / 9.0, dtype=np.float32)
    initializers = [
        numpy_helper.from_array(kernel, "smooth_kernel"),
        numpy_helper.from_array(np.array(0.5, dtype=np.float32), "half"),
        numpy_helper.from_array(np.array(0.9, dtype=np.float32), "gain"),
        numpy_helper.from_array(np.array(0.1, dtype=np.float32), "lift"),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["input", "smooth_kernel"], ["smooth"], group=3, pads=[1, 1, 1, 1]
        ),
        helper.make_node("Add", ["input", "smooth"], ["sum"]),
        helper.make_node("Mul", ["sum", "half"], ["mixed"]),
        helper.make_node("Mul", ["mixed", "gain"], ["scaled"]),
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 512, 512])]
    if with_weight:
        initializers += [
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
            numpy_helper.from_array(np.array(0.2, dtype=np.float32), "weight_gain"),
        ]
        nodes += [
            helper.make_node("Add", ["scaled", "lift"], ["lifted"]),
            helper.make_node("Cast", ["weight"], ["weight_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["weight_f", "weight_gain"], ["weight_scaled"]),
            helper.make_node("Sub", ["one", "weight_scaled"], ["factor"]),
            helper.make_node("Mul", ["lifted", "factor"], ["output"]),
        ]
        inputs.append(helper.make_tensor_value_info("weight", TensorProto.DOUBLE, [1]))
    else:
        nodes.append(helper.make_node("Add", ["scaled", "lift"], ["output"]))
    graph = helper.make_graph(
        nodes,
        "gfpgan_standin",
        inputs,
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 512, 512])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path
