"""Several detectors as one: the union of their faces, duplicates merged.

FaceFusion's ``many`` (MODELS-2.md §10) runs retinaface, scrfd and yolo_face
(YuNet excluded) and removes overlaps with NMS at IoU 0.1: different detectors
draw different boxes around the same face (YOLO's include the forehead), so
their overlap is far below the 0.4 one detector uses for its own candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from engine.detectors import FaceDetector, as_bgr, check_threshold
from engine.detectors.common import nms
from engine.errors import InvalidOptions
from engine.faces import Face

MANY_MODELS = ("retinaface_10g", "scrfd_2.5g", "yoloface_8n")
MANY_SIZES = (640,)  # FaceFusion offers only 640x640 for "many"
MANY_IOU = 0.1


def merge_faces(groups: Iterable[Sequence[Face]], iou_threshold: float) -> list[Face]:
    """All faces of ``groups``, a face dropped when its IoU with a higher-scoring kept
    face exceeds ``iou_threshold`` (the higher score's box and landmarks stay; equal
    scores: the earlier group wins). Largest first."""
    faces = [face for group in groups for face in group]
    if not faces:
        return []
    boxes = np.stack([face.box for face in faces])
    keep = nms(boxes, np.array([face.score for face in faces]), iou_threshold)
    kept = [faces[i] for i in keep]
    kept.sort(key=lambda face: face.area, reverse=True)
    return kept


class ManyDetector:
    """The union of ``detectors``' faces; a face seen by several is reported once."""

    def __init__(self, detectors: Sequence[FaceDetector], iou_threshold: float = MANY_IOU) -> None:
        if not detectors:
            raise InvalidOptions("the 'many' detector needs at least one detector")
        if not 0.0 <= iou_threshold < 1.0:
            raise InvalidOptions(f"'many' merge IoU must be in [0, 1), got {iou_threshold}")
        self.detectors = tuple(detectors)
        self.iou_threshold = float(iou_threshold)

    def detect(self, image_bgr: np.ndarray, score_threshold: float = 0.5) -> list[Face]:
        """Faces in a BGR frame, largest first."""
        threshold = check_threshold(score_threshold)
        image = as_bgr(image_bgr)
        groups = [detector.detect(image, threshold) for detector in self.detectors]
        return merge_faces(groups, self.iou_threshold)
