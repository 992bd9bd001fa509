"""Greedy non-maximum suppression shared by the detectors.

Both MTCNN and SCRFD were trained and evaluated with the same greedy NMS and the
"+1" pixel-area convention (insightface, facenet), so one implementation serves
both and keeps their results comparable with the reference code.
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def greedy_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    mode: Literal["union", "min"] = "union",
) -> np.ndarray:
    """Indices of the boxes to keep, highest score first.

    ``boxes`` is (N, 4) ``[x1, y1, x2, y2]``. A box is dropped when its overlap
    with an already kept box exceeds ``iou_threshold``; the overlap is the
    intersection over the union (``"union"``) or over the smaller area
    (``"min"``, MTCNN's last stage).
    """
    if mode not in ("union", "min"):
        raise ValueError(f"unknown NMS mode {mode!r}")
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if boxes.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if mode == "union":
            overlap = inter / (areas[i] + areas[rest] - inter)
        else:
            overlap = inter / np.minimum(areas[i], areas[rest])
        order = rest[overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
