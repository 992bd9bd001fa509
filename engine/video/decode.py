"""Decoding a range of frames, upright, identified by their presentation timestamps.

Frames are picked by timestamp, not by counting from wherever a seek landed,
so a segment decoded on its own (after a seek) gets exactly the frames that
the same segment gets in one continuous decode. That is what makes segments
frame-exact when they are joined.

Rotation: frames are turned upright here, before the face pipeline sees them
(detectors expect upright faces), and the output is written upright without a
rotation tag. Mirroring flags in the display matrix are not applied.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from engine.errors import InvalidInput
from engine.progress import CancelToken
from engine.video.probe import error_reason, open_input, video_stream

_ROTATE = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


@dataclass
class DecodedFrame:
    pts: int
    image: np.ndarray  # BGR uint8, upright


def upright(image: np.ndarray, rotation: float | int) -> np.ndarray:
    """Turn a decoded picture by its display rotation (counter-clockwise degrees)."""
    turns = int(round((rotation or 0) / 90.0)) % 4
    return cv2.rotate(image, _ROTATE[turns]) if turns else image


def frame_image(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as an upright BGR array."""
    image = frame.to_ndarray(format="bgr24")
    try:
        rotation = frame.rotation
    except (AttributeError, ValueError):
        rotation = 0
    return upright(image, rotation)


def decode_range(
    path: str | Path,
    start_pts: int,
    end_pts: int,
    cancel: CancelToken | None = None,
    first_pts: int | None = None,
) -> Iterator[DecodedFrame]:
    """Yield the frames with ``start_pts <= pts < end_pts``, in presentation order.

    ``first_pts`` is the timestamp of the video's first frame: a range that
    starts there is decoded from the beginning without seeking. After a seek,
    the first frame must be exactly the one at ``start_pts``; if the seek
    landed too late (an imprecise index, leading pictures that cannot be
    decoded after a seek), the range is decoded again from the beginning.
    """
    path = Path(path)
    if first_pts is None or start_pts > first_pts:
        incomplete = yield from _decode(path, start_pts, end_pts, cancel, seek=True)
        if not incomplete:
            return
    yield from _decode(path, start_pts, end_pts, cancel, seek=False)


def _decode(
    path: Path, start_pts: int, end_pts: int, cancel: CancelToken | None, seek: bool
) -> Generator[DecodedFrame, None, bool]:
    """Decode one range; returns True when a seek missed the range start (nothing yielded)."""
    with open_input(path) as container:
        stream = video_stream(container, path.name)
        stream.thread_type = "AUTO"
        for other in container.streams:
            if other.index != stream.index:
                other.discard = av.stream.Discard.all
        if seek:
            try:
                container.seek(start_pts, stream=stream, backward=True, any_frame=False)
            except (av.error.FFmpegError, OSError):
                return True
        started = False
        for frame in _frames(container, stream, path.name):
            if cancel is not None:
                cancel.raise_if_canceled()
            pts = frame.pts
            if pts is None:
                raise InvalidInput(f"{path.name}: a decoded frame carries no timestamp")
            if pts < start_pts:
                continue
            if not started:
                if seek and pts != start_pts:
                    return True
                started = True
            if pts >= end_pts:
                break
            yield DecodedFrame(pts=pts, image=frame_image(frame))
        return seek and not started


def _frames(container, stream, name: str) -> Iterator[av.VideoFrame]:
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as exc:
        raise InvalidInput(
            f"{name}: the video cannot be decoded, it is damaged ({error_reason(exc)})"
        ) from None


def read_frame(path: str | Path, index: int = 0) -> np.ndarray:
    """Frame ``index`` (presentation order) of a video, upright BGR — for previews and references."""
    from engine.video.probe import probe

    info = probe(path)
    if not 0 <= index < info.frames:
        raise InvalidInput(
            f"{Path(path).name}: frame {index} is out of range (0..{info.frames - 1})"
        )
    timeline = info.timeline
    for frame in decode_range(
        path, timeline.pts_at(index), timeline.pts_at(index + 1), first_pts=timeline.pts_at(0)
    ):
        return frame.image
    raise InvalidInput(f"{Path(path).name}: frame {index} could not be decoded")
