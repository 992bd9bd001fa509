"""Hostile image files fail with a message that names the problem."""

import io

import numpy as np
import pytest
from PIL import Image

from engine.errors import InvalidInput, InvalidOptions
from engine.imageio import decode_image, load_image, read_header, save_image
from tests.assets import T1


def test_real_photo_decodes_to_bgr():
    image = load_image(T1)
    assert image.shape == (886, 1280, 3)
    assert image.dtype == np.uint8


def test_zero_bytes(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInput, match="empty"):
        load_image(empty)


def test_not_an_image(tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is a text file pretending to be a JPEG")
    with pytest.raises(InvalidInput, match="not a supported image"):
        load_image(fake)


def test_truncated_image():
    data = T1.read_bytes()
    with pytest.raises(InvalidInput, match="truncated"):
        decode_image(data[: len(data) // 2], "t1.jpg")


def test_unsupported_format_gif():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    with pytest.raises(InvalidInput, match="GIF"):
        decode_image(buffer.getvalue(), "anim.gif")


def test_decompression_bomb_is_refused_from_the_header():
    # A 20000×20000 PNG compresses to a few hundred KB but would need 1.2 GB decoded.
    buffer = io.BytesIO()
    Image.new("L", (20_000, 20_000)).save(buffer, format="PNG")
    with pytest.raises(InvalidInput, match="megapixels"):
        decode_image(buffer.getvalue(), "bomb.png")


def test_header_reads_size_without_decoding():
    header = read_header(T1)
    assert (header.format, header.width, header.height) == ("jpeg", 1280, 886)


def test_transparent_png_is_flattened_on_white():
    buffer = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(buffer, format="PNG")
    image = decode_image(buffer.getvalue(), "clear.png")
    assert image.min() == 255


def test_save_is_atomic_and_checks_the_directory(tmp_path):
    image = np.full((16, 16, 3), 127, np.uint8)
    out = save_image(image, tmp_path / "out.png")
    assert np.array_equal(load_image(out), image)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    with pytest.raises(InvalidInput, match="does not exist"):
        save_image(image, tmp_path / "missing" / "out.png")
    with pytest.raises(InvalidOptions, match="unsupported output image type"):
        save_image(image, tmp_path / "out.gif")
