"""Watermark every frame a video pipeline emits, by wrapping its frame processor.

Wrapping keeps the video driver unaware of provenance: frames are marked after
the face swap and before the encoder sees them, which is the only lossless
place for the mark (see ``apply.py`` for the order of the layers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from engine.errors import InvalidInput
from engine.frame import FrameProcessor, FrameResult, fork_at, process_at
from engine.provenance.apply import ProvenanceStamp, watermark_frame

log = logging.getLogger(__name__)


@dataclass
class WatermarkingProcessor:
    """A ``FrameProcessor`` that marks each processed frame with the job's payload.

    It forwards the frame indices (``fork_at``, ``process_at``) to the processor it
    wraps, which falls back to ``fork``/``process`` where it has none."""

    inner: FrameProcessor
    stamp: ProvenanceStamp

    def process(self, frame: np.ndarray) -> FrameResult:
        return self._mark(self.inner.process(frame))

    def process_at(self, frame: np.ndarray, frame_index: int) -> FrameResult:
        return self._mark(process_at(self.inner, frame, frame_index))

    def _mark(self, result: FrameResult) -> FrameResult:
        try:
            image = watermark_frame(result.image, self.stamp)
        except InvalidInput as exc:  # a frame too small to carry the mark
            log.warning("frame not watermarked: %s", exc.message)
            image = result.image
        return FrameResult(image=image, faces_swapped=result.faces_swapped)

    def fork(self) -> WatermarkingProcessor:
        return WatermarkingProcessor(self.inner.fork(), self.stamp)

    def fork_at(self, frame_index: int) -> WatermarkingProcessor:
        return WatermarkingProcessor(fork_at(self.inner, frame_index), self.stamp)

    def fingerprint(self) -> str:
        from engine.video.segments import describe_processor

        return f"{describe_processor(self.inner)}+watermark:{self.stamp.payload.hex}"
