"""Output containers and codecs: which combinations exist, and the encoder settings for each.

Everything here is checked before any frame is decoded, so that a wrong output
name or an impossible codec fails in milliseconds with a message that says
what would work instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidOptions
from engine.options import OutputOptions

# Container name (as in OutputOptions.container) → FFmpeg muxer and the suffixes that mean it.
# A GIF is not muxed by FFmpeg but written by ``gif.py`` from the encoded segments.
CONTAINER_MUXERS = {"mp4": "mp4", "mov": "mov", "mkv": "matroska", "webm": "webm", "gif": "gif"}
CONTAINER_SUFFIXES = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "mkv",
    ".webm": "webm",
    ".gif": "gif",
}

# Which of our video codecs each container can hold. For a GIF, the codec is that of
# the intermediate segment files the GIF is made from: any of the four.
CONTAINER_CODECS = {
    "mp4": ("h264", "hevc", "vp9", "mpeg4"),
    "mov": ("h264", "hevc", "mpeg4"),
    "mkv": ("h264", "hevc", "vp9", "mpeg4"),
    "webm": ("vp9",),
    "gif": ("h264", "hevc", "vp9", "mpeg4"),
}

# Our codec name → FFmpeg encoder, and the decoder-side codec name a stream reports.
ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "mpeg4": "mpeg4"}

# Audio: codecs copied as they are into each container; anything else is re-encoded.
AUDIO_COPY = {
    "mp4": ("aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"),
    "mov": ("aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"),
    "mkv": None,  # anything FFmpeg's Matroska muxer accepts
    "webm": ("opus", "vorbis"),
    "gif": (),  # a GIF has no sound
}
AUDIO_REENCODE = {"mp4": "aac", "mov": "aac", "mkv": "aac", "webm": "libopus"}

# Intermediate segment files: MP4 holds all four codecs and keeps exact timestamps.
SEGMENT_SUFFIX = ".mp4"
SEGMENT_MUXER = "mp4"

_VP9_SPEED = {
    "ultrafast": 8,
    "superfast": 7,
    "veryfast": 6,
    "faster": 5,
    "fast": 4,
    "medium": 3,
    "slow": 2,
    "slower": 1,
}


@dataclass(frozen=True)
class OutputFormat:
    """The resolved container and codec of one output file.

    For a GIF (``container == "gif"``), ``codec`` is the codec of the segment
    files the GIF is made from (``OutputOptions.video_codec``), not the GIF's.
    """

    container: str  # mp4 | mov | mkv | webm | gif
    codec: str  # h264 | hevc | vp9 | mpeg4

    @property
    def is_gif(self) -> bool:
        return self.container == "gif"

    @property
    def holds_audio(self) -> bool:
        return not self.is_gif

    @property
    def muxer(self) -> str:
        return CONTAINER_MUXERS[self.container]

    @property
    def encoder(self) -> str:
        return ENCODERS[self.codec]

    @property
    def audio_encoder(self) -> str:
        if not self.holds_audio:
            raise InvalidOptions(f"a {self.container} file holds no audio")
        return AUDIO_REENCODE[self.container]

    def can_copy_audio(self, codec_name: str, supported: set[str]) -> bool:
        allowed = AUDIO_COPY[self.container]
        if allowed is not None and codec_name not in allowed:
            return False
        return codec_name in supported


def output_format(output: str | Path, options: OutputOptions) -> OutputFormat:
    """Check the output name against the chosen container and codec; fail before any work.

    A ``.gif`` output is an animated GIF (no sound); ``video_codec`` then only picks
    the codec of the intermediate segment files it is made from.
    """
    output = Path(output)
    suffix = output.suffix.lower()
    from_suffix = CONTAINER_SUFFIXES.get(suffix)
    if from_suffix is None:
        raise InvalidOptions(
            f"{output.name}: a video output must end in one of "
            f"{', '.join(sorted(CONTAINER_SUFFIXES))}; got {suffix or 'no extension'!r}"
        )
    container = options.container or from_suffix
    if container not in CONTAINER_MUXERS:
        raise InvalidOptions(f"container must be one of {', '.join(CONTAINER_MUXERS)}")
    if container != from_suffix:
        raise InvalidOptions(
            f"{output.name}: the extension {suffix} does not match the chosen container "
            f"{container!r}; name the output *.{container}"
        )
    codec = options.video_codec
    if codec not in ENCODERS:
        raise InvalidOptions(f"video_codec must be one of {', '.join(ENCODERS)}; got {codec!r}")
    if codec not in CONTAINER_CODECS[container]:
        holders = sorted(c for c, codecs in CONTAINER_CODECS.items() if codec in codecs)
        raise InvalidOptions(
            f"{output.name}: a {suffix} ({container}) file cannot hold {codec} video; "
            f"use video_codec {' or '.join(CONTAINER_CODECS[container])}, "
            f"or an output ending in {', '.join('.' + c for c in holders)}"
        )
    return OutputFormat(container=container, codec=codec)


def encoder_settings(codec: str, options: OutputOptions) -> tuple[dict[str, str], int | None]:
    """Private encoder options and (for mpeg4) a fixed quantiser, from crf and preset.

    Quality is one knob (``crf``, x264's scale) mapped onto each encoder's own
    scale, so that the same job options give comparable quality in any codec.
    """
    crf, preset = options.crf, options.preset
    if codec == "h264":
        # mbtree off: this x264 build's AVX-512 macroblock-tree code reads memory it
        # did not write, so the same frames could encode to different bytes from run
        # to run; segments must be reproducible (resume, several devices).
        return {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}, None
    if codec == "hevc":
        # x265's crf scale sits about 5 points below x264's for the same quality.
        hevc_crf = min(51, crf + 5)
        return {
            "crf": str(hevc_crf),
            "preset": preset,
            "x265-params": "log-level=error",
        }, None
    if codec == "vp9":
        vp9_crf = max(0, min(63, round(crf * 1.25 + 9)))
        return {
            "crf": str(vp9_crf),
            "b": "0",
            "deadline": "good",
            "cpu-used": str(_VP9_SPEED[preset]),
            "row-mt": "1",
        }, None
    if codec == "mpeg4":
        quantiser = max(2, min(31, 2 + crf // 6))
        return {}, quantiser
    raise InvalidOptions(f"unsupported video codec {codec!r}")
