"""Progress reports and cancellation, the two ways long engine work talks back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

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
