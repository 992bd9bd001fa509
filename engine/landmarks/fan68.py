"""The 68-point landmarkers 2DFAN4 and PeppaPig-Wutz (MODELS-2.md §7).

Both take the detector box, not the five points: the box is centred in a 256² crop
with its longer side 195 px, the crop is turned upright by the face's angle, dark
crops get a contrast boost, and the model answers 68 (x, y, score) rows in 64-px
heatmap units. Points go back to the frame through the inverse of the one crop
matrix, so a point and the pixel the model saw there always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine.align import transform_points, warp_crop
from engine.detectors import as_bgr
from engine.errors import InvalidInput, InvalidOptions, ModelUnavailable
from engine.families.io import bind_session
from engine.families.table import LANDMARKER_68_IO
from engine.landmarks.convert import ANGLES
from engine.models.registry import ModelSpec
from engine.runtime import SessionCache

FAMILIES = ("2dfan4", "peppa_wutz")
POINTS = 68
CROP_SIZE = 256
HEATMAP_SIZE = 64
BOX_SIDE = 195.0  # the box's longer side in the crop
DARK_L = 30.0  # mean Lab lightness below which CLAHE runs
CLAHE_CLIP = 2.0
# The raw score that counts as full confidence (mapped linearly to 1, clamped).
FULL_SCORE = {"2dfan4": 0.9, "peppa_wutz": 0.95}
MANY_MARGIN = 0.2  # "many": 2dfan4 wins unless peppa scores this much more


def _box(box: np.ndarray) -> np.ndarray:
    values = np.asarray(box, dtype=np.float64).reshape(-1)
    if values.shape != (4,) or not np.all(np.isfinite(values)):
        raise InvalidInput(f"a face box is four finite numbers x1, y1, x2, y2, got {box!r}")
    return values


def crop_matrix(box: np.ndarray, angle: int = 0) -> np.ndarray:
    """2×3 matrix frame → model input: the box centred in 256² with its longer side 195
    px, then rotated by ``angle`` (0/90/180/270) about the crop's centre."""
    if angle not in ANGLES:
        raise InvalidOptions(f"landmarker face angle must be one of {ANGLES}, got {angle!r}")
    x1, y1, x2, y2 = _box(box)
    scale = BOX_SIDE / max(x2 - x1, y2 - y1, 1.0)
    shift = (CROP_SIZE - np.array([x1 + x2, y1 + y2]) * scale) / 2.0
    crop = np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]], [0, 0, 1]])
    # Turned about (128, 128), where the box centre sits, so a quarter-turned face gives
    # the same crop as the upright one. Quarter turns are exact; one warp does both.
    centre = CROP_SIZE / 2.0
    turn = np.round(cv2.getRotationMatrix2D((centre, centre), float(angle), 1.0)[:, :2])
    rotate = np.eye(3)
    rotate[:2, :2] = turn
    rotate[:2, 2] = centre - turn @ np.array([centre, centre])
    return (rotate @ crop)[:2]


def boost_contrast(crop: np.ndarray) -> np.ndarray:
    """CLAHE on the lightness of a dark crop (mean L < 30), as FaceFusion does it: the
    conversion uses OpenCV's RGB↔Lab codes on BGR data, and always round-trips."""
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2Lab)
    if float(np.mean(lab[:, :, 0])) < DARK_L:
        lab[:, :, 0] = cv2.createCLAHE(clipLimit=CLAHE_CLIP).apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)


class Landmarker68:
    """68 iBUG points of a detected face, with a confidence in [0, 1]."""

    def __init__(self, sessions: SessionCache, spec: ModelSpec, path: str | Path) -> None:
        if spec.family not in FAMILIES:
            raise ModelUnavailable(
                f"model {spec.name} has family {spec.family!r}; a 68-point landmarker is "
                f"one of {', '.join(FAMILIES)}"
            )
        self.name = spec.name
        self.family = spec.family
        self._session = sessions.get(Path(path))
        io = bind_session(spec.name, spec.family, LANDMARKER_68_IO, self._session)
        self._input = io.inputs[0].name
        self._dtype = np.dtype(io.inputs[0].dtype)

    def crop(self, frame: np.ndarray, box: np.ndarray, angle: int = 0) -> np.ndarray:
        """The BGR uint8 256² crop the model sees (upright, contrast-boosted when dark)."""
        return self._crop(frame, box, angle)[0]

    def _crop(
        self, frame: np.ndarray, box: np.ndarray, angle: int
    ) -> tuple[np.ndarray, np.ndarray]:
        matrix = crop_matrix(box, angle)
        return boost_contrast(warp_crop(as_bgr(frame), matrix, CROP_SIZE)), matrix

    def detect(
        self, frame: np.ndarray, box: np.ndarray, angle: int = 0
    ) -> tuple[np.ndarray, float]:
        """(68 (x, y) frame points as float32 (68, 2), score in [0, 1]) for one face box.

        ``angle``: the face's rotation (``convert.face_angle``); the crop is turned
        upright by it before the model runs.
        """
        crop, matrix = self._crop(frame, box, angle)
        blob = (crop.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)).astype(
            self._dtype
        )
        outputs = self._session.run(None, {self._input: blob})
        rows = np.asarray(outputs[0], dtype=np.float64)
        if rows.size != POINTS * 3:
            raise ModelUnavailable(
                f"model {self.name}: output 0 has shape {list(rows.shape)}, expected "
                f"{POINTS} (x, y, score) rows"
            )
        rows = rows.reshape(POINTS, 3)
        in_crop = rows[:, :2] * (CROP_SIZE / HEATMAP_SIZE)
        points = transform_points(in_crop, cv2.invertAffineTransform(matrix))
        return points.astype(np.float32), self._score(rows, outputs)

    def _score(self, rows: np.ndarray, outputs: list) -> float:
        raw = float(np.mean(rows[:, 2]))
        if self.family == "2dfan4" and len(outputs) > 1:
            heatmaps = np.asarray(outputs[1], dtype=np.float64)
            if heatmaps.size > POINTS and heatmaps.size % POINTS == 0:
                raw = float(np.mean(heatmaps.reshape(POINTS, -1).max(axis=1)))
        return float(np.interp(raw, [0.0, FULL_SCORE[self.family]], [0.0, 1.0]))


@dataclass(frozen=True)
class BestOfLandmarkers:
    """FaceFusion's ``many``: both landmarkers run; 2DFAN4's answer is kept unless
    PeppaPig's score beats it by 0.2 or more."""

    fan: Landmarker68
    peppa: Landmarker68

    def detect(
        self, frame: np.ndarray, box: np.ndarray, angle: int = 0
    ) -> tuple[np.ndarray, float]:
        fan = self.fan.detect(frame, box, angle)
        peppa = self.peppa.detect(frame, box, angle)
        return fan if fan[1] > peppa[1] - MANY_MARGIN else peppa
