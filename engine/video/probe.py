"""What a video file is: streams, size, frame rate, rotation and every frame's timestamp.

Uploaded files are hostile until proven otherwise. ``probe`` opens the file
with FFmpeg (through PyAV), demuxes every video packet once — this counts the
frames exactly and reveals truncation — and decodes the first frame, so that a
file that cannot be processed fails here with a message that names the
problem instead of halfway through a job.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engine.errors import InvalidInput

# Demuxers that FFmpeg uses for still images; a file opened with one is not a video.
_IMAGE_DEMUXERS = ("image2", "_pipe", "webp", "png", "bmp", "tiff")
_SNIFF_BYTES = 64


@dataclass(frozen=True)
class Timeline:
    """Presentation timestamps of every frame, sorted, in the video stream's time base.

    ``end`` is the time at which the last frame stops being shown, so that the
    duration of frame i is ``pts[i + 1] - pts[i]`` (or ``end - pts[-1]``). This
    is what makes variable frame rate survive the segment round trip: the
    output reuses these timestamps instead of assuming a constant rate.
    """

    pts: np.ndarray
    end: int
    time_base: Fraction

    def __len__(self) -> int:
        return len(self.pts)

    def seconds(self, index: int) -> float:
        """Time of frame ``index`` (or of the end, for ``index == len``) after the first frame."""
        value = self.end if index >= len(self.pts) else int(self.pts[index])
        return float((value - int(self.pts[0])) * self.time_base)

    def pts_at(self, index: int) -> int:
        return self.end if index >= len(self.pts) else int(self.pts[index])


@dataclass(frozen=True)
class VideoInfo:
    """Facts about a video file. ``width``/``height`` are as displayed (after rotation)."""

    path: Path
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    frames: int
    duration: float
    rotation: int
    codec: str
    has_audio: bool
    audio_codec: str | None
    container: str
    timeline: Timeline = field(repr=False, compare=False)

    @property
    def coded_size(self) -> tuple[int, int]:
        """(width, height) of the pictures as stored, before rotation."""
        if self.rotation % 180:
            return self.height, self.width
        return self.width, self.height


def sniff_container(head: bytes) -> str | None:
    """The container named by a file's first bytes (a hint; FFmpeg has the last word)."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"FLV"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[:1] == b"\x47" and len(head) > 188 and head[188:189] == b"\x47":
        return "mpegts"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg"
    return None


def _still_image(head: bytes) -> str | None:
    from engine.imageio import sniff_image_format

    kind = sniff_image_format(head)
    return kind if kind and kind != "gif" else None


def _read_head(path: Path) -> bytes:
    if not path.exists():
        raise InvalidInput(f"{path.name}: file not found")
    if not path.is_file():
        raise InvalidInput(f"{path.name}: not a regular file")
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES * 4)
    if not head:
        raise InvalidInput(f"{path.name}: the file is empty (0 bytes), a zero-length video")
    return head


def open_input(path: str | Path) -> av.container.InputContainer:
    """Open a media file for reading; every failure becomes ``InvalidInput`` naming the file."""
    path = Path(path)
    head = _read_head(path)
    image = _still_image(head)
    if image:
        raise InvalidInput(f"{path.name}: this is a still image ({image}), not a video")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as exc:
        kind = sniff_container(head)
        if kind == "mp4":
            raise InvalidInput(
                f"{path.name}: the MP4/MOV file is truncated or damaged "
                f"(its index cannot be read: {error_reason(exc)})"
            ) from None
        if kind is not None:
            raise InvalidInput(
                f"{path.name}: the {kind} file is truncated or damaged ({error_reason(exc)})"
            ) from None
        raise InvalidInput(
            f"{path.name}: not a video file (no known container format was recognised)"
        ) from None
    except (OSError, AttributeError, ValueError) as exc:
        raise InvalidInput(f"{path.name}: the file cannot be opened as a video ({exc})") from None


def error_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[0].strip() or type(exc).__name__


def video_stream(container: av.container.InputContainer, name: str) -> av.video.VideoStream:
    """The main video stream; cover art (an attached picture) does not count."""
    streams = [s for s in container.streams.video if not _is_attached_picture(s)]
    if not streams:
        if container.streams.audio:
            raise InvalidInput(f"{name}: the file has no video stream (it is audio only)")
        raise InvalidInput(
            f"{name}: the file holds no video or audio streams (an empty, zero-length video)"
        )
    stream = streams[0]
    if stream.codec_context is None:
        raise InvalidInput(
            f"{name}: the video codec is not supported (this FFmpeg build cannot identify "
            "or decode it)"
        )
    return stream


def _is_attached_picture(stream) -> bool:
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def first_audio_stream(container: av.container.InputContainer):
    """The first decodable audio stream, or None."""
    for stream in container.streams.audio:
        if stream.codec_context is not None:
            return stream
    return None


def read_timeline(container: av.container.InputContainer, stream, name: str) -> Timeline:
    """Demux every packet of ``stream`` (no decoding) to list the frames' timestamps.

    Raises ``InvalidInput`` when the packets stop before the header says they
    should (a truncated upload) or the file is unreadable halfway.
    """
    for other in container.streams:
        if other.index != stream.index:
            other.discard = av.stream.Discard.all
    stamps: list[int] = []
    last_duration = 0
    damaged = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:
                continue
            when = packet.pts if packet.pts is not None else packet.dts
            if when is None:
                raise InvalidInput(f"{name}: the video's frames carry no timestamps")
            stamps.append(when)
            last_duration = packet.duration or 0
    except av.error.FFmpegError as exc:
        damaged = exc
    finally:
        for other in container.streams:
            other.discard = av.stream.Discard.default
    if damaged is not None:
        raise InvalidInput(
            f"{name}: the video is truncated or damaged after {len(stamps)} frames "
            f"({error_reason(damaged)})"
        )
    if not stamps:
        raise InvalidInput(f"{name}: the video has no frames (a zero-length video)")
    pts = np.array(sorted(stamps), dtype=np.int64)
    time_base = stream.time_base or Fraction(1, 1000)
    if last_duration <= 0:
        last_duration = _typical_step(pts, stream, time_base)
    end = int(pts[-1]) + int(last_duration)
    _check_complete(name, stream, pts, end, time_base)
    return Timeline(pts=pts, end=end, time_base=time_base)


def _typical_step(pts: np.ndarray, stream, time_base: Fraction) -> int:
    if len(pts) > 1:
        steps = np.diff(pts)
        steps = steps[steps > 0]
        if len(steps):
            return int(np.median(steps))
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    return max(1, int(round(1 / (rate * time_base))))


def _check_complete(name: str, stream, pts: np.ndarray, end: int, time_base: Fraction) -> None:
    declared = stream.frames or 0
    if declared and len(pts) < declared:
        raise InvalidInput(
            f"{name}: the video is truncated: only {len(pts)} of its {declared} frames are present"
        )
    expected = _declared_seconds(stream)
    if expected:
        present = float((end - int(pts[0])) * time_base)
        step = float(_typical_step(pts, stream, time_base) * time_base)
        if present + max(3 * step, 0.02 * expected) < expected:
            raise InvalidInput(
                f"{name}: the video is truncated: {present:.2f} s of its "
                f"{expected:.2f} s are present"
            )


def _declared_seconds(stream) -> float | None:
    """The video stream's own duration from its header (not the container's, which may be audio)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if tag:
        with contextlib.suppress(ValueError):
            hours, minutes, seconds = tag.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def probe(path: str | Path) -> VideoInfo:
    """Open, validate and describe a video; raise ``InvalidInput`` naming what is wrong."""
    path = Path(path)
    name = path.name
    with open_input(path) as container:
        if container.format.name and any(k in container.format.name for k in _IMAGE_DEMUXERS):
            raise InvalidInput(f"{name}: this is a still image, not a video")
        stream = video_stream(container, name)
        codec = stream.codec_context.name
        audio = first_audio_stream(container)
        audio_codec = audio.codec_context.name if audio is not None else None
        container_name = container.format.name
        timeline = read_timeline(container, stream, name)
        rate = frame_rate(stream, timeline, timeline.seconds(len(timeline)))
    first = _first_frame(path)
    rotation = _rotation(first)
    coded_w, coded_h = first.width, first.height
    width, height = (coded_h, coded_w) if rotation % 180 else (coded_w, coded_h)
    return VideoInfo(
        path=path,
        width=width,
        height=height,
        fps=rate,
        time_base=timeline.time_base,
        frames=len(timeline),
        duration=timeline.seconds(len(timeline)),
        rotation=rotation,
        codec=codec,
        has_audio=audio is not None,
        audio_codec=audio_codec,
        container=container_name,
        timeline=timeline,
    )


def _first_frame(path: Path) -> av.VideoFrame:
    """Decode the first frame: proves the codec works on this file."""
    with open_input(path) as container:
        stream = video_stream(container, path.name)
        try:
            for frame in container.decode(stream):
                return frame
        except av.error.FFmpegError as exc:
            raise InvalidInput(
                f"{path.name}: the video cannot be decoded "
                f"({stream.codec_context.name}: {error_reason(exc)})"
            ) from None
    raise InvalidInput(f"{path.name}: no frame of the video could be decoded (damaged or empty)")


def _rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise display rotation in multiples of 90°, as stored in the display matrix."""
    try:
        degrees = frame.rotation or 0
    except (AttributeError, ValueError):
        return 0
    return int(round(degrees / 90.0)) * 90 % 360


def frame_rate(stream, timeline: Timeline | None = None, duration: float = 0.0) -> Fraction:
    """The stream's (average) frame rate; for variable frame rate, frames per second on average."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if rate:
        return Fraction(rate)
    if timeline is not None and duration > 0:
        return Fraction(len(timeline) / duration).limit_denominator(1001)
    return Fraction(25)


def is_video(path: str | Path) -> bool:
    """True when the file's content is a video FFmpeg can read (not its name).

    An animated GIF counts as a video; a still image (GIF with one frame
    included) does not. Never raises.
    """
    path = Path(path)
    try:
        head = _read_head(path)
    except InvalidInput:
        return False
    if _still_image(head):
        return False
    try:
        with av.open(str(path), mode="r") as container:
            if any(k in (container.format.name or "") for k in _IMAGE_DEMUXERS):
                return False
            stream = video_stream(container, path.name)
            if container.format.name == "gif":
                count = 0
                for packet in container.demux(stream):
                    count += packet.size > 0
                    if count > 1:
                        return True
                return False
            return True
    except (InvalidInput, av.error.FFmpegError, OSError, AttributeError, ValueError):
        return False
