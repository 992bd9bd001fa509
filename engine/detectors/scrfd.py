"""SCRFD detectors (FaceFusion's ``scrfd_2.5g``, InsightFace's ``det_10g``).

Pre- and post-processing follow insightface's ``SCRFD`` exactly (MODELS.md
§3–4), so boxes agree with the reference: keep the aspect ratio to fit the
input size (small images are upscaled), paste at the top-left of a zero
canvas, RGB, ``(x − 127.5) / 128``; decode distances from anchor centres per
stride, drop scores below the threshold, greedy NMS at 0.4.

The output layout comes from the number of outputs, as in insightface: 6 or 9
= strides 8/16/32 with two anchors, 10 or 15 = strides 8…128 with one anchor;
9 and 15 carry keypoints. Outputs are taken by position (scores, boxes,
keypoints, each stride in order); names differ between exports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.detectors import as_bgr, check_threshold, make_faces
from engine.detectors.nms import greedy_nms
from engine.errors import InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.runtime import SessionCache

# Approximate landmark positions of a frontal face inside an SCRFD box, as
# fractions of box width and height (eye and mouth heights as seen on
# insightface's t1.jpg with scrfd_2.5g). Used only by exports without a
# keypoint head (6 or 10 outputs), so that alignment still has five points.
_BOX_LANDMARKS = np.array(
    [[0.335, 0.445], [0.665, 0.445], [0.5, 0.62], [0.355, 0.795], [0.645, 0.795]],
    dtype=np.float32,
)


@dataclass(frozen=True)
class ScrfdLayout:
    strides: tuple[int, ...]
    anchors: int
    keypoints: bool


LAYOUTS: dict[int, ScrfdLayout] = {
    6: ScrfdLayout((8, 16, 32), 2, False),
    9: ScrfdLayout((8, 16, 32), 2, True),
    10: ScrfdLayout((8, 16, 32, 64, 128), 1, False),
    15: ScrfdLayout((8, 16, 32, 64, 128), 1, True),
}


def _size_pair(input_size: int | tuple[int, int]) -> tuple[int, int]:
    """(width, height) from an int or a pair."""
    if isinstance(input_size, int | np.integer):
        return int(input_size), int(input_size)
    try:
        width, height = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise InvalidOptions(
            f"scrfd input size must be an int or (width, height), got {input_size!r}"
        ) from None
    return width, height


class ScrfdDetector:
    """SCRFD face detector with five keypoints.

    ``input_size`` (an int or ``(width, height)``) is used when the model's
    input has dynamic height/width; a model with fixed dimensions uses its own.
    """

    def __init__(
        self,
        sessions: SessionCache,
        model_path: str | Path,
        input_size: int | tuple[int, int] = 640,
        nms_threshold: float = 0.4,
    ) -> None:
        self.model_path = Path(model_path)
        self._session = sessions.get(self.model_path)
        name = self.model_path.name
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelUnavailable(
                f"{name} is not an SCRFD detector: expected one NCHW input, "
                f"found {[(i.name, i.shape) for i in inputs]}"
            )
        self._input_name = inputs[0].name
        outputs = self._session.get_outputs()
        layout = LAYOUTS.get(len(outputs))
        if layout is None:
            raise ModelUnavailable(
                f"{name} is not an SCRFD detector: it has {len(outputs)} outputs, "
                f"expected one of {sorted(LAYOUTS)}"
            )
        self.layout = layout
        self._output_names = [out.name for out in outputs]
        self._batched = len(outputs[0].shape) == 3
        self.input_size = self._resolve_size(inputs[0].shape, _size_pair(input_size))
        self.nms_threshold = check_threshold(nms_threshold)
        self._centres = {stride: self._anchor_centres(stride) for stride in layout.strides}

    def _resolve_size(self, shape: list, requested: tuple[int, int]) -> tuple[int, int]:
        """(width, height) fed to the model: fixed model dims win over the requested size."""
        fixed_h, fixed_w = (d if isinstance(d, int) and d > 0 else None for d in shape[2:4])
        width = fixed_w or requested[0]
        height = fixed_h or requested[1]
        step = max(self.layout.strides)
        if width <= 0 or height <= 0 or width % step or height % step:
            raise InvalidOptions(
                f"scrfd input size must be positive multiples of {step}, got {width}x{height}"
            )
        return width, height

    def _anchor_centres(self, stride: int) -> np.ndarray:
        return anchor_centres(self.input_size, stride, self.layout.anchors)

    def detect(self, image_bgr: np.ndarray, score_threshold: float = 0.5) -> list[Face]:
        """Faces in a BGR frame, largest first."""
        threshold = check_threshold(score_threshold)
        image = as_bgr(image_bgr)
        blob, scale = self._blob(image)
        outputs = self._session.run(self._output_names, {self._input_name: blob})
        if self._batched:
            outputs = [out[0] for out in outputs]
        boxes, scores, landmarks = self._decode(outputs, threshold)
        boxes /= scale
        landmarks /= scale
        keep = greedy_nms(boxes, scores, self.nms_threshold)
        boxes, scores = boxes[keep], scores[keep]
        if self.layout.keypoints:
            landmarks = landmarks[keep]
        else:
            size = boxes[:, None, 2:4] - boxes[:, None, 0:2]
            landmarks = boxes[:, None, 0:2] + _BOX_LANDMARKS[None] * size
        return make_faces(boxes, scores, landmarks)

    def _blob(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """NCHW float32 input and the image → input scale (insightface's resize rule)."""
        width, height = self.input_size
        image_ratio = float(image.shape[0]) / image.shape[1]
        if image_ratio > float(height) / width:
            new_height = height
            new_width = int(new_height / image_ratio)
        else:
            new_width = width
            new_height = int(new_width * image_ratio)
        new_width, new_height = max(new_width, 1), max(new_height, 1)
        scale = float(new_height) / image.shape[0]
        canvas = np.zeros((height, width, 3), dtype=np.uint8)
        canvas[:new_height, :new_width] = cv2.resize(image, (new_width, new_height))
        blob = (canvas[:, :, ::-1].astype(np.float32) - np.float32(127.5)) / np.float32(128.0)
        return np.ascontiguousarray(blob.transpose(2, 0, 1)[None]), scale

    def _decode(
        self, outputs: list[np.ndarray], threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return decode_distances(outputs, self.layout, self._centres, threshold, self._head)

    def _head(self, output: np.ndarray, rows: int, width: int, stride: int) -> np.ndarray:
        """One output as (rows, width), or a clear error when its shape does not fit the layout."""
        if output.size != rows * width:
            raise ModelUnavailable(
                f"{self.model_path.name}: stride-{stride} output has shape {output.shape}, expected "
                f"{rows}x{width} for input {self.input_size[0]}x{self.input_size[1]}; "
                "is this an SCRFD model?"
            )
        return output.reshape(rows, width)


def anchor_centres(input_size: tuple[int, int], stride: int, anchors: int) -> np.ndarray:
    """(N, 2) anchor centres of one stride for a (width, height) input: (x·s, y·s) with no
    0.5 offset, row-major with x fastest, each repeated once per anchor (MODELS.md §4)."""
    width, height = input_size
    ys, xs = np.mgrid[: height // stride, : width // stride]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, anchors, axis=0)


def decode_distances(
    outputs: list[np.ndarray],
    layout: ScrfdLayout,
    centres: dict[int, np.ndarray],
    threshold: float,
    head: Callable[[np.ndarray, int, int, int], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates with score ≥ threshold over all strides: boxes, scores, landmarks.

    Shared by SCRFD and FaceFusion's RetinaFace (the same heads, MODELS-2.md §10).
    ``outputs`` are the scores, boxes and keypoints per stride, in that order;
    ``head(output, rows, width, stride)`` reshapes one output or raises a clear error.
    """
    count = len(layout.strides)
    all_boxes, all_scores, all_points = [], [], []
    for index, stride in enumerate(layout.strides):
        anchors = centres[stride]
        scores = head(outputs[index], len(anchors), 1, stride).reshape(-1)
        picked = np.nonzero(scores >= threshold)[0]
        distances = head(outputs[index + count], len(anchors), 4, stride)[picked]
        anchor = anchors[picked]
        all_scores.append(scores[picked])
        all_boxes.append(
            np.concatenate(
                [anchor - distances[:, 0:2] * stride, anchor + distances[:, 2:4] * stride],
                axis=1,
            )
        )
        if layout.keypoints:
            offsets = head(outputs[index + 2 * count], len(anchors), 10, stride)[picked]
            all_points.append(anchor[:, None, :] + offsets.reshape(-1, 5, 2) * stride)
        else:
            all_points.append(np.zeros((len(picked), 5, 2), dtype=np.float32))
    return (
        np.concatenate(all_boxes).astype(np.float32),
        np.concatenate(all_scores).astype(np.float32),
        np.concatenate(all_points).astype(np.float32),
    )
