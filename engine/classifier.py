"""FairFace age and gender of a face (MODELS-2.md §11), for the face selection filters.

The crop is the arcface_112_v2 alignment at 224² from the face's five points, fed as
RGB /255 with ImageNet mean and std. FaceFusion's file answers three integer class
ids (race, gender, age; the argmax is inside the graph). Exports that answer logits
instead (a float tensor with a trailing class axis) are accepted and argmax'd here.

Age classes are FairFace's bins 0–2, 3–9, 10–19, …, 60–69, 70+ years. They are kept
as ``(low, high)`` with ``high`` exclusive, so the bins tile 0–100 without gaps:
(0, 3), (3, 10), …, (60, 70), (70, 101). FaceFusion writes the same bins as Python
``range(0, 2)``, ``range(3, 9)`` … ``range(70, 100)``, which drops each bin's last
year (a 9-year-old's bin would not contain 9); the bins, not that slip, are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from engine.align import warp_face
from engine.detectors import as_bgr
from engine.errors import InvalidInput, ModelUnavailable
from engine.faces import Face
from engine.families.io import bind_session
from engine.families.table import CLASSIFIER_IO
from engine.models.registry import ModelSpec
from engine.runtime import SessionCache

FAMILY = "fairface"
TEMPLATE = "arcface_112_v2"
SIZE = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # ImageNet, RGB
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
OUTPUTS = ("race_id", "gender_id", "age_id")  # by position
CLASSES = {"race_id": 7, "gender_id": 2, "age_id": 9}
GENDERS = ("male", "female")  # gender id 1 is female, any other male
AGE_RANGES: tuple[tuple[int, int], ...] = (
    (0, 3),
    (3, 10),
    (10, 20),
    (20, 30),
    (30, 40),
    (40, 50),
    (50, 60),
    (60, 70),
    (70, 101),
)


def gender_of(gender_id: int) -> str:
    """FaceFusion's mapping: 1 is female, anything else male."""
    return "female" if gender_id == 1 else "male"


def age_range_of(age_id: int) -> tuple[int, int]:
    """The (low, high-exclusive) years of an age class id 0–8."""
    if not 0 <= age_id < len(AGE_RANGES):
        raise ModelUnavailable(f"model fairface: age_id {age_id} is not a class id 0–8")
    return AGE_RANGES[age_id]


class FairFace:
    """Age range and gender of detected faces."""

    def __init__(self, sessions: SessionCache, spec: ModelSpec, path: str | Path) -> None:
        if spec.family != FAMILY:
            raise ModelUnavailable(
                f"model {spec.name} has family {spec.family!r}, expected {FAMILY}"
            )
        self.name = spec.name
        self._session = sessions.get(Path(path))
        io = bind_session(spec.name, spec.family, CLASSIFIER_IO, self._session)
        self._input = io.inputs[0].name
        self._dtype = np.dtype(io.inputs[0].dtype)

    def crop(self, frame: np.ndarray, face: Face) -> np.ndarray:
        """The aligned BGR 224² crop the model sees."""
        landmarks = np.asarray(face.landmarks, dtype=np.float32)
        if landmarks.shape != (5, 2) or not np.all(np.isfinite(landmarks)):
            raise InvalidInput(
                f"a face needs five finite (x, y) landmarks, got shape {landmarks.shape}"
            )
        crop, _ = warp_face(as_bgr(frame), landmarks, TEMPLATE, SIZE)
        return crop

    def classify(self, frame: np.ndarray, face: Face) -> tuple[tuple[int, int], str]:
        """(age range (low, high-exclusive) in years, ``female`` or ``male``) of one face."""
        rgb = cv2.cvtColor(self.crop(frame, face), cv2.COLOR_BGR2RGB).astype(np.float32)
        blob = ((rgb / np.float32(255.0) - MEAN) / STD).transpose(2, 0, 1)[None]
        outputs = self._session.run(None, {self._input: blob.astype(self._dtype)})
        ids = {
            name: self._class_id(name, value) for name, value in zip(OUTPUTS, outputs, strict=False)
        }
        return age_range_of(ids["age_id"]), gender_of(ids["gender_id"])

    def annotate(self, frame: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        """New faces with ``age`` and ``gender`` set; the inputs are left as they are."""
        annotated = []
        for face in faces:
            age, gender = self.classify(frame, face)
            annotated.append(replace(face, age=age, gender=gender))
        return annotated

    def _class_id(self, name: str, value: np.ndarray) -> int:
        """A class id from an integer id tensor, or the argmax of a logits tensor."""
        array = np.asarray(value)
        classes = CLASSES[name]
        if np.issubdtype(array.dtype, np.integer) or array.size == 1:
            if array.size != 1:
                raise ModelUnavailable(
                    f"model {self.name}: output {name} has shape {list(array.shape)}, "
                    "expected one class id"
                )
            class_id = int(np.rint(array.reshape(-1)[0]))
        elif array.shape[-1] == classes and array.size == classes:
            class_id = int(np.argmax(array.reshape(-1)))
        else:
            raise ModelUnavailable(
                f"model {self.name}: output {name} has shape {list(array.shape)}, expected "
                f"a class id or {classes} logits"
            )
        if not 0 <= class_id < classes:
            raise ModelUnavailable(
                f"model {self.name}: output {name} is {class_id}, not a class id 0–{classes - 1}"
            )
        return class_id
