"""The per-frame contract between the face pipeline and the image/video drivers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class FrameResult:
    """A processed frame and how many faces were swapped in it."""

    image: np.ndarray
    faces_swapped: int


class FrameProcessor(Protocol):
    """Turns one BGR frame into its swapped version.

    A processor may keep temporal state (smoothed detections of the previous
    frame), so one processor serves one stream in order; ``fork`` returns a new
    processor sharing the warm models but with fresh state, for a parallel
    segment or a second stream.

    Two optional methods tell a processor where it is in the whole video (the
    timeline's frame numbering, 0 = the video's first frame, whatever the trim),
    for decisions made once for the whole video (tracks) and looked up per frame:

    - ``fork_at(frame_index) -> FrameProcessor``: used instead of ``fork()`` by the
      video driver; the first frame the fork gets is frame ``frame_index``, and
      the frames after it follow consecutively until the next fork.
    - ``process_at(frame, frame_index) -> FrameResult``: used instead of
      ``process(frame)``, with the frame's own index.

    Frames outside the active (trim) range of a ``trim_mode=keep`` job are never
    given to the processor; a fork happens at the first frame that is.
    :func:`fork_at` and :func:`process_at` below call whichever a processor has.
    """

    def process(self, frame: np.ndarray) -> FrameResult: ...

    def fork(self) -> FrameProcessor: ...


class IndexedFrameProcessor(FrameProcessor, Protocol):
    """A processor that wants the absolute frame indices (both optional methods)."""

    def fork_at(self, frame_index: int) -> FrameProcessor: ...

    def process_at(self, frame: np.ndarray, frame_index: int) -> FrameResult: ...


def fork_at(processor: FrameProcessor, frame_index: int) -> FrameProcessor:
    """``processor.fork_at(frame_index)`` where defined, else ``processor.fork()``."""
    method = getattr(processor, "fork_at", None)
    return method(frame_index) if callable(method) else processor.fork()


def process_at(processor: FrameProcessor, frame: np.ndarray, frame_index: int) -> FrameResult:
    """``processor.process_at(frame, frame_index)`` where defined, else ``process(frame)``."""
    method = getattr(processor, "process_at", None)
    return method(frame, frame_index) if callable(method) else processor.process(frame)
