"""The face record every detector produces and every swapper consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Face:
    """A detected face in frame pixel coordinates.

    ``landmarks`` are five (x, y) points in template order: left eye, right
    eye, nose tip, left mouth corner, right mouth corner (image left/right).
    ``embedding`` is the recognizer's raw (not normalised) vector when a
    recognizer ran, else ``None``. ``landmarks_68`` are the 68 iBUG points when a
    landmarker ran (or ``fan_68_5``'s estimate); ``age`` (a ``(low, high)`` range in
    years, high exclusive) and ``gender`` (``female``/``male``) when the classifier ran.
    """

    box: np.ndarray  # float32 [x1, y1, x2, y2]
    score: float
    landmarks: np.ndarray  # float32 (5, 2)
    embedding: np.ndarray | None = field(default=None, repr=False)
    landmarks_68: np.ndarray | None = field(default=None, repr=False)
    age: tuple[int, int] | None = None
    gender: str | None = None

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))

    @property
    def normed_embedding(self) -> np.ndarray | None:
        if self.embedding is None:
            return None
        return self.embedding / (np.linalg.norm(self.embedding) + 1e-12)

    def to_dict(self) -> dict:
        record: dict = {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
        }
        if self.age is not None:
            record["age"] = [int(self.age[0]), int(self.age[1])]
        if self.gender is not None:
            record["gender"] = self.gender
        return record
