"""The per-face fast paths of issue #13 give what the plain formulas give.

Pixel boost's fused split + normalise and merge + denormalise, the colour table for
large crops, the colour correction applied after the warp, paste-back into a given
frame, and the source-face cache of the image swappers. Real OpenCV and ONNX Runtime
on stand-in swappers (``tests/standins``) and t1.jpg; no timings.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.align import estimate_affine, template_points, warp_face
from engine.faces import Face
from engine.models.registry import REGISTRY
from engine.options import SwapOptions
from engine.paste import box_mask, color_map, color_transfer, paste_back, seamless_paste
from engine.runtime import SessionCache
from engine.swappers.base import SourceIdentity
from engine.swappers.neural import NeuralSwapper
from engine.swappers.pixel_boost import explode, explode_bgr, implode, implode_blob
from tests.assets import TOM_HANKS, load
from tests.standins.swapper_families import make_swapper

# MODELS-2.md §5.2: uniface feeds (x − 0.5)/0.5 and maps its output back by ×0.5 + 0.5;
# its source is the first source face aligned to ffhq_512 at 256 px.
HALF = (0.5, 0.5, 0.5)
UNIFACE_SOURCE = 256


@pytest.fixture(scope="module")
def t1_faces(t1: np.ndarray) -> list[Face]:
    from engine.detectors.mtcnn import MtcnnDetector

    faces = MtcnnDetector(SessionCache("cpu")).detect(t1, 0.5)
    assert len(faces) >= 5
    return faces


@pytest.fixture(scope="module")
def uniface(tmp_path_factory) -> NeuralSwapper:
    folder: Path = tmp_path_factory.mktemp("fast")
    path = make_swapper(
        folder / "uniface_256.onnx", size=256, undo_mean=HALF, undo_std=HALF,
        out_mean=HALF, out_std=HALF, source_size=UNIFACE_SOURCE, batch=None,
    )  # fmt: skip
    return NeuralSwapper(SessionCache("cpu"), REGISTRY["uniface_256"], path)


def lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_BGR2LAB)


def exact_transfer(crop: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The plain formula on every pixel: LAB mean/std of ``reference`` inside the mask
    (> 0.5), std ratio bounded to 0.5..2, L kept in 0..100, rounded BGR."""
    inside = mask > 0.5
    src, ref = lab(crop), lab(reference)
    ratio = np.clip(ref[inside].std(0) / np.maximum(src[inside].std(0), 1e-3), 0.5, 2.0)
    matched = (src - src[inside].mean(0)) * ratio + ref[inside].mean(0)
    matched[..., 0] = np.clip(matched[..., 0], 0, 100)
    bgr = cv2.cvtColor(matched.astype(np.float32), cv2.COLOR_LAB2BGR)
    return np.rint(np.clip(bgr, 0, 1) * 255).astype(np.uint8)


def face_crop(t1: np.ndarray, face: Face, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A target crop, a 'swapped' crop with another colour cast, and the matrix."""
    crop, matrix = warp_face(t1, face.landmarks, "arcface_128", size)
    swapped = cv2.add(cv2.GaussianBlur(crop, (0, 0), 1.5), (25, 0, -15, 0))
    return crop, swapped, matrix


@pytest.mark.parametrize(("k", "m"), [(1, 8), (2, 6), (3, 5), (4, 7), (8, 3)])
def test_fused_split_and_merge_match_implode_explode_and_the_formula(k: int, m: int) -> None:
    rng = np.random.default_rng(k)
    crop = rng.integers(0, 256, (k * m, k * m, 3), dtype=np.uint8)
    scale, offset = np.array([0.3, 0.5, 2.0]), np.array([-1.0, 0.5, 3.0])  # per RGB channel
    blob = implode_blob(crop, k, scale, offset)
    rgb = implode(crop, k)[..., ::-1].transpose(0, 3, 1, 2).astype(np.float64)
    assert blob.shape == (k * k, 3, m, m) and blob.dtype == np.float32
    assert np.abs(blob - (rgb * scale[:, None, None] + offset[:, None, None])).max() < 1e-4

    outputs = rng.normal(0.0, 2.0, blob.shape).astype(np.float32)
    out_scale, out_offset = np.array([255.0, 100.0, 50.0]), np.array([0.0, 128.0, 20.0])
    merged = explode_bgr(list(outputs), k, out_scale, out_offset)
    levels = outputs * out_scale[:, None, None] + out_offset[:, None, None]
    expected = np.clip(np.rint(levels), 0, 255).transpose(0, 2, 3, 1)[..., ::-1]
    assert merged.dtype == np.uint8
    assert np.array_equal(merged, explode(np.ascontiguousarray(expected), k))
    assert np.array_equal(explode_bgr(outputs, k, out_scale, out_offset), merged)


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_colour_transfer_stays_within_a_level_of_the_plain_formula(
    t1: np.ndarray, t1_faces: list[Face], size: int
) -> None:
    """256: mapped exactly (sampled statistics); 512 and 1024: through the colour table."""
    crop, swapped, _ = face_crop(t1, t1_faces[0], size)
    mask = box_mask(size, 0.3, 0.0)
    result = color_transfer(swapped, crop, mask)
    difference = np.abs(result.astype(int) - exact_transfer(swapped, crop, mask))
    assert difference.mean() < 0.25
    assert (difference > 1).mean() < 1e-3
    inside = mask > 0.5
    assert np.abs(lab(swapped)[inside].mean(0) - lab(crop)[inside].mean(0)).max() > 5
    assert np.abs(lab(result)[inside].mean(0) - lab(crop)[inside].mean(0)).max() < 1.0


@pytest.mark.parametrize("size", [128, 512, 1024])
def test_colour_applied_during_the_paste_matches_colour_then_paste(
    t1: np.ndarray, t1_faces: list[Face], size: int
) -> None:
    """A 128 crop is corrected before the warp (it is smaller than the face's region): the
    same pixels. Larger ones after it, on the region: at most two levels, rarely two (the
    Poisson solve spreads the small differences a little)."""
    crop, swapped, matrix = face_crop(t1, t1_faces[1], size)
    mask = box_mask(size, 0.3, 0.1)
    correction = color_map(swapped, crop, mask)
    assert correction is not None
    for paste in (paste_back, seamless_paste):
        during = paste(t1, swapped, matrix, mask, color=correction)
        before = paste(t1, correction.apply(swapped), matrix, mask)
        difference = np.abs(during.astype(int) - before)
        if size == 128:
            assert np.array_equal(during, before)
        values = 3 * np.count_nonzero((during != t1).any(axis=2))  # the face's channel values
        assert difference.max() <= 2 and np.count_nonzero(difference > 1) < 0.01 * values
    assert color_map(swapped, crop, np.zeros_like(mask)) is None


def test_paste_back_into_a_given_frame(t1: np.ndarray, t1_faces: list[Face]) -> None:
    matrix = estimate_affine(t1_faces[0].landmarks, "arcface_128", 128)
    crop = np.full((128, 128, 3), (20, 200, 40), np.uint8)
    mask = box_mask(128, 0.3, 0.05)
    original = t1.copy()
    new = paste_back(t1, crop, matrix, mask)
    assert np.array_equal(t1, original) and not np.array_equal(new, t1)

    owned = t1.copy()
    assert paste_back(owned, crop, matrix, mask, out=owned) is owned
    assert np.array_equal(owned, new)
    elsewhere = np.zeros_like(t1)
    assert paste_back(t1, crop, matrix, mask, out=elsewhere) is elsewhere
    assert np.array_equal(elsewhere, new) and np.array_equal(t1, original)


def test_swap_can_write_into_the_callers_frame(
    uniface: NeuralSwapper, t1: np.ndarray, t1_faces: list[Face]
) -> None:
    source = hanks_source()
    options = SwapOptions()
    first = uniface.swap(t1, t1_faces[0], source, options, size=512)
    both = uniface.swap(first, t1_faces[1], source, options)
    owned = t1.copy()
    result = uniface.swap(owned, t1_faces[0], source, options, size=512, out=owned)
    assert result is owned and np.array_equal(owned, first)
    uniface.swap(owned, t1_faces[1], source, options, out=owned)
    assert np.array_equal(owned, both)


def test_the_source_face_is_aligned_once_per_source_image(uniface: NeuralSwapper) -> None:
    hanks = hanks_source()
    fed = uniface._cached_source_input(hanks, None, 0.5)
    assert uniface._cached_source_input(hanks, None, 0.5) is fed  # no second warp
    assert not fed.flags.writeable  # shared: nobody may change it
    assert np.array_equal(fed, uniface.source_input(hanks))
    # Another image (even with the same face box) is aligned afresh, never mixed up.
    darker = SourceIdentity(hanks.image // 2, hanks.face, None)
    other = uniface._cached_source_input(darker, None, 0.5)
    assert np.array_equal(other, uniface.source_input(darker))
    assert np.abs(other - fed).max() > 0.2


def hanks_source() -> SourceIdentity:
    """Tom_Hanks_54745.png is an arcface_112_v2 crop at 112 px."""
    image = load(TOM_HANKS)
    points = template_points("arcface_112_v2", 112)
    face = Face(np.array([0, 0, 112, 112], np.float32), 1.0, points)
    embedding = np.random.default_rng(7).normal(size=512).astype(np.float32)
    return SourceIdentity(image, face, embedding)
