"""Progress of a video job: frames done of total, fps, ETA, and a small preview now and then.

Several segment workers report into one meter, so it is thread-safe. Reports
are throttled (a UI does not need one per frame) and a preview is attached at
most every ``preview_every`` seconds.
"""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from engine.progress import Progress, ProgressCallback

PREVIEW_WIDTH = 256
PREVIEW_EVERY = 2.0  # seconds between preview frames
REPORT_EVERY = 0.25  # seconds between progress reports


def preview_image(image: np.ndarray, width: int = PREVIEW_WIDTH) -> np.ndarray:
    """A small BGR copy of a frame (at most ``width`` pixels wide)."""
    height, current = image.shape[:2]
    if current <= width:
        return image.copy()
    new_height = max(1, round(height * width / current))
    return cv2.resize(image, (width, new_height), interpolation=cv2.INTER_AREA)


class ProgressMeter:
    """Counts frames from any thread and sends throttled ``Progress`` reports.

    ``already`` frames (finished before a resume) count towards ``done`` but not
    towards the speed, so the ETA reflects the work actually left.
    """

    def __init__(
        self,
        total: int | None,
        callback: ProgressCallback | None,
        already: int = 0,
        preview_every: float = PREVIEW_EVERY,
        report_every: float = REPORT_EVERY,
    ) -> None:
        self.total = total
        self.callback = callback
        self.done = already
        self.already = already
        self.preview_every = preview_every
        self.report_every = report_every
        self.started = time.monotonic()
        self._last_report = 0.0
        self._last_preview = -preview_every  # the first frame carries a preview
        self._stage = "decode"
        self._lock = threading.Lock()

    def stage(
        self,
        name: str,
        message: str | None = None,
        done: int | None = None,
        total: int | None = None,
    ) -> None:
        """Announce a stage change (always reported)."""
        with self._lock:
            self._stage = name
            report = self._report(preview=None, message=message)
            if done is not None:
                report.done = done
            if total is not None:
                report.total = total
        self._send(report)

    def frame(self, image: np.ndarray, faces: int = 0) -> None:
        """One more frame finished; report if enough time has passed."""
        now = time.monotonic()
        with self._lock:
            self.done += 1
            if self._stage != "swap":
                self._stage = "swap"
            due = now - self._last_report >= self.report_every or self.done == self.total
            if not due:
                return
            self._last_report = now
            preview = None
            if now - self._last_preview >= self.preview_every:
                self._last_preview = now
                preview = preview_image(image)
            report = self._report(preview=preview)
        self._send(report)

    @property
    def fps(self) -> float | None:
        elapsed = time.monotonic() - self.started
        fresh = self.done - self.already
        return fresh / elapsed if elapsed > 0 and fresh > 0 else None

    def _report(self, preview: np.ndarray | None, message: str | None = None) -> Progress:
        fps = self.fps
        eta = max(0.0, (self.total - self.done) / fps) if fps and self.total else None
        return Progress(
            stage=self._stage,
            done=self.done,
            total=self.total,
            fps=fps,
            eta_seconds=eta,
            preview=preview,
            message=message,
        )

    def _send(self, report: Progress) -> None:
        if self.callback is not None:
            self.callback(report)
