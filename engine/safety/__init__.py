"""Responsible use: the content gate that every input passes before a job is accepted."""

from engine.safety.gate import (
    DEFAULT_THRESHOLD,
    MAX_FLAGGED_FRAME_FRACTION,
    ContentGate,
    GateReport,
    sample_video_frames,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "MAX_FLAGGED_FRAME_FRACTION",
    "ContentGate",
    "GateReport",
    "sample_video_frames",
]
