"""Test media made on the fly with PyAV from the photos insightface ships.

Videos are moving crops (a slow pan) of ``t1.jpg`` — six real faces — with a
sine-tone audio track, so the video tests need no downloaded clips. Helpers
also make the bad inputs the engine must refuse: audio-only files, zero-length
videos, truncated files, and an unknown codec.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from tests.assets import T1

ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "mpeg4": "mpeg4"}
FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
AUDIO_ENCODERS = {"aac": "aac", "opus": "libopus", "pcm_s16le": "pcm_s16le", "mp3": "libmp3lame"}
STAMP_BITS = 10  # frame-index stamp: 10 black/white blocks, enough for 1023 frames
STAMP_BLOCK = 12

_t1_cache: dict[str, np.ndarray] = {}


def t1() -> np.ndarray:
    if "t1" not in _t1_cache:
        _t1_cache["t1"] = cv2.imread(str(T1), cv2.IMREAD_COLOR)
    return _t1_cache["t1"]


def scene(index: int, total: int, size: tuple[int, int], faces: bool = True) -> np.ndarray:
    """Frame ``index`` of a pan across t1.jpg (faces) or across its table (no faces)."""
    width, height = size
    photo = t1()
    photo_h, photo_w = photo.shape[:2]
    if faces:
        # A 640×480 window over the heads, panning left to right.
        win_w, win_h, top = 640, 480, 40
    else:
        # The bottom of the photo: table, chips and cards, no heads.
        win_h = 250
        win_w = int(win_h * width / height)
        top = photo_h - win_h
    travel = photo_w - win_w
    left = int(round(travel * index / max(1, total - 1)))
    crop = photo[top : top + win_h, left : left + win_w]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def stamp(image: np.ndarray, index: int) -> np.ndarray:
    """Write ``index`` as a row of black/white blocks in the top-left corner."""
    image = image.copy()
    for bit in range(STAMP_BITS):
        value = 255 if (index >> bit) & 1 else 0
        x = bit * STAMP_BLOCK
        image[0:STAMP_BLOCK, x : x + STAMP_BLOCK] = value
    return image


def read_stamp(image: np.ndarray) -> int:
    """The index written by :func:`stamp` (robust to lossy compression)."""
    index = 0
    for bit in range(STAMP_BITS):
        x = bit * STAMP_BLOCK
        block = image[3 : STAMP_BLOCK - 3, x + 3 : x + STAMP_BLOCK - 3]
        if block.mean() > 127:
            index |= 1 << bit
    return index


def frame_times(seconds: float, fps: int, vfr: bool) -> list[Fraction]:
    """Presentation times of every frame; with ``vfr`` the gaps alternate 1 and 2 ticks."""
    count = max(1, int(round(seconds * fps)))
    if not vfr:
        return [Fraction(i, fps) for i in range(count)]
    times, tick, current = [], Fraction(1, 2 * fps), Fraction(0)
    for i in range(count):
        times.append(current)
        current += tick * (1 if i % 3 else 4)
    return times


def make_video(
    path: str | Path,
    seconds: float = 2.0,
    fps: int = 25,
    size: tuple[int, int] = (320, 240),
    audio: bool = True,
    codec: str = "h264",
    faces: bool = True,
    *,
    vfr: bool = False,
    rotation: int = 0,
    stamp_index: bool = False,
    audio_codec: str = "aac",
    gop: int | None = None,
    faststart: bool = False,
) -> Path:
    """Write a short test video and return its path.

    ``rotation`` stores the frames sideways with a display matrix that turns
    them upright again (like a phone video), so a correct reader sees the same
    upright pictures as for ``rotation=0``. ``stamp_index`` writes each frame's
    index as blocks in the top-left corner of the upright picture, so tests can
    check order and completeness after lossy coding.
    """
    path = Path(path)
    width, height = size
    times = frame_times(seconds, fps, vfr)
    time_base = Fraction(1, 2 * fps * 6)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=FORMATS.get(path.suffix.lower()), options=options) as out:
        stream = out.add_stream(ENCODERS[codec], rate=fps)
        coded_w, coded_h = (height, width) if rotation % 180 else (width, height)
        stream.width, stream.height, stream.pix_fmt = coded_w, coded_h, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.codec_context.thread_count = 1
        if codec == "mpeg4":
            stream.codec_context.qscale = True
            stream.codec_context.global_quality = 3 * 118
        elif codec == "vp9":
            stream.options = {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        elif codec == "hevc":
            stream.options = {"crf": "24", "preset": "ultrafast", "x265-params": "log-level=error"}
        else:
            stream.options = {"crf": "20", "preset": "veryfast"}
        if gop:
            stream.codec_context.gop_size = gop
        if rotation:
            stream.set_display_rotation(rotation)
        audio_stream = None
        if audio:
            audio_stream = out.add_stream(AUDIO_ENCODERS[audio_codec], rate=48000)
            audio_stream.layout = "mono"
        for index, when in enumerate(times):
            image = scene(index, len(times), size, faces)
            if stamp_index:
                image = stamp(image, index)
            image = _store_rotated(image, rotation)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = int(when / time_base)
            frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if audio_stream is not None:
            duration = float(times[-1] + Fraction(1, fps)) if vfr else seconds
            _write_tone(out, audio_stream, duration)
    return path


def _store_rotated(image: np.ndarray, rotation: int) -> np.ndarray:
    """The coded picture whose display (rotated ``rotation``° counter-clockwise) is ``image``."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, -turns)) if turns else image


def _write_tone(out, stream, seconds: float, hz: float = 440.0) -> None:
    rate = 48000
    total = int(round(seconds * rate))
    chunk = 1024
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        t = (np.arange(start, start + n) / rate).astype(np.float64)
        samples = (0.3 * np.sin(2 * math.pi * hz * t)).astype(np.float32)[None, :]
        if stream.codec_context.name == "pcm_s16le":
            frame = av.AudioFrame.from_ndarray(
                (samples * 32767).astype(np.int16), format="s16", layout="mono"
            )
        else:
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def make_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """An audio-only file (AAC in MP4 unless the suffix says otherwise)."""
    path = Path(path)
    with av.open(str(path), "w", format=FORMATS.get(path.suffix.lower())) as out:
        stream = out.add_stream("aac", rate=48000)
        stream.layout = "mono"
        _write_tone(out, stream, seconds)
    return path


def make_zero_frames(path: str | Path) -> Path:
    """A real AVI container with a video stream that holds no frames."""
    path = Path(path)
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
        out.mux(stream.encode(None))
    return path


def make_truncated(path: str | Path, keep: float = 0.5, faststart: bool = False) -> Path:
    """A video cut off after ``keep`` of its bytes, as an interrupted upload leaves it."""
    path = Path(path)
    full = path.with_name(path.stem + ".full" + path.suffix)
    make_video(full, seconds=2.0, audio=True, faststart=faststart)
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    full.unlink()
    return path


def make_unsupported_codec(path: str | Path) -> Path:
    """An MP4 whose video sample entry names a codec no decoder knows (fourcc 'zzzz')."""
    path = Path(path)
    make_video(path, seconds=0.5, audio=False)
    data = bytearray(path.read_bytes())
    stsd = data.find(b"stsd")
    entry = data.find(b"avc1", stsd)
    if stsd < 0 or entry < 0:
        raise RuntimeError("no avc1 sample entry found")
    data[entry : entry + 4] = b"zzzz"
    path.write_bytes(bytes(data))
    return path


def make_animated_gif(
    path: str | Path, frames: int = 6, size: tuple[int, int] = (160, 120)
) -> Path:
    """A small animated GIF of the pan, 10 frames per second."""
    from PIL import Image

    path = Path(path)
    images = [
        Image.fromarray(cv2.cvtColor(scene(i, frames, size), cv2.COLOR_BGR2RGB))
        for i in range(frames)
    ]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


def encode_frames(frames: Sequence[np.ndarray], path: str | Path, fps: int) -> Path:
    """BGR frames as H.264 at ``fps``, no audio, as a camera or an editor would hand
    them over (crf 18, yuv420p)."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return Path(path)


def decode_frames(path: str | Path) -> list[np.ndarray]:
    """Every frame of a video, upright, as BGR arrays (small test videos only)."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            turns = (round(frame.rotation / 90)) % 4 if frame.rotation else 0
            frames.append(np.ascontiguousarray(np.rot90(image, turns)) if turns else image)
    return frames


def frame_pts(path: str | Path) -> tuple[list[int], Fraction]:
    """Presentation timestamps of every video frame and the stream's time base."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.size and p.pts is not None)
        return pts, stream.time_base


def stream_durations(path: str | Path) -> dict[str, float]:
    """Duration in seconds of the first video and audio streams (absent keys: no stream).

    From the stream header (MP4) or the DURATION tag (Matroska/WebM), else from
    the packets' end times.
    """
    result: dict[str, float] = {}
    for kind in ("video", "audio"):
        with av.open(str(path)) as container:
            streams = getattr(container.streams, kind)
            if not streams:
                continue
            stream = streams[0]
            tag = (stream.metadata or {}).get("DURATION")
            if stream.duration is not None:
                result[kind] = float(stream.duration * stream.time_base)
            elif tag:
                hours, minutes, seconds = tag.split(":")
                result[kind] = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            else:
                ends = [
                    float((p.pts + (p.duration or 0)) * p.time_base)
                    for p in container.demux(stream)
                    if p.size and p.pts is not None
                ]
                result[kind] = max(ends) if ends else 0.0
    return result


def write_junk(path: str | Path, size: int = 4096) -> Path:
    """Bytes that are no media at all (a text file renamed to .mp4, say)."""
    path = Path(path)
    rng = np.random.default_rng(0)
    header = b"this is not a video, just some text and noise\n"
    path.write_bytes(header + rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def pcm_wav(path: str | Path, seconds: float = 1.0) -> Path:
    """A plain WAV file (audio only) written without PyAV."""
    path = Path(path)
    rate = 16000
    samples = 0.3 * np.sin(2 * math.pi * 440 * np.arange(int(rate * seconds)) / rate) * 32767
    data = samples.astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    path.write_bytes(header + b"data" + struct.pack("<I", len(data)) + data)
    return path
