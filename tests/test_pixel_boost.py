"""Pixel boost (MODELS-2.md §5.5): the polyphase split and merge, batched and one by one,
and the automatic size choice, through a real NeuralSwapper on stand-in files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.errors import InvalidInput, InvalidOptions
from engine.faces import Face
from engine.models.registry import REGISTRY
from engine.options import SwapOptions
from engine.runtime import SessionCache
from engine.swappers.base import SourceIdentity
from engine.swappers.neural import NeuralSwapper
from engine.swappers.pixel_boost import explode, implode
from tests.standins.swapper_families import make_swapper

# From MODELS-2.md §5.2: HyperSwap feeds (x − 0.5)/0.5 and its output is in [−1, 1];
# inswapper feeds x (0 / 1) and its output is already [0, 1].
HALF = (0.5, 0.5, 0.5)
ZERO = (0.0, 0.0, 0.0)
ONE = (1.0, 1.0, 1.0)
MARK_LEVELS = 2  # each batch item n gets n·2 levels added by the recording stand-in


@pytest.fixture(scope="module")
def t1_faces(t1: np.ndarray) -> list[Face]:
    from engine.detectors.mtcnn import MtcnnDetector

    faces = MtcnnDetector(SessionCache("cpu")).detect(t1, 0.5)
    assert len(faces) >= 5
    return faces


@pytest.fixture(scope="module")
def identity() -> SourceIdentity:
    face = Face(np.zeros(4, np.float32), 1.0, np.zeros((5, 2), np.float32))
    embedding = np.random.default_rng(7).normal(size=512).astype(np.float32)
    return SourceIdentity(np.zeros((8, 8, 3), np.uint8), face, embedding)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> dict[str, NeuralSwapper]:
    """HyperSwap (M = 256) and inswapper (M = 128) stand-ins that return their input plus
    n·2 levels for batch item n; one with a dynamic batch, one with batch 1."""
    folder = tmp_path_factory.mktemp("boost")
    sessions = SessionCache("cpu")
    built = {}
    emap = np.random.default_rng(3).normal(size=(512, 512)) / np.sqrt(512)
    for batch, label in ((None, "dynamic"), (1, "single")):
        hyper = make_swapper(
            folder / f"hyperswap_{label}.onnx", size=256, undo_mean=HALF, undo_std=HALF,
            out_mean=HALF, out_std=HALF, batch=batch, mask_output=True,
            marks=MARK_LEVELS / 255,
        )  # fmt: skip
        built[f"hyperswap_{label}"] = NeuralSwapper(sessions, REGISTRY["hyperswap_1a_256"], hyper)
        insw = make_swapper(
            folder / f"inswapper_{label}.onnx", size=128, undo_mean=ZERO, undo_std=ONE,
            batch=batch, emap=emap, marks=MARK_LEVELS / 255,
        )  # fmt: skip
        built[f"inswapper_{label}"] = NeuralSwapper(sessions, REGISTRY["inswapper_128"], insw)
    return built


# -- implode / explode ---------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 4, 8])
def test_implode_puts_every_kth_pixel_in_its_sub_image(k: int) -> None:
    m = 6
    size = k * m
    rows, cols = np.mgrid[0:size, 0:size]
    crop = np.stack([rows, cols, rows * size + cols], axis=-1)  # each pixel knows where it is
    tiles = implode(crop, k)
    assert tiles.shape == (k * k, m, m, 3)
    for i in range(k):
        for j in range(k):
            tile = tiles[i * k + j]
            a, b = np.mgrid[0:m, 0:m]
            assert np.array_equal(tile[..., 0], a * k + i)
            assert np.array_equal(tile[..., 1], b * k + j)
    assert np.array_equal(explode(tiles, k), crop)

    # explode alone: pixel (a·k + i, b·k + j) comes from (a, b) of tile i·k + j.
    marked = np.zeros((k * k, m, m, 2), np.int64)
    for n in range(k * k):
        marked[n, ..., 0] = n
        marked[n, ..., 1] = np.arange(m * m).reshape(m, m)
    merged = explode(marked, k)
    out_rows, out_cols = np.mgrid[0:size, 0:size]
    expected_tile = (out_rows % k) * k + (out_cols % k)
    expected_pos = (out_rows // k) * m + (out_cols // k)
    assert np.array_equal(merged[..., 0], expected_tile)
    assert np.array_equal(merged[..., 1], expected_pos)


def test_implode_and_explode_refuse_sizes_that_do_not_divide() -> None:
    with pytest.raises(InvalidInput, match="divisible by 3"):
        implode(np.zeros((256, 256, 3), np.uint8), 3)
    with pytest.raises(InvalidInput, match="square"):
        implode(np.zeros((256, 128, 3), np.uint8), 2)
    with pytest.raises(InvalidInput, match="4 sub-images"):
        explode(np.zeros((3, 64, 64, 3), np.uint8), 2)


# -- through the swapper ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "native", "k"),
    [("hyperswap", 256, 1), ("hyperswap", 256, 2), ("hyperswap", 256, 4),
     ("inswapper", 128, 3), ("inswapper", 128, 8)],
)  # fmt: skip
def test_each_sub_image_runs_as_its_own_batch_item_and_comes_back_in_place(
    recording: dict[str, NeuralSwapper], identity: SourceIdentity, name: str, native: int, k: int
) -> None:
    swapper = recording[f"{name}_dynamic"]
    assert swapper.batched and swapper.native_size == native
    size = k * native
    crop = np.random.default_rng(k).integers(0, 100, (size, size, 3), dtype=np.uint8)
    swapped = swapper.swap_crop(crop, swapper.source_input(identity))
    assert swapped.shape == crop.shape and swapped.dtype == np.uint8
    rows, cols = np.mgrid[0:size, 0:size]
    # Sub-image i·k + j (crop pixels (a·k + i, b·k + j)) was batch item i·k + j.
    item = (rows % k) * k + (cols % k)
    expected = crop.astype(int) + MARK_LEVELS * item[..., None]
    assert np.abs(swapped.astype(int) - expected).max() <= 1

    # The fixed-batch file runs the k² sub-images one by one: every run is item 0.
    single = recording[f"{name}_single"]
    assert not single.batched
    alone = single.swap_crop(crop, single.source_input(identity))
    assert np.abs(alone.astype(int) - crop).max() <= 1


def test_swap_crop_refuses_a_crop_that_is_not_a_multiple(
    recording: dict[str, NeuralSwapper], identity: SourceIdentity
) -> None:
    swapper = recording["hyperswap_dynamic"]
    with pytest.raises(InvalidInput, match="multiple of 256"):
        swapper.swap_crop(np.zeros((384, 384, 3), np.uint8), swapper.source_input(identity))


def _zoomed(frame: np.ndarray, face: Face, factor: float) -> tuple[np.ndarray, Face]:
    """The frame around ``face`` scaled by ``factor``, with the face's landmarks scaled."""
    x1, y1, x2, y2 = face.box
    w, h = x2 - x1, y2 - y1
    x0, y0 = int(max(x1 - w, 0)), int(max(y1 - h, 0))
    region = frame[y0 : int(y2 + h), x0 : int(x2 + w)]
    zoomed = cv2.resize(region, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    shift = np.array([x0, y0], np.float32)
    return zoomed, Face(
        ((face.box.reshape(2, 2) - shift) * factor).reshape(4).astype(np.float32),
        face.score,
        ((face.landmarks - shift) * factor).astype(np.float32),
    )


def test_auto_boosts_large_faces_and_leaves_small_ones_native(
    t1: np.ndarray, t1_faces: list[Face], recording: dict[str, NeuralSwapper],
    identity: SourceIdentity,
) -> None:  # fmt: skip
    swapper = recording["hyperswap_dynamic"]
    # Whole multiples of M = 256 up to 1024 (FaceFusion's 256-native choices).
    assert swapper.boost_sizes == (256, 512, 768, 1024)
    assert recording["inswapper_dynamic"].boost_sizes == (128, 256, 384, 512, 640, 768, 896, 1024)
    face = max(t1_faces, key=lambda f: f.area)

    small_frame, small = _zoomed(t1, face, 0.5)
    assert swapper.boost_size(small, "auto") == 256
    assert recording["inswapper_dynamic"].boost_size(small, "auto") == 128
    assert swapper.boost_size(face, "auto") == 256  # t1's faces are ~100 px: not boosted

    large_frame, large = _zoomed(t1, face, 4.0)
    boosted = swapper.boost_size(large, "auto")
    assert boosted in (512, 768, 1024)
    # The smallest size that holds the face: one step down would be smaller than the face.
    # On arcface_128's scale a face spans eye distance / 0.2753 (the template's eye gap).
    face_size = np.linalg.norm(large.landmarks[1] - large.landmarks[0]) / 0.2753
    assert 0.9 * face_size <= boosted and boosted - 256 < 1.1 * face_size
    huge_frame, huge = _zoomed(t1, face, 12.0)
    assert swapper.boost_size(huge, "auto") == 1024  # capped

    # swap(size="auto") really crops at the boosted size (the mask builder sees the crop).
    seen: list[tuple[int, ...]] = []

    def record(crop, swapped, matrix, target):
        seen.append(crop.shape)
        return np.ones(crop.shape[:2], np.float32)

    options = SwapOptions(color_correction=False)
    swapper.swap(large_frame, large, identity, options, size="auto", mask_builder=record)
    swapper.swap(small_frame, small, identity, options, size="auto", mask_builder=record)
    swapper.swap(small_frame, small, identity, options, size=512, mask_builder=record)
    assert seen == [(boosted, boosted, 3), (256, 256, 3), (512, 512, 3)]


def test_explicit_sizes_must_be_whole_multiples(
    recording: dict[str, NeuralSwapper], t1_faces: list[Face]
) -> None:
    swapper = recording["hyperswap_dynamic"]
    face = t1_faces[0]
    assert swapper.boost_size(face, 768) == 768
    # FaceFusion lists 384 for blendswap_256; it is not k·256, so it is refused here.
    for bad in (384, 2048, 100):
        with pytest.raises(InvalidOptions, match="256, 512, 768, 1024"):
            swapper.boost_size(face, bad)
    with pytest.raises(InvalidOptions, match="auto"):
        swapper.boost_size(face, "large")
