"""Safe image reading and atomic image writing.

Uploaded files are hostile until proven otherwise: the format is sniffed from
the bytes (not the name), the pixel count is checked from the header before
anything is decoded (decompression bombs), and truncated files are refused
instead of being decoded into grey half-images.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.atomic import write_atomic
from engine.errors import InvalidInput, InvalidOptions

DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: bigger than any phone photo, far below a bomb
IMAGE_FORMATS = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff"}
OUTPUT_EXTENSIONS = {".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png", ".webp": ".webp"}

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


def sniff_image_format(head: bytes) -> str | None:
    """The image format named by a file's first bytes, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def read_header(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Format and size of an image without decoding its pixels."""
    path = Path(path)
    data = _read_bytes(path)
    return header_from_bytes(data, path.name, max_pixels)


COMPLETE_CHECK_SIDE = 32  # check_complete decodes a JPEG down to about this side


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file into a BGR uint8 array, honouring EXIF orientation."""
    path = Path(path)
    data = _read_bytes(path)
    return decode_image(data, path.name, max_pixels)


def decode_image(
    data: bytes,
    name: str = "image",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reduce_to: int | None = None,
) -> np.ndarray:
    """Decode image bytes into a BGR uint8 array; every failure names the problem.

    ``reduce_to``: the caller only needs about that many pixels per side (a
    classifier's input), so a JPEG is decoded at 1/2, 1/4 or 1/8 scale where that
    still leaves at least ``reduce_to`` on each side: a 12-megapixel photo then
    decodes in a few milliseconds instead of a hundred.
    """
    header_from_bytes(data, name, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if reduce_to:
                image.draft("RGB", (reduce_to, reduce_to))  # a no-op for formats but JPEG
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode not in ("RGB", "L"):
                image = _flatten_alpha(image)
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        if "truncated" in str(exc).lower() or "broken" in str(exc).lower():
            raise InvalidInput(f"{name}: the image file is truncated or damaged") from None
        raise InvalidInput(f"{name}: the image cannot be decoded ({exc})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput(f"{name}: the image is too large to decode safely") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def check_complete(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Refuse a truncated or damaged image before it becomes a job; its header if whole.

    A PNG's chunks are read through to its end with their checksums (no pixel is
    inflated); anything else is decoded whole, a JPEG at 1/8 scale (a few
    milliseconds even for a large photo). So a submit learns at once what the
    worker would only find later."""
    path = Path(path)
    data = _read_bytes(path)
    header = header_from_bytes(data, path.name, max_pixels)
    if header.format != "png":
        decode_image(data, path.name, max_pixels, reduce_to=COMPLETE_CHECK_SIDE)
        return header
    try:
        Image.open(io.BytesIO(data)).verify()
    except (OSError, SyntaxError, ValueError) as exc:
        if "truncated" in str(exc).lower():
            raise InvalidInput(f"{path.name}: the image file is truncated or damaged") from None
        raise InvalidInput(f"{path.name}: the image is damaged ({exc})") from None
    return header


def save_image(image: np.ndarray, output: str | Path, quality: int = 92) -> Path:
    """Encode a BGR image by the output's extension and move it into place atomically."""
    output = Path(output)
    extension = OUTPUT_EXTENSIONS.get(output.suffix.lower())
    if extension is None:
        raise InvalidOptions(
            f"{output.name}: unsupported output image type {output.suffix or '(none)'!r}; "
            f"use one of {', '.join(sorted(OUTPUT_EXTENSIONS))}"
        )
    check_output_dir(output)
    params: list[int] = []
    if extension == ".jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif extension == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    elif extension == ".png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, encoded = cv2.imencode(extension, image, params)
    if not ok:
        raise InvalidInput(f"{output.name}: the image could not be encoded")
    write_atomic(output, encoded.tobytes())
    return output


def check_output_dir(output: Path) -> None:
    """Fail early, before any work, when the output cannot be written."""
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInput(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InvalidInput(f"output directory {parent} is not writable")


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise InvalidInput(f"{path.name}: file not found")
    if not path.is_file():
        raise InvalidInput(f"{path.name}: not a regular file")
    data = path.read_bytes()
    if not data:
        raise InvalidInput(f"{path.name}: the file is empty (0 bytes)")
    return data


def header_from_bytes(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Format and size from image bytes, with the pixel limit checked; nothing decoded."""
    if not data:
        raise InvalidInput(f"{name}: the file is empty (0 bytes)")
    sniffed = sniff_image_format(data[:16])
    if sniffed is None:
        raise InvalidInput(
            f"{name}: not a supported image (expected JPEG, PNG, WebP, BMP or TIFF content)"
        )
    if sniffed == "gif":
        raise InvalidInput(f"{name}: GIF images are not supported as image inputs; use PNG or JPEG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
    except Image.DecompressionBombError:
        raise InvalidInput(
            f"{name}: the image is too large to decode safely "
            f"(more than the limit of {max_pixels / 1e6:.0f} megapixels)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"{name}: the image header is damaged ({exc})") from None
    if width <= 0 or height <= 0:
        raise InvalidInput(f"{name}: the image has no pixels")
    if width * height > max_pixels:
        raise InvalidInput(
            f"{name}: {width}×{height} pixels is more than the limit of "
            f"{max_pixels / 1e6:.0f} megapixels"
        )
    return ImageHeader(format=sniffed, width=width, height=height)


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite transparent images on white, so transparent areas do not turn black."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
