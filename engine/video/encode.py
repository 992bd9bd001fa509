"""Encoding one segment of processed frames into its own file.

Each segment is a complete, independently decodable file that starts with a
keyframe (a fresh encoder per segment), written under a temporary name and
renamed only once the encoder has been flushed, so a file with the final name
is always a finished segment. Timestamps inside a segment count from its first
frame; the join puts them back on the source's timeline.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation

from engine.options import OutputOptions
from engine.video.formats import ENCODERS, SEGMENT_MUXER, encoder_settings

# Encoder threads per segment. Fixed (not "auto") so that a segment encodes to
# the same bytes on any machine, which lets a resumed or distributed job
# produce exactly the frames of an uninterrupted one.
ENCODER_THREADS = 4
ENCODER_THREAD_TYPE = "FRAME"
FF_QP2LAMBDA = 118
PIXEL_FORMAT = "yuv420p"
# BGR → 4:2:0 with exact rounding and the chroma filtered from every pixel (swscale's
# default same-size path rounds coarsely and point-samples the chroma). Measured on
# the t1.jpg pans re-encoded at crf 18: 1.5–1.8 levels mean from the source instead of
# 2.2–2.3 (every encoded frame gains; frames a keep trim copies through most visibly).
# BITEXACT: the same bytes whichever SIMD code the machine has.
TO_YUV = (
    Interpolation.AREA
    | Interpolation.ACCURATE_RND
    | Interpolation.FULL_CHR_H_INT
    | Interpolation.FULL_CHR_H_INP
    | Interpolation.BITEXACT
)


def even_size(width: int, height: int) -> tuple[int, int]:
    """4:2:0 video needs even dimensions; odd ones are padded by one pixel."""
    return width + width % 2, height + height % 2


def pad_even(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    if width % 2 == 0 and height % 2 == 0:
        return image
    return cv2.copyMakeBorder(image, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)


def partial_name(path: Path) -> Path:
    """The temporary name a file is written under before it is complete."""
    return path.with_name(f".{path.stem}.part{os.getpid()}{path.suffix}")


class SegmentWriter:
    """Encodes frames (BGR arrays with source timestamps) into one segment file."""

    def __init__(
        self,
        path: Path,
        codec: str,
        options: OutputOptions,
        width: int,
        height: int,
        time_base: Fraction,
        rate: Fraction,
        origin_pts: int,
    ) -> None:
        self.path = path
        self.temp = partial_name(path)
        self.origin_pts = origin_pts
        self.frames = 0
        self.width, self.height = even_size(width, height)
        self.time_base = time_base
        self._container = av.open(str(self.temp), mode="w", format=SEGMENT_MUXER)
        try:
            stream = self._container.add_stream(ENCODERS[codec], rate=_usable_rate(rate))
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, PIXEL_FORMAT
            stream.codec_context.time_base = time_base
            stream.codec_context.thread_count = ENCODER_THREADS
            stream.codec_context.thread_type = ENCODER_THREAD_TYPE
            private, quantiser = encoder_settings(codec, options)
            stream.options = private
            if quantiser is not None:
                stream.codec_context.qscale = True
                stream.codec_context.global_quality = quantiser * FF_QP2LAMBDA
            self._stream = stream
        except BaseException:
            self.abort()
            raise

    def write(self, image: np.ndarray, pts: int, duration: int) -> None:
        """Encode one upright BGR frame shown from ``pts`` for ``duration`` (source time base)."""
        image = pad_even(image)
        if image.shape[1] != self.width or image.shape[0] != self.height:
            raise ValueError(
                f"frame size {image.shape[1]}x{image.shape[0]} differs from the "
                f"segment's {self.width}x{self.height}"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame = frame.reformat(format=PIXEL_FORMAT, interpolation=TO_YUV)
        frame.pts = pts - self.origin_pts
        frame.time_base = self.time_base
        frame.duration = max(1, duration)
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> Path:
        """Flush the encoder and move the finished file to its final name."""
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
        except BaseException:
            self.abort()
            raise
        os.replace(self.temp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop and delete the partial file."""
        with contextlib.suppress(Exception):
            self._container.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


def _usable_rate(rate: Fraction) -> Fraction:
    """Encoders want a plain frame rate; a variable one is described by its average."""
    rate = Fraction(rate)
    if rate <= 0:
        return Fraction(25)
    return rate.limit_denominator(1001)
