"""GIF output: the encoded segments, decoded in order, written as an animated GIF.

FFmpeg's GIF muxer is not used: the segments (MP4, the job's ``video_codec`` at
its ``crf``) are decoded and each frame is quantised to its own 256-colour
palette (maximum coverage, Floyd–Steinberg dithered: see ``palette_frame``) and
written by Pillow. Timing comes from
the source's timeline, not from a frame rate: each frame is shown for the time
between its timestamp and the next one, rounded to the GIF's 10 ms clock on a
running total (so the whole stays exact and a frame is off by less than 10 ms;
a GIF source's own delays, multiples of 10 ms, survive exactly). The loop
count is the source GIF's (a source without one plays once), infinite for
other sources.

Frames are written whole (``disposal=2``, no delta cropping) with a local
palette each. Two consecutive frames that are identical after quantisation
become one frame shown for both durations (Pillow's writer merges them), so
what is seen, and for how long, is unchanged. Pillow holds the palette frames
(one byte per pixel) until the file is written; GIFs are small.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image

from engine.errors import EngineError
from engine.progress import CancelToken, ProgressCallback
from engine.video.encode import partial_name
from engine.video.probe import Timeline, VideoInfo
from engine.video.progressmeter import ProgressMeter

GIF_TICKS_PER_SECOND = 100  # GIF delays count hundredths of a second
GIF_COLOURS = 256


def frame_delays(timeline: Timeline, first: int, end: int) -> list[int]:
    """Display time of frames ``first … end-1`` in GIF ticks (10 ms), at least one tick.

    Rounded on the running clock, so rounding errors never add up."""
    stamps = [timeline.pts_at(index) for index in range(first, end + 1)]
    base = timeline.time_base * GIF_TICKS_PER_SECOND
    edges = [round((pts - stamps[0]) * base) for pts in stamps]
    return [max(1, after - before) for before, after in zip(edges, edges[1:], strict=False)]


def source_loop(target: Path, info: VideoInfo) -> int | None:
    """The loop count to write: a GIF source's own (None: it plays once), else 0 (forever)."""
    if info.container != "gif":
        return 0
    try:
        with Image.open(target) as image:
            loop = image.info.get("loop")
    except (OSError, ValueError, Image.DecompressionBombError):
        return 0
    return int(loop) if loop is not None else None


def unpadded(coded: int, source: int) -> int:
    """The size before the 4:2:0 padding: a whole multiple of the source's (frame enhancers)."""
    if source > 1 and coded % source and (coded - 1) % source == 0:
        return coded - 1
    return coded


def palette_frame(rgb: np.ndarray) -> Image.Image:
    """One frame on its own 256-colour palette (maximum coverage), Floyd–Steinberg dithered.

    Measured on watermarked frames (t1.jpg pans, 320x240): of the undithered
    median-cut, octree and maximum-coverage palettes, half or none of the frames
    still carried a readable provenance watermark; dithered onto the
    maximum-coverage palette, all did (confidence 0.58–0.75 against 0.61–0.79
    before quantisation), with the lowest error after a 5x5 blur (what the eye
    sees: 0.56 levels against 1.1 for median cut without dithering).
    """
    image = Image.fromarray(np.ascontiguousarray(rgb))
    palette = image.quantize(GIF_COLOURS, method=Image.Quantize.MAXCOVERAGE)
    return image.quantize(GIF_COLOURS, palette=palette, dither=Image.Dither.FLOYDSTEINBERG)


def write_gif(
    target: Path,
    segment_paths: Sequence[Path],
    output: Path,
    info: VideoInfo,
    first: int,
    end: int,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """Write the frames of the segment files (in order) as ``output``, an animated GIF.

    The segments must hold exactly the frames ``first … end-1`` of the timeline.
    The output appears under its name only when complete."""
    delays = frame_delays(info.timeline, first, end)
    meter = ProgressMeter(end - first, progress)
    meter.stage("mux", message="writing the GIF", done=0)
    frames = _frames([Path(p) for p in segment_paths], info, len(delays), meter, cancel)
    temp = partial_name(output)
    options: dict = {"save_all": True, "duration": [d * 10 for d in delays], "disposal": 2}
    loop = source_loop(target, info)
    if loop is not None:
        options["loop"] = loop
    try:
        with contextlib.closing(frames):
            head = next(frames)
            head.save(temp, format="GIF", append_images=frames, optimize=False, **options)
        os.replace(temp, output)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    meter.stage("mux", done=end - first)
    return output


def _frames(
    paths: list[Path],
    info: VideoInfo,
    expected: int,
    meter: ProgressMeter,
    cancel: CancelToken | None,
) -> Iterator[Image.Image]:
    count = 0
    for path in paths:
        if not path.is_file():
            raise EngineError(f"segment file {path.name} is missing")
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                if cancel is not None:
                    cancel.raise_if_canceled()
                count += 1
                if count > expected:
                    continue  # counted for the error below
                rgb = frame.to_ndarray(format="rgb24")
                width, height = (
                    unpadded(rgb.shape[1], info.width),
                    unpadded(rgb.shape[0], info.height),
                )
                yield palette_frame(rgb[:height, :width])
                if count % 50 == 0:
                    meter.stage("mux", done=count)
    if count != expected:
        raise EngineError(
            f"the segments hold {count} frames but the video range has {expected}; "
            "they were made from a different plan or are incomplete"
        )
