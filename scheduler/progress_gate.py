"""The throttle both worker kinds (local processes, Celery tasks) put on progress reports.

A report passes when its stage changed, when a preview is due, or when the
progress interval has passed; previews are JPEG-encoded at most once per
preview interval. Thread-safe: a video job reports from several threads.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from engine.progress import Progress


def jpeg(image: np.ndarray, quality: int = 70) -> bytes | None:
    """A small JPEG of a preview frame, or None if it cannot be encoded."""
    try:
        import cv2

        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except Exception:
        return None
    return data.tobytes() if ok else None


class ProgressGate:
    def __init__(
        self, progress_interval: float, preview_interval: float, preview_quality: int = 70
    ) -> None:
        self.progress_interval = progress_interval
        self.preview_interval = preview_interval
        self.preview_quality = preview_quality
        self.last_sent = 0.0
        self.last_preview = 0.0
        self.stage: str | None = None
        self._lock = threading.Lock()

    def admit(self, report: Progress) -> tuple[bool, bytes | None]:
        """Whether to send ``report`` now, and the JPEG preview to send with it."""
        now = time.monotonic()
        with self._lock:
            preview = None
            if report.preview is not None and now - self.last_preview >= self.preview_interval:
                preview = jpeg(report.preview, self.preview_quality)
                self.last_preview = now
            new_stage = report.stage != self.stage
            if not new_stage and preview is None and now - self.last_sent < self.progress_interval:
                return False, None
            self.stage = report.stage
            self.last_sent = now
            return True, preview
