"""The real_esrgan whole-frame enhancer on stand-in networks and a real photo: exact
tiling, reflect-padded borders, colour order, scale, blend and refused files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from engine.enhancers.frame import FrameEnhancer
from engine.errors import InvalidInput, InvalidOptions, ModelUnavailable
from engine.models.registry import REGISTRY, ModelSpec
from engine.runtime import SessionCache
from tests.standins.frame_enhancer import conv_weights, make_frame_enhancer

TILE = 64  # the stand-ins' fixed tile: several tiles across a small photo crop
OVERLAP = 8  # MODELS-2.md §9: (tile, pad, overlap) = (256, 16, 8)
FAMILY_TILE = 256


def spec(name: str = "real_esrgan_x2", **changes) -> ModelSpec:
    return dataclasses.replace(REGISTRY[name], **changes)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("frame_enhancers")


@pytest.fixture(scope="module")
def photo(t1: np.ndarray) -> np.ndarray:
    """301×517, a size that is no multiple of any core."""
    return np.ascontiguousarray(t1[150:451, 300:817])


def reference(models: Path, frame: np.ndarray, scale: int, pad: int = OVERLAP) -> np.ndarray:
    """The same network run once on the whole reflect-padded frame (dynamic axes),
    with the §9 pre/post-processing written out here."""
    path = models / f"whole_x{scale}.onnx"
    if not path.exists():
        make_frame_enhancer(path, scale=scale, tile=None)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    tensor = (padded[..., ::-1].astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    output = session.run(None, {"input": np.ascontiguousarray(tensor)})[0][0]
    image = np.rint(np.clip(output.transpose(1, 2, 0) * 255.0, 0, 255)).astype(np.uint8)
    height, width = frame.shape[:2]
    cut = pad * scale
    return image[cut : cut + height * scale, cut : cut + width * scale, ::-1]


def numpy_network(frame: np.ndarray, scale: int, mode: str = "reflect") -> np.ndarray:
    """The stand-in computed with numpy: pad (reflect = BORDER_REFLECT_101, or zeros),
    5×5 cross-correlation mixing RGB channels, nearest upsampling, back to uint8 BGR."""
    weights = conv_weights().astype(np.float64)
    rgb = frame[..., ::-1].astype(np.float64) / 255.0
    padded = np.pad(rgb, ((2, 2), (2, 2), (0, 0)), mode=mode)
    height, width = frame.shape[:2]
    out = np.zeros((height, width, 3))
    for dy in range(5):
        for dx in range(5):
            window = padded[dy : dy + height, dx : dx + width]
            out += window @ weights[:, :, dy, dx].T
    up = np.repeat(np.repeat(out, scale, axis=0), scale, axis=1)
    return np.rint(np.clip(up * 255.0, 0, 255)).astype(np.uint8)[..., ::-1]


def fixed_model(models: Path, scale: int, **options) -> Path:
    label = "_".join(f"{k}{v}" for k, v in sorted(options.items()))
    path = models / f"fixed_x{scale}_{label}.onnx"
    if not path.exists():
        make_frame_enhancer(path, scale=scale, tile=options.pop("tile", TILE), **options)
    return path


# -- exact tiling -----------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4])
def test_tiles_give_the_whole_frame_result_at_every_pixel(
    sessions: SessionCache, models: Path, photo: np.ndarray, scale: int
) -> None:
    enhancer = FrameEnhancer(sessions, spec(f"real_esrgan_x{scale}"), fixed_model(models, scale))
    calls: list[tuple[int, int]] = []
    out = enhancer.enhance(
        photo, blend=1.0, progress=lambda done, total: calls.append((done, total))
    )
    assert out.shape == (301 * scale, 517 * scale, 3)
    np.testing.assert_array_equal(out, reference(models, photo, scale))
    total = calls[-1][1]
    core = TILE - 2 * OVERLAP
    assert total >= -(-301 // core) * -(-517 // core)  # many tiles, seams everywhere
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})


@pytest.mark.parametrize("size", [(37, 23), (1, 5), (TILE, TILE)])
def test_a_frame_no_bigger_than_a_tile(
    sessions: SessionCache, models: Path, photo: np.ndarray, size: tuple[int, int]
) -> None:
    frame = np.ascontiguousarray(photo[100 : 100 + size[0], 200 : 200 + size[1]])
    enhancer = FrameEnhancer(sessions, spec("real_esrgan_x2"), fixed_model(models, 2))
    out = enhancer.enhance(frame, blend=1.0)
    assert out.shape == (size[0] * 2, size[1] * 2, 3)
    np.testing.assert_array_equal(out, reference(models, frame, 2))


def test_batched_dynamic_tiles_are_exact_too(
    sessions: SessionCache, models: Path, photo: np.ndarray
) -> None:
    path = make_frame_enhancer(models / "batched.onnx", scale=4, tile=None, dynamic_batch=True)
    enhancer = FrameEnhancer(sessions, spec("real_esrgan_x4"), path, tile=48, batch=4)
    assert enhancer.tile == 48
    calls: list[tuple[int, int]] = []
    out = enhancer.enhance(photo, blend=1.0, progress=lambda d, t: calls.append((d, t)))
    np.testing.assert_array_equal(out, reference(models, photo, 4))
    steps = [done for done, _ in calls]
    assert steps[1] == 4 and steps[-1] == calls[-1][1] > 4  # four tiles per run


def test_an_overlap_below_the_receptive_field_shows_seams(
    sessions: SessionCache, models: Path, photo: np.ndarray
) -> None:
    """The 5×5 stand-in reaches 2 px: overlap 2 is exact, overlap 1 is not."""
    path = fixed_model(models, 2)
    whole = reference(models, photo, 2)
    exact = FrameEnhancer(sessions, spec(), path, overlap=2).enhance(photo, blend=1.0)
    np.testing.assert_array_equal(exact, whole)
    seams = FrameEnhancer(sessions, spec(), path, overlap=1).enhance(photo, blend=1.0)
    assert (seams != whole).any(axis=2).mean() > 0.01


def test_borders_are_reflect_padded_not_darkened(
    sessions: SessionCache, models: Path, photo: np.ndarray
) -> None:
    out = FrameEnhancer(sessions, spec(), fixed_model(models, 2)).enhance(photo, blend=1.0)
    expected = numpy_network(photo, 2)
    zeros = numpy_network(photo, 2, mode="constant")
    edge = np.ones(out.shape[:2], bool)
    edge[8:-8, 8:-8] = False  # the 2-px reach of the network, ×2
    have, want = out[edge].astype(int), expected[edge].astype(int)
    assert np.abs(have - want).max() <= 1  # float32 network vs float64 numpy
    assert (zeros[edge].astype(int) - want).mean() < -20  # what zero padding would give
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


# -- colours, scale, blend --------------------------------------------------------------------


def test_red_is_rgb_channel_zero_and_bgr_channel_two(
    sessions: SessionCache, models: Path, photo: np.ndarray
) -> None:
    path = fixed_model(models, 2, drop_red=True)
    out = FrameEnhancer(sessions, spec(), path).enhance(photo, blend=1.0)
    up = np.repeat(np.repeat(photo, 2, axis=0), 2, axis=1)
    assert photo[..., 2].mean() > 50
    assert (out[..., 2] == 0).all()
    np.testing.assert_array_equal(out[..., :2], up[..., :2])


def test_float16_io_is_fed_float16(sessions: SessionCache, models: Path, photo: np.ndarray) -> None:
    path = fixed_model(models, 2, half_io=True)
    out = FrameEnhancer(sessions, spec("real_esrgan_x2_fp16"), path).enhance(photo, blend=1.0)
    assert np.abs(out.astype(int) - reference(models, photo, 2).astype(int)).max() <= 1


@pytest.mark.parametrize("scale", [2, 4])
def test_scale_from_the_files_shapes(sessions: SessionCache, models: Path, scale: int) -> None:
    wrong = spec(scale=3)  # the file's fixed shapes win over the catalogue
    enhancer = FrameEnhancer(sessions, wrong, fixed_model(models, scale), tile=128)
    assert (enhancer.name, enhancer.scale, enhancer.tile) == ("real_esrgan_x2", scale, TILE)
    assert enhancer.output_size(517, 301) == (517 * scale, 301 * scale)


def test_scale_of_a_dynamic_file(sessions: SessionCache, models: Path, photo: np.ndarray) -> None:
    path = make_frame_enhancer(models / "dynamic_x4.onnx", scale=4, tile=None)
    catalogued = FrameEnhancer(sessions, spec("real_esrgan_x4"), path)
    assert (catalogued.scale, catalogued.tile) == (4, FAMILY_TILE)
    measured = FrameEnhancer(sessions, spec("real_esrgan_x4", scale=None), path, tile=32)
    assert (measured.scale, measured.tile) == (4, 32)
    assert measured.output_size(10, 7) == (40, 28)
    misfiled = FrameEnhancer(sessions, spec("real_esrgan_x4", scale=3), path)
    assert misfiled.scale == 3  # the catalogue's word, when the file cannot tell
    with pytest.raises(ModelUnavailable, match="real_esrgan_x4.*output"):
        misfiled.enhance(photo[:20, :20], blend=1.0)


def test_blend_mixes_the_bilinear_resize_and_the_network(
    sessions: SessionCache, models: Path, photo: np.ndarray
) -> None:
    enhancer = FrameEnhancer(sessions, spec(), fixed_model(models, 2))
    resized = cv2.resize(photo, (517 * 2, 301 * 2), interpolation=cv2.INTER_LINEAR)
    network = reference(models, photo, 2)
    np.testing.assert_array_equal(enhancer.enhance(photo, blend=0.0), resized)
    np.testing.assert_array_equal(enhancer.enhance(photo, blend=1.0), network)
    half = enhancer.enhance(photo, blend=0.5).astype(int)
    mean = (resized.astype(int) + network.astype(int)) / 2
    assert np.abs(half - mean).max() <= 0.5
    assert np.abs(resized.astype(int) - network.astype(int)).mean() > 1


# -- refusals ---------------------------------------------------------------------------------


def test_a_file_with_a_wrong_input_rank_is_refused(sessions: SessionCache, models: Path) -> None:
    path = fixed_model(models, 2, input_rank=3)
    with pytest.raises(ModelUnavailable, match=r"real_esrgan_x2.*'input'.*shape"):
        FrameEnhancer(sessions, spec(), path)


def test_a_file_without_an_input_named_input_is_refused(
    sessions: SessionCache, models: Path
) -> None:
    path = fixed_model(models, 2, input_name="image", extra_input="mask")
    with pytest.raises(ModelUnavailable, match=r"real_esrgan_x2.*'image'.*'mask'.*'input'"):
        FrameEnhancer(sessions, spec(), path)


def test_a_single_renamed_input_is_fed_by_position(
    sessions: SessionCache, models: Path, photo: np.ndarray
) -> None:
    path = fixed_model(models, 2, input_name="image")
    out = FrameEnhancer(sessions, spec(), path).enhance(photo, blend=1.0)
    np.testing.assert_array_equal(out, reference(models, photo, 2))


def test_bad_options_and_frames(sessions: SessionCache, models: Path, photo: np.ndarray) -> None:
    dynamic = make_frame_enhancer(models / "dynamic_x2.onnx", scale=2, tile=None)
    with pytest.raises(InvalidOptions, match="tile"):
        FrameEnhancer(sessions, spec(), dynamic, tile=16)  # 16 ≤ 2 × overlap 8
    with pytest.raises(InvalidOptions, match="overlap"):
        FrameEnhancer(sessions, spec(), dynamic, overlap=-1)
    enhancer = FrameEnhancer(sessions, spec(), dynamic)
    for blend in (-0.1, 1.5, float("nan"), "high"):
        with pytest.raises(InvalidOptions, match="blend"):
            enhancer.enhance(photo, blend=blend)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        enhancer.enhance(photo.astype(np.float32), blend=1.0)
    with pytest.raises(InvalidInput):
        enhancer.enhance(photo[..., 0], blend=1.0)
    with pytest.raises(ModelUnavailable, match="frame enhancer"):
        FrameEnhancer(sessions, REGISTRY["gfpgan_1.4"], dynamic)
