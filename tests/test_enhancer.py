"""GFPGAN 1.4 through ``FaceEnhancer``'s real loading and processing code, on a stand-in model
(every other family: ``test_enhancer_families.py``), and the old ``engine.enhancer`` entry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.enhancers import FaceEnhancer
from engine.errors import InvalidInput, InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.models.registry import REGISTRY
from engine.runtime import SessionCache
from tests.assets import T1
from tests.standins.gfpgan import make_gfpgan
from tests.standins.inswapper import make_inswapper

# One face of t1.jpg (insightface SCRFD on scrfd_2.5g): box and five landmarks.
FACE = Face(
    box=np.array([465.4, 265.4, 573.4, 416.1], np.float32),
    score=0.9,
    landmarks=np.array(
        [[491.7, 318.9], [540.8, 331.9], [507.1, 360.7], [483.9, 367.1], [531.9, 378.4]],
        np.float32,
    ),
)


@pytest.fixture(scope="module")
def gfpgan_file(tmp_path_factory: pytest.TempPathFactory):
    return make_gfpgan(tmp_path_factory.mktemp("models") / "gfpgan_1.4.onnx")


def enhancer(path) -> FaceEnhancer:
    return FaceEnhancer(SessionCache("cpu"), REGISTRY["gfpgan_1.4"], path)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 0


def test_restore_applies_the_documented_pre_and_post_processing(gfpgan_file) -> None:
    # The stand-in maps a flat input x (in [-1, 1]) to 0.9·x + 0.1; a flat crop
    # with distinct channels catches a missing or doubled BGR↔RGB swap.
    model = enhancer(gfpgan_file)
    crop = np.empty((512, 512, 3), np.uint8)
    crop[...] = (10, 100, 200)
    restored = model.restore(crop)
    x = (np.array([10, 100, 200]) / 255 - 0.5) / 0.5
    expected = np.rint((np.clip(0.9 * x + 0.1, -1, 1) + 1) / 2 * 255)
    assert restored.shape == (512, 512, 3) and restored.dtype == np.uint8
    assert np.abs(restored[256, 256].astype(int) - expected).max() <= 1
    with pytest.raises(InvalidInput, match="512x512"):
        model.restore(crop[:256])


def test_enhance_changes_the_face_and_only_the_face(t1: np.ndarray, gfpgan_file) -> None:
    model = enhancer(gfpgan_file)
    result = model.enhance(t1, FACE, blend=1.0)
    assert result is not t1 and np.array_equal(t1, cv2.imread(str(T1)))
    diff = changed(result, t1)
    x1, y1, x2, y2 = FACE.box.astype(int)
    assert diff[y1 + 30 : y2 - 30, x1 + 20 : x2 - 20].mean() > 0.8
    w, h = x2 - x1, y2 - y1
    away = np.ones(diff.shape, bool)
    away[max(y1 - h, 0) : y2 + h, max(x1 - w, 0) : x2 + w] = False
    assert not diff[away].any()


def test_blend_mixes_enhanced_over_original(t1: np.ndarray, gfpgan_file) -> None:
    model = enhancer(gfpgan_file)
    full = model.enhance(t1, FACE, blend=1.0).astype(int)
    half = model.enhance(t1, FACE, blend=0.5).astype(int)
    assert np.array_equal(model.enhance(t1, FACE, blend=0.0), t1)
    midway = (t1.astype(int) + full) / 2
    assert np.abs(half - midway).max() <= 1.0
    assert np.abs(half - full).max() > 5
    with pytest.raises(InvalidOptions, match="blend"):
        model.enhance(t1, FACE, blend=1.5)


def test_weight_input_is_fed_when_the_model_declares_it(tmp_path, t1: np.ndarray) -> None:
    weighted = enhancer(make_gfpgan(tmp_path / "weighted.onnx", with_weight=True))
    plain = enhancer(make_gfpgan(tmp_path / "plain.onnx"))
    assert weighted.has_fidelity and not plain.has_fidelity
    # Fed 0.5, the stand-in scales its output by 1 − 0.2·0.5 = 0.9.
    crop = np.full((512, 512, 3), 255, np.uint8)
    value = weighted.restore(crop)[256, 256, 0]
    assert value == round((0.9 * 1.0 + 1) / 2 * 255)
    assert value != plain.restore(crop)[256, 256, 0]
    assert changed(weighted.enhance(t1, FACE, blend=0.8), t1).any()


def test_a_model_of_the_wrong_kind_is_a_clear_error(tmp_path, t1: np.ndarray) -> None:
    with pytest.raises(ModelUnavailable, match=r"gfpgan_1\.4 \(family gfpgan\) has inputs"):
        enhancer(make_inswapper(tmp_path / "not_gfpgan.onnx"))
    with pytest.raises(ModelUnavailable, match="does not exist"):
        enhancer(tmp_path / "absent.onnx")
    model = enhancer(make_gfpgan(tmp_path / "g.onnx"))
    bad = Face(FACE.box, 0.9, np.zeros((4, 2), np.float32))
    with pytest.raises(InvalidInput, match="landmarks"):
        model.enhance(t1, bad, blend=0.5)


def test_the_old_entry_point_runs_the_same_enhancer(t1: np.ndarray, gfpgan_file) -> None:
    from engine.enhancer import GfpganEnhancer

    old = GfpganEnhancer(SessionCache("cpu"), gfpgan_file)
    assert (old.name, old.size, old.has_weight) == ("gfpgan_1.4", 512, False)
    result = old.enhance(t1, FACE, 0.8)  # blend positional, as engine.pipeline calls it
    assert np.array_equal(result, enhancer(gfpgan_file).enhance(t1, FACE, blend=0.8))
    assert changed(result, t1).any()
