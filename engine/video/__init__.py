"""Video in, video out: streaming decode → face pipeline → encode with PyAV.

``swap_video`` is the one call for a whole job. The segment API
(``plan_segments`` / ``process_segment`` / ``join_segments``) lets a scheduler
spread one video over several workers or machines and resume after a crash.
See engine/video/README.md for the design (segments, timestamps, rotation, audio).
"""

from engine.video.decode import read_frame
from engine.video.formats import OutputFormat, output_format
from engine.video.join import join_segments
from engine.video.pipeline import VideoResult, swap_video
from engine.video.probe import Timeline, VideoInfo, is_video, probe
from engine.video.progressmeter import ProgressMeter, preview_image
from engine.video.segments import (
    Segment,
    SegmentManifest,
    output_range,
    plan_segments,
    trim_range,
)
from engine.video.stream import SegmentOutcome, process_segment, run_segments

__all__ = [
    "OutputFormat",
    "ProgressMeter",
    "Segment",
    "SegmentManifest",
    "SegmentOutcome",
    "Timeline",
    "VideoInfo",
    "VideoResult",
    "is_video",
    "join_segments",
    "output_format",
    "output_range",
    "plan_segments",
    "preview_image",
    "probe",
    "process_segment",
    "read_frame",
    "run_segments",
    "swap_video",
    "trim_range",
]
