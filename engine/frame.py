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
    """

    def process(self, frame: np.ndarray) -> FrameResult: ...

    def fork(self) -> FrameProcessor: ...
