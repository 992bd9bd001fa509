"""68-point landmarks: the landmarkers, fan_68_5, and which points a face ends up with.

``annotate_landmarks`` is FaceFusion's choice (MODELS-2.md §7.2): ``landmarks_68`` is
the landmarker's answer when one runs, else fan_68_5's estimate; the five alignment
points are replaced by the landmarker's (via §7.1) only when it is confident enough,
since a poor 68-point fit would misalign every later crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from engine.errors import InvalidOptions
from engine.faces import Face
from engine.landmarks.convert import face_angle, five_from_68
from engine.landmarks.fan68 import BestOfLandmarkers, Landmarker68
from engine.landmarks.fan_68_5 import Fan68From5

DEFAULT_THRESHOLD = 0.5  # FaceFusion's --face-landmarker-score


class Landmarker(Protocol):
    def detect(
        self, frame: np.ndarray, box: np.ndarray, angle: int = 0
    ) -> tuple[np.ndarray, float]: ...


def annotate_landmarks(
    frame: np.ndarray,
    faces: Sequence[Face],
    landmarker: Landmarker | None,
    fan_68_5: Fan68From5 | None,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[Face]:
    """New faces with ``landmarks_68`` set and ``landmarks`` refined where the landmarker
    scores above ``threshold``; the inputs are left as they are.

    The landmarker's crop is turned upright by the angle of fan_68_5's estimate (0 when
    there is no fan_68_5). With neither model the faces come back unchanged.
    """
    if not 0.0 <= float(threshold) <= 1.0:
        raise InvalidOptions(f"landmarker score threshold must be between 0 and 1, got {threshold}")
    annotated = []
    for face in faces:
        estimate = fan_68_5.estimate(face.landmarks) if fan_68_5 is not None else None
        points68 = estimate if estimate is not None else face.landmarks_68
        landmarks = face.landmarks
        if landmarker is not None:
            angle = face_angle(estimate) if estimate is not None else 0
            points68, score = landmarker.detect(frame, face.box, angle)
            if score > threshold:
                landmarks = five_from_68(points68)
        annotated.append(replace(face, landmarks=landmarks, landmarks_68=points68))
    return annotated


__all__ = [
    "BestOfLandmarkers",
    "DEFAULT_THRESHOLD",
    "Fan68From5",
    "Landmarker",
    "Landmarker68",
    "annotate_landmarks",
    "face_angle",
    "five_from_68",
]
