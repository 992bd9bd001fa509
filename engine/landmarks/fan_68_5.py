"""fan_68_5: FaceFusion's regressor from the detector's five points to 68 (MODELS-2.md §7).

It works in the unit space of the ffhq_512 template (a crop of size 1): the five
points are moved there by the similarity that best maps them onto the template, the
model answers 68 points in the same space, and the inverse similarity brings them
back. Its estimate is the 68-point set when no landmarker runs, and the source of the
face angle a landmarker turns its crop by.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engine.align import TEMPLATES, transform_points, umeyama
from engine.errors import InvalidInput, ModelUnavailable
from engine.families.io import bind_session
from engine.families.table import FAN_68_5_IO
from engine.models.registry import ModelSpec
from engine.runtime import SessionCache

FAMILY = "fan_68_5"
TEMPLATE = "ffhq_512"
POINTS = 68


def unit_matrix(points5: np.ndarray) -> np.ndarray:
    """2×3 similarity frame → ffhq_512 unit space (template × 1) for five points."""
    points = np.asarray(points5, dtype=np.float64)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise InvalidInput(f"fan_68_5 needs five finite (x, y) points, got shape {points.shape}")
    return umeyama(points, TEMPLATES[TEMPLATE].astype(np.float64))


class Fan68From5:
    """An estimate of the 68 points from the detector's five."""

    def __init__(self, sessions: SessionCache, spec: ModelSpec, path: str | Path) -> None:
        if spec.family != FAMILY:
            raise ModelUnavailable(
                f"model {spec.name} has family {spec.family!r}, expected {FAMILY}"
            )
        self.name = spec.name
        self._session = sessions.get(Path(path))
        io = bind_session(spec.name, spec.family, FAN_68_5_IO, self._session)
        self._input = io.inputs[0].name
        # The file decides: FaceFusion feeds float64 by NumPy promotion, ports float32.
        self.dtype = np.dtype(io.inputs[0].dtype)

    def estimate(self, points5: np.ndarray) -> np.ndarray:
        """68 (x, y) frame points as float32 (68, 2)."""
        matrix = unit_matrix(points5)
        unit = transform_points(points5, matrix).reshape(1, 5, 2).astype(self.dtype)
        output = np.asarray(self._session.run(None, {self._input: unit})[0], dtype=np.float64)
        if output.size != POINTS * 2:
            raise ModelUnavailable(
                f"model {self.name}: output 0 has shape {list(output.shape)}, expected "
                f"[1, {POINTS}, 2]"
            )
        points = transform_points(output.reshape(POINTS, 2), cv2.invertAffineTransform(matrix))
        return points.astype(np.float32)
