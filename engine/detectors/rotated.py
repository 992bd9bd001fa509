"""Detection repeated on the frame turned by 90, 180 and 270 degrees.

Detectors are trained on upright faces, so a face lying sideways or upside down
(a rotated phone video, a person lying down) is often missed. As FaceFusion's
``--face-detector-angles`` (MODELS-2.md §10), the frame is also turned by each
requested angle (counter-clockwise, OpenCV's sign convention; the canvas grows to
hold the turned frame, i.e. width and height swap), detected, and the boxes and
landmarks are mapped back into the original frame. All angles' faces are then
merged by NMS at FaceFusion's IoU: 0.4 / 0.3 / 0.2 / 0.1 for 1 / 2 / 3 / 4 angles.

The landmarks are only mapped back, never reordered: "left eye" stays the eye on
the image-left of the *upright* face. For a face found at 90° the five points
are therefore turned in the original frame, and the similarity transform of the
alignment turns the crop upright again (which is what makes these faces usable).
A box is the axis-aligned box of the mapped-back corners.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from engine.align import transform_points
from engine.detectors import FaceDetector, as_bgr, check_threshold
from engine.detectors.many import merge_faces
from engine.errors import InvalidOptions
from engine.faces import Face

ANGLES = (0, 90, 180, 270)
_ROTATE = {
    90: cv2.ROTATE_90_COUNTERCLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_CLOCKWISE,
}
_IOU_BY_COUNT = {1: 0.4, 2: 0.3, 3: 0.2, 4: 0.1}


def check_angles(angles: Iterable[int | str]) -> tuple[int, ...]:
    """The angles to run, 0 always first, each once; anything else is ``InvalidOptions``."""
    if isinstance(angles, str | bytes) or not isinstance(angles, Iterable):
        raise InvalidOptions(f"detector angles must be a list of angles, got {angles!r}")
    values = list(angles)
    requested = set()
    for value in values:
        text = str(value).strip()
        if isinstance(value, bool) or not (isinstance(value, int | np.integer | str)):
            text = ""
        if not text.isdigit() or int(text) not in ANGLES:
            raise InvalidOptions(
                f"detector angles must be among {', '.join(map(str, ANGLES))}, got {values!r}"
            )
        requested.add(int(text))
    return tuple(angle for angle in ANGLES if angle == 0 or angle in requested)


def back_matrix(angle: int, width: int, height: int) -> np.ndarray:
    """2×3 matrix from the frame turned by ``angle`` back to the original frame of size
    ``width`` × ``height`` (pixel-edge coordinates: pixel i spans [i, i + 1))."""
    return {
        0: np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
        90: np.array([[0.0, -1.0, width], [1.0, 0.0, 0.0]]),
        180: np.array([[-1.0, 0.0, width], [0.0, -1.0, height]]),
        270: np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, height]]),
    }[angle]


def map_back(face: Face, matrix: np.ndarray) -> Face:
    """The face with its box and landmarks mapped through ``matrix``."""
    x1, y1, x2, y2 = face.box
    corners = transform_points(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]), matrix)
    box = np.concatenate([corners.min(axis=0), corners.max(axis=0)]).astype(np.float32)
    landmarks = transform_points(face.landmarks, matrix).astype(np.float32)
    return Face(box=box, score=face.score, landmarks=landmarks)


class RotatedDetector:
    """``detector`` run at angle 0 and at each of ``angles`` (90, 180, 270)."""

    def __init__(self, detector: FaceDetector, angles: Iterable[int] = ()) -> None:
        self.detector = detector
        self.angles = check_angles(angles)
        self.iou_threshold = _IOU_BY_COUNT[len(self.angles)]

    def detect(self, image_bgr: np.ndarray, score_threshold: float = 0.5) -> list[Face]:
        """Faces in a BGR frame, in its own coordinates, largest first."""
        threshold = check_threshold(score_threshold)
        image = as_bgr(image_bgr)
        height, width = image.shape[:2]
        groups = []
        for angle in self.angles:
            if angle == 0:
                groups.append(self.detector.detect(image, threshold))
                continue
            faces = self.detector.detect(cv2.rotate(image, _ROTATE[angle]), threshold)
            matrix = back_matrix(angle, width, height)
            groups.append([map_back(face, matrix) for face in faces])
        if len(groups) == 1:
            return groups[0]
        return merge_faces(groups, self.iou_threshold)
