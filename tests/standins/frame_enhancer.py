"""Small stand-ins for real_esrgan_x2/x4.onnx with the real files' interface.

``input`` f32 [1,3,T,T] (RGB in [0, 1]) → output 0 f32 [1,3,T·s,T·s] (MODELS-2.md §9),
or the same with dynamic axes. The network is a 5×5 convolution that mixes the three
channels with fixed random positive weights (each output channel its own, each summing
to 1, so values stay in [0, 1]) followed by nearest-neighbour upsampling ×s: a receptive
field of radius 2 input pixels, small enough for any tiling that overlaps by ≥ 2 to be
exact. ``drop_red`` replaces the convolution by zeroing channel 0 (red, RGB order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9
KERNEL = 5


def conv_weights(seed: int = 0) -> np.ndarray:
    """The stand-in's convolution weights [out 3, in 3, 5, 5]: positive, each output
    channel different and summing to 1 (the tests recompute the network with these)."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.05, 1.0, size=(3, 3, KERNEL, KERNEL))
    weights /= weights.sum(axis=(1, 2, 3), keepdims=True)
    return weights.astype(np.float32)


def make_frame_enhancer(
    path: str | Path,
    *,
    scale: int = 2,
    tile: int | None = 64,
    dynamic_batch: bool = False,
    drop_red: bool = False,
    half_io: bool = False,
    input_name: str = "input",
    extra_input: str | None = None,
    input_rank: int = 4,
    seed: int = 0,
) -> Path:
    """Write a stand-in to ``path`` and return the path.

    ``tile`` None: height and width are dynamic (input and output); ``dynamic_batch``:
    the batch axis is too. ``half_io``: float16 input and output (computed in float32
    inside). ``input_name`` / ``input_rank`` (3: no batch axis) and ``extra_input``
    (a second, unused input of that name) make files the family must refuse.
    """
    element = TensorProto.FLOAT16 if half_io else TensorProto.FLOAT
    batch: int | str = "batch" if dynamic_batch else 1
    if tile is None:
        in_shape: list[int | str] = [batch, 3, "height", "width"]
        out_shape: list[int | str] = [batch, 3, "out_height", "out_width"]
    else:
        in_shape = [batch, 3, tile, tile]
        out_shape = [batch, 3, tile * scale, tile * scale]
    if input_rank == 3:  # an export without the batch axis: [3, H, W]
        in_shape = in_shape[1:]
    initializers = [
        numpy_helper.from_array(np.array([1, 1, scale, scale], dtype=np.float32), "scales"),
    ]
    nodes = []
    source = input_name
    if input_rank == 3:
        initializers.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"))
        nodes.append(helper.make_node("Unsqueeze", [input_name, "axis0"], ["batched"]))
        source = "batched"
    if half_io:
        nodes.append(helper.make_node("Cast", [source], ["input_f32"], to=TensorProto.FLOAT))
        source = "input_f32"
    if drop_red:
        keep = np.array([0.0, 1.0, 1.0], dtype=np.float32).reshape(1, 3, 1, 1)
        initializers.append(numpy_helper.from_array(keep, "keep"))
        nodes.append(helper.make_node("Mul", [source, "keep"], ["features"]))
    else:
        initializers.append(numpy_helper.from_array(conv_weights(seed), "kernel"))
        pad = KERNEL // 2
        nodes.append(
            helper.make_node("Conv", [source, "kernel"], ["features"], pads=[pad, pad, pad, pad])
        )
    upsampled = "upsampled" if half_io else "output"
    nodes.append(
        helper.make_node(
            "Resize",
            ["features", "", "scales"],
            [upsampled],
            mode="nearest",
            nearest_mode="floor",
            coordinate_transformation_mode="asymmetric",
        )
    )
    if half_io:
        nodes.append(helper.make_node("Cast", [upsampled], ["output"], to=TensorProto.FLOAT16))
    graph = helper.make_graph(
        nodes,
        "real_esrgan_standin",
        [helper.make_tensor_value_info(input_name, element, in_shape)]
        + ([helper.make_tensor_value_info(extra_input, element, [1])] if extra_input else []),
        [helper.make_tensor_value_info("output", element, out_shape)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    path = Path(path)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
