"""The throttle both worker kinds (local processes, Celery tasks) put on progress reports.

A report passes when its stage changed or when the progress interval has
passed; a preview rides on the next report that passes, JPEG-encoded at most
once per preview interval. Thread-safe: a video job reports from several threads.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from engine.progress import Progress

# Workers send progress 4 times a second per job; the event bus lets through up to
# 5 a second. The margin matters: were the two rates equal, a report held back once
# (behind a stage change, say) would put every later report a turn behind.
EVENT_RATE = 5.0
PACE_MARGIN = 1.25


def worker_interval(event_rate: float = EVENT_RATE) -> float:
    """Seconds between a worker's progress reports for a bus that passes ``event_rate``."""
    return PACE_MARGIN / event_rate if event_rate > 0 else 0.0


PROGRESS_INTERVAL = worker_interval()


def jpeg(image: np.ndarray, quality: int = 70) -> bytes | None:
    """A small JPEG of a preview frame, or None if it cannot be encoded."""
    try:
        import cv2

        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except Exception:
        return None
    return data.tobytes() if ok else None


class ProgressGate:
    """Admits at most one report per progress interval (plus every stage change).

    A preview that falls due between admitted reports is kept and rides on the
    next admitted one, so previews never add reports of their own.
    """

    def __init__(
        self, progress_interval: float, preview_interval: float, preview_quality: int = 70
    ) -> None:
        self.progress_interval = progress_interval
        self.preview_interval = preview_interval
        self.preview_quality = preview_quality
        self.last_sent = 0.0
        self.last_preview = 0.0
        self.stage: str | None = None
        self._pending_preview: np.ndarray | None = None
        self._lock = threading.Lock()

    def admit(self, report: Progress) -> tuple[bool, bytes | None]:
        """Whether to send ``report`` now, and the JPEG preview to send with it."""
        now = time.monotonic()
        with self._lock:
            if report.preview is not None and now - self.last_preview >= self.preview_interval:
                self._pending_preview = report.preview  # the newest frame wins
            new_stage = report.stage != self.stage
            if not new_stage and now - self.last_sent < self.progress_interval:
                return False, None
            preview = None
            if self._pending_preview is not None:
                preview = jpeg(self._pending_preview, self.preview_quality)
                self._pending_preview = None
                self.last_preview = now
            self.stage = report.stage
            self.last_sent = now
            return True, preview
