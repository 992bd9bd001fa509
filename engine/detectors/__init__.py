"""Face detectors: the embedded MTCNN and the downloadable SCRFD models.

Every detector answers ``detect(image_bgr, score_threshold) -> list[Face]``,
largest face first, with five landmarks in template order. The helpers here
hold the input checks and ordering that all detectors share.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from engine.errors import InvalidInput, InvalidOptions
from engine.faces import Face


class FaceDetector(Protocol):
    def detect(self, image_bgr: np.ndarray, score_threshold: float = 0.5) -> list[Face]: ...


def as_bgr(image: np.ndarray) -> np.ndarray:
    """The image as a contiguous BGR uint8 (H, W, 3) array; grey and BGRA are converted."""
    if not isinstance(image, np.ndarray):
        raise InvalidInput(f"expected an image array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidInput(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInput(f"expected an (H, W, 3) BGR image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInput(f"the image is empty (shape {image.shape})")
    return np.ascontiguousarray(image)


def check_threshold(score_threshold: float) -> float:
    """The score threshold as a float in [0, 1], else a clear error."""
    try:
        value = float(score_threshold)
    except (TypeError, ValueError):
        raise InvalidOptions(
            f"detector score threshold must be a number, got {score_threshold!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise InvalidOptions(f"detector score threshold must be between 0 and 1, got {value}")
    return value


def make_faces(boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray) -> list[Face]:
    """``Face`` records from (N, 4) boxes, (N,) scores and (N, 5, 2) landmarks, largest first."""
    faces = [
        Face(
            box=np.asarray(box, dtype=np.float32).copy(),
            score=float(score),
            landmarks=np.asarray(points, dtype=np.float32).reshape(5, 2).copy(),
        )
        for box, score, points in zip(boxes, scores, landmarks, strict=True)
    ]
    faces.sort(key=lambda face: face.area, reverse=True)
    return faces


__all__ = ["FaceDetector", "as_bgr", "check_threshold", "make_faces"]
