"""Upload checks made before a job exists: size, pixels, video duration, kind.

An upload is judged by its bytes, never by its name: images by their magic
number and header (no pixels are decoded), videos by FFmpeg's probe. The
uploaded name only appears, cleaned, in messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine import imageio
from engine.errors import InvalidInput
from studio.config import UploadLimits

_UNPRINTABLE = re.compile(r"[^\w .,()\[\]+@-]", re.UNICODE)


@dataclass(frozen=True)
class CheckedUpload:
    """An upload that passed the limits, still in its temporary file."""

    path: Path
    original: str
    kind: str  # "image" | "video"
    size: int
    width: int
    height: int
    duration: float | None = None
    frames: int = 1


def display_name(original: str | None) -> str:
    """An uploaded file name made safe for messages and metadata (never for paths)."""
    name = (original or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNPRINTABLE.sub("_", name).strip()[:80]
    return name or "upload"


def label(role: str, original: str | None) -> str:
    return f"{role} ({display_name(original)})"


def check_size(size: int, role: str, original: str | None, limits: UploadLimits) -> None:
    if size == 0:
        raise InvalidInput(f"{label(role, original)}: the file is empty (0 bytes)")
    if size > limits.max_file_bytes:
        raise InvalidInput(
            f"{label(role, original)}: {size / 1e6:.1f} MB is more than the upload limit "
            f"of {limits.max_file_bytes / 1e6:.0f} MB"
        )


def check_image(path: Path, role: str, original: str | None, limits: UploadLimits) -> CheckedUpload:
    """A source or reference: must be a still image within the pixel limit."""
    size = path.stat().st_size
    check_size(size, role, original, limits)
    try:
        header = imageio.check_complete(path, limits.max_pixels)  # one read of the file
    except InvalidInput as exc:
        raise InvalidInput(f"{label(role, original)}: {_strip_name(exc.message, path)}") from None
    return CheckedUpload(path, display_name(original), "image", size, header.width, header.height)


def check_target(path: Path, original: str | None, limits: UploadLimits, role: str = "target"):
    """A target: a still image within the pixel limit, or a video within the duration limit."""
    size = path.stat().st_size
    check_size(size, role, original, limits)
    with path.open("rb") as handle:
        head = handle.read(16)
    sniffed = imageio.sniff_image_format(head)
    if sniffed and sniffed != "gif":
        return check_image(path, role, original, limits)
    from engine.video.probe import probe

    try:
        info = probe(path)
    except InvalidInput as exc:
        raise InvalidInput(
            f"{label(role, original)}: not a supported image or video "
            f"({_strip_name(exc.message, path)})"
        ) from None
    if info.duration > limits.max_video_seconds:
        raise InvalidInput(
            f"{label(role, original)}: the video is {info.duration:.0f} s long; "
            f"the limit is {limits.max_video_seconds:.0f} s"
        )
    if info.width * info.height > limits.max_pixels:
        raise InvalidInput(
            f"{label(role, original)}: {info.width}×{info.height} frames are more than the "
            f"limit of {limits.max_pixels / 1e6:.0f} megapixels"
        )
    return CheckedUpload(
        path,
        display_name(original),
        "video",
        size,
        info.width,
        info.height,
        info.duration,
        max(int(info.frames), 1),
    )


def _strip_name(message: str, path: Path) -> str:
    """Engine messages start with the file's name, here a meaningless temporary one."""
    prefix = f"{path.name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
