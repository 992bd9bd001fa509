"""Conversions between the 68-point iBUG set and what the rest of the engine uses.

``five_from_68`` gives the five alignment points every warp takes (MODELS-2.md §7.1);
``face_angle`` gives the upright angle the 68-point landmarkers rotate their crop by
(FaceFusion's ``estimate_face_angle``, from the jaw line's end points).
"""

from __future__ import annotations

import numpy as np

from engine.errors import InvalidInput

# iBUG indices (0-based): eyes as seen in the image, nose tip, mouth corners.
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
NOSE_TIP = 30
MOUTH_LEFT = 48
MOUTH_RIGHT = 54
JAW_LEFT = 0
JAW_RIGHT = 16

ANGLES = (0, 90, 180, 270)


def _points68(points68: np.ndarray) -> np.ndarray:
    points = np.asarray(points68, dtype=np.float64)
    if points.shape != (68, 2) or not np.all(np.isfinite(points)):
        raise InvalidInput(f"expected 68 finite (x, y) landmarks, got shape {points.shape}")
    return points


def five_from_68(points68: np.ndarray) -> np.ndarray:
    """The five alignment points (left eye, right eye, nose, mouth corners) as float32 (5, 2).

    Eyes are the means of their six contour points; the rest are single points.
    """
    points = _points68(points68)
    five = np.stack(
        [
            points[LEFT_EYE].mean(axis=0),
            points[RIGHT_EYE].mean(axis=0),
            points[NOSE_TIP],
            points[MOUTH_LEFT],
            points[MOUTH_RIGHT],
        ]
    )
    return five.astype(np.float32)


def face_angle(points68: np.ndarray) -> int:
    """The face's rotation in the image, rounded to 0/90/180/270 degrees.

    The angle of the jaw line from point 0 to point 16 (image y down, so 90 means the
    face is turned a quarter clockwise); rotating the crop by it makes the face upright.
    """
    points = _points68(points68)
    dx, dy = points[JAW_RIGHT] - points[JAW_LEFT]
    theta = float(np.degrees(np.arctan2(dy, dx))) % 360.0
    nearest = min((0, 90, 180, 270, 360), key=lambda angle: abs(angle - theta))
    return nearest % 360
