"""Temporal filters for a track's geometry and colour statistics.

``OneEuroFilter`` (Casiez, Roussel & Vogel, CHI 2012) is an exponential low-pass
filter whose cut-off rises with the signal's speed: a still face is smoothed hard
(jitter removed) while a moving one is followed with little lag. Time is counted in
**frames** everywhere here (cut-offs in cycles per frame), so the behaviour in frames
does not depend on the video's frame rate and "≤ 1 frame of lag" is a property of the
parameters alone.

Speeds are divided by a ``scale`` the caller passes (the face's box diagonal), so a
big face and a small one with the same relative jitter and motion are filtered alike.
For a point set (landmarks; a box as its two corners) a point's speed is the set's
common motion (averaged over the points, so landmark noise hardly reads as motion)
plus part of the point's own motion relative to the set (an opening mouth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.errors import InvalidOptions

# The speed, in face diagonals per frame, at which the filter must follow with at most
# ``FAST_LAG`` frames of steady-state lag: 1.5 % of the face size per frame is a slow
# head turn or a gentle pan (3 px/frame on a 200 px face); everything faster lags less.
REFERENCE_SPEED = 0.015
FAST_LAG = 0.75  # frames; a one-pole filter with smoothing factor a lags (1 − a) / a frames
# Cut-off of the speed estimate (cycles per frame): low enough that landmark noise
# does not read as motion, high enough to notice a start of motion within ~5 frames.
SPEED_CUTOFF = 0.03
# A point's speed is the set's common motion (the mean of the points' speeds: noise
# averages out over the points) plus this share of its own motion relative to the set
# (an opening mouth; per point, so noisier and weighted down).
SHAPE_WEIGHT = 0.5


def cutoff_for_alpha(alpha: float) -> float:
    """The cut-off (cycles/frame) whose one-frame smoothing factor is ``alpha``."""
    alpha = min(max(alpha, 1e-6), 1.0 - 1e-9)
    return alpha / (2.0 * math.pi * (1.0 - alpha))


def smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """One Euro's α = 1 / (1 + τ/dt) with τ = 1 / (2π·cutoff)."""
    tau = 1.0 / (2.0 * np.pi * np.maximum(cutoff, 1e-12))
    return 1.0 / (1.0 + tau / dt)


@dataclass(frozen=True)
class OneEuroParams:
    """The filter's three parameters (cut-offs in cycles per frame, beta per face
    diagonal per frame). ``enabled`` False makes the filter the identity."""

    min_cutoff: float
    beta: float
    d_cutoff: float = SPEED_CUTOFF
    enabled: bool = True

    @classmethod
    def from_strength(cls, strength: float) -> OneEuroParams:
        """Parameters for the ``temporal_smoothing`` knob ``strength`` s in [0, 0.95].

        At rest the filter is the old blend ``s·previous + (1 − s)·current`` (its
        smoothing factor is 1 − s), so the knob keeps its meaning; s = 0 is off. Beta is
        the same for every strength: the speed term alone raises the cut-off, at
        ``REFERENCE_SPEED``, to a smoothing factor of 1 / (1 + ``FAST_LAG``), i.e. a
        steady-state lag of at most ``FAST_LAG`` frames. Faster faces lag less (in
        frames), slower ones at most 1 / (2π·beta) face diagonals, and a weaker setting
        never lags more than a stronger one.
        """
        if not 0.0 <= strength < 1.0:
            raise InvalidOptions(f"temporal_smoothing must be in [0, 0.95], got {strength}")
        if strength == 0.0:
            return cls(min_cutoff=0.0, beta=0.0, enabled=False)
        min_cutoff = cutoff_for_alpha(1.0 - strength)
        beta = cutoff_for_alpha(1.0 / (1.0 + FAST_LAG)) / REFERENCE_SPEED
        return cls(min_cutoff=min_cutoff, beta=beta)


class OneEuroFilter:
    """One Euro filter over numpy arrays of points (shape (N, D); a box is (2, 2)).

    ``filter(value, t, scale)``: ``t`` in frames (need not be consecutive), ``scale``
    the length that speeds are measured in (the face diagonal; 1 for raw units). Each
    point gets its own cut-off from the set's common speed plus ``SHAPE_WEIGHT`` of its
    own speed relative to the set, so a moving head is followed with a speed estimate
    averaged over all points, and an opening mouth still raises its points' cut-off.
    Any other shape is filtered element-wise with each element's own speed.
    """

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float = SPEED_CUTOFF) -> None:
        self.params = OneEuroParams(min_cutoff, beta, d_cutoff)
        self.reset()

    @classmethod
    def from_params(cls, params: OneEuroParams) -> OneEuroFilter | None:
        """A filter for ``params``, or None when they are disabled (identity)."""
        if not params.enabled:
            return None
        return cls(params.min_cutoff, params.beta, params.d_cutoff)

    def reset(self) -> None:
        self._value: np.ndarray | None = None
        self._raw: np.ndarray | None = None
        self._speed: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, value: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        return self.filter(value, t, scale)

    def filter(self, value: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        if self._value is None or self._t is None or self._value.shape != value.shape:
            self._value = value.copy()
            self._raw = value.copy()
            self._speed = np.zeros_like(value)
            self._t = float(t)
            return value.copy()
        dt = float(t) - self._t
        if dt <= 0:
            return self._value.copy()
        params = self.params
        derivative = (value - self._raw) / dt
        a_d = smoothing_factor(params.d_cutoff, dt)
        self._speed = self._speed + a_d * (derivative - self._speed)
        speed = _point_speed(self._speed) / max(float(scale), 1e-9)
        cutoff = params.min_cutoff + params.beta * speed
        alpha = smoothing_factor(cutoff, dt)
        self._value = self._value + alpha * (value - self._value)
        self._raw = value.copy()
        self._t = float(t)
        return self._value.copy()

    def shift(self, offset: np.ndarray) -> None:
        """Move the filter's state by ``offset`` (a jump the caller knows about, e.g. a
        track re-identified elsewhere), so it does not slide across the frame."""
        if self._value is not None:
            self._value = self._value + offset
            self._raw = self._raw + offset


def _point_speed(velocity: np.ndarray) -> np.ndarray:
    """Each point's speed for its cut-off (see ``OneEuroFilter``), broadcast back over
    its coordinates; element-wise magnitudes for anything but an (N, D) point set."""
    if velocity.ndim != 2:
        return np.abs(velocity)
    common = velocity.mean(axis=0, keepdims=True)
    own = np.linalg.norm(velocity - common, axis=-1, keepdims=True)
    speed = np.linalg.norm(common, axis=-1, keepdims=True) + SHAPE_WEIGHT * own
    return np.broadcast_to(speed, velocity.shape)


class ExponentialSmoother:
    """Exponential moving average of a statistic (e.g. a track's per-channel colour
    means and deviations): ``value ← value + alpha·(new − value)``; alpha 1 is off."""

    def __init__(self, alpha: float) -> None:
        if not 0.0 < alpha <= 1.0:
            raise InvalidOptions(f"exponential smoothing alpha must be in (0, 1], got {alpha}")
        self.alpha = float(alpha)
        self._value: np.ndarray | None = None

    @classmethod
    def from_strength(cls, strength: float) -> ExponentialSmoother:
        """The smoother for the ``temporal_smoothing`` knob: alpha = 1 − strength."""
        return cls(1.0 - min(max(strength, 0.0), 0.95))

    @property
    def value(self) -> np.ndarray | None:
        return None if self._value is None else self._value.copy()

    def reset(self) -> None:
        self._value = None

    def __call__(self, value: np.ndarray) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        if self._value is None or self._value.shape != value.shape:
            self._value = value.copy()
        else:
            self._value = self._value + self.alpha * (value - self._value)
        return self._value.copy()
