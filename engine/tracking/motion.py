"""A face box's motion model: a constant-velocity Kalman filter (as in SORT/ByteTrack).

The state is the box centre, aspect ratio (w/h) and height with their velocities;
noise scales with the box height, so big and small faces are predicted alike. The
tracker predicts each track's box for the next frame, matches detections against the
prediction, and carries a face on frames where no detection ran.
"""

from __future__ import annotations

import numpy as np

# ByteTrack's noise weights (relative to the box height, per frame).
_POSITION_WEIGHT = 1.0 / 20.0
_VELOCITY_WEIGHT = 1.0 / 160.0


def box_to_xyah(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)
    return np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0, w / h, h], dtype=np.float64)


def xyah_to_box(state: np.ndarray) -> np.ndarray:
    cx, cy, a, h = (float(v) for v in state[:4])
    w = a * h
    return np.array([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], dtype=np.float32)


class BoxKalman:
    """Constant-velocity Kalman filter over [cx, cy, a, h] and their velocities."""

    def __init__(self, box: np.ndarray) -> None:
        measurement = box_to_xyah(box)
        self.mean = np.concatenate([measurement, np.zeros(4)])
        h = measurement[3]
        std = np.array(
            [
                2 * _POSITION_WEIGHT * h,
                2 * _POSITION_WEIGHT * h,
                1e-2,
                2 * _POSITION_WEIGHT * h,
                10 * _VELOCITY_WEIGHT * h,
                10 * _VELOCITY_WEIGHT * h,
                1e-5,
                10 * _VELOCITY_WEIGHT * h,
            ]
        )
        self.covariance = np.diag(std**2)

    @property
    def box(self) -> np.ndarray:
        """The current (predicted or updated) box, x1 y1 x2 y2."""
        return xyah_to_box(self.mean)

    @property
    def velocity(self) -> np.ndarray:
        return self.mean[4:].copy()

    def predict(self, dt: float = 1.0) -> np.ndarray:
        """Advance the state by ``dt`` frames; returns the predicted box."""
        if dt <= 0:
            return self.box
        h = self.mean[3]
        q = np.array(
            [_POSITION_WEIGHT * h] * 2
            + [1e-2, _POSITION_WEIGHT * h]
            + [_VELOCITY_WEIGHT * h] * 2
            + [1e-5, _VELOCITY_WEIGHT * h]
        )
        transition = np.eye(8)
        transition[:4, 4:] = dt * np.eye(4)
        self.mean = transition @ self.mean
        self.covariance = transition @ self.covariance @ transition.T + np.diag(dt * q**2)
        self.mean[3] = max(self.mean[3], 1.0)
        return self.box

    def update(self, box: np.ndarray) -> None:
        """Correct the state with a detected box."""
        measurement = box_to_xyah(box)
        h = self.mean[3]
        r = np.array([_POSITION_WEIGHT * h, _POSITION_WEIGHT * h, 1e-1, _POSITION_WEIGHT * h])
        projection = np.hstack([np.eye(4), np.zeros((4, 4))])
        innovation_cov = projection @ self.covariance @ projection.T + np.diag(r**2)
        gain = np.linalg.solve(innovation_cov, projection @ self.covariance).T
        self.mean = self.mean + gain @ (measurement - projection @ self.mean)
        self.covariance = self.covariance - gain @ innovation_cov @ gain.T


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of two sets of x1 y1 x2 y2 boxes."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
