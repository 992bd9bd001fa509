"""Progress reports and cancellation, the two ways long engine work talks back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from engine.errors import Canceled


@dataclass
class Progress:
    """One progress report. ``preview`` is a small BGR frame, sent now and then."""

    stage: str
    done: int = 0
    total: int | None = None
    fps: float | None = None
    eta_seconds: float | None = None
    preview: np.ndarray | None = None
    message: str | None = None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class JobProgress:
    """How far a job is, as every layer from the worker to the browser passes it on.

    One record instead of four loose fields copied at each hop; ``of`` is the one
    conversion from an engine report. The preview is not part of it: it is bytes
    (or a frame) and rides on some reports only.
    """

    fraction: float | None = None
    stage: str | None = None
    eta_seconds: float | None = None
    fps: float | None = None

    @classmethod
    def of(cls, report: Progress) -> JobProgress:
        """The record of an engine report."""
        return cls(report.fraction, report.stage, report.eta_seconds, report.fps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for the wire between a worker and the server (pipe, pub/sub, queue)."""
        return {
            "fraction": self.fraction,
            "stage": self.stage,
            "eta_seconds": self.eta_seconds,
            "fps": self.fps,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobProgress:
        """The inverse of ``to_dict``; unknown keys are ignored, so a newer sender's
        additions do not break an older reader."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def ignore_progress(_: Progress) -> None:
    """Default callback for callers that do not watch progress."""


class CancelToken:
    """A flag that long work checks (every frame for video) to stop early.

    Thread-safe; a token may be shared by the threads of one video pipeline.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def canceled(self) -> bool:
        return self._event.is_set()

    def raise_if_canceled(self) -> None:
        if self._event.is_set():
            raise Canceled("the job was canceled")


class RateMeter:
    """Frames per second and ETA over a run, for progress reports."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.started = time.monotonic()

    def fps(self, done: int) -> float | None:
        elapsed = time.monotonic() - self.started
        return done / elapsed if elapsed > 0 and done else None

    def eta(self, done: int) -> float | None:
        rate = self.fps(done)
        if not rate or self.total is None:
            return None
        return max(0.0, (self.total - done) / rate)
