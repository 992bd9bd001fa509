"""The face pipeline: model resolution, face selection, identity averaging, temporal reuse."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidOptions, ModelUnavailable, NoFaceFound
from engine.face_map import left_to_right
from engine.imageio import load_image
from engine.jobrun import JobRequest, run_job
from engine.models.manager import ModelManager
from engine.options import SwapOptions
from engine.pipeline import FaceEngine
from tests.assets import T1, TOM_HANKS
from tests.standins.registry import install_standins


@pytest.fixture(scope="module")
def tom():
    return load_image(TOM_HANKS)


@pytest.fixture(scope="module")
def standin_engine(tmp_path_factory):
    models = install_standins(
        tmp_path_factory.mktemp("models"), ("arcface_w600k_r50", "inswapper_128", "gfpgan_1.4")
    )
    return FaceEngine(models, "cpu")


def changed_boxes(before: np.ndarray, after: np.ndarray, faces) -> list[bool]:
    """For each face box: did pixels inside it change?"""
    result = []
    for face in faces:
        x1, y1, x2, y2 = face.box.astype(int)
        region = (slice(max(y1, 0), y2), slice(max(x1, 0), x2))
        result.append(bool(np.abs(after[region].astype(int) - before[region]).max() > 10))
    return result


def test_fresh_install_resolves_to_embedded_models(tmp_path):
    engine = FaceEngine(ModelManager(tmp_path / "models"))
    resolved = engine.resolve(SwapOptions())
    assert (resolved.detector, resolved.swapper, resolved.recognizer) == ("mtcnn", "classic", None)


def test_installed_standard_models_become_the_default(standin_engine):
    resolved = standin_engine.resolve(SwapOptions())
    assert resolved.swapper == "inswapper_128"
    assert resolved.recognizer == "arcface_w600k_r50"


def test_reference_selector_without_recognizer_is_a_clear_error(tmp_path):
    engine = FaceEngine(ModelManager(tmp_path / "models"))
    with pytest.raises(ModelUnavailable, match="arcface_w600k_r50"):
        engine.resolve(SwapOptions(selector="reference", reference_face_index=0))


def test_one_swaps_only_the_largest_face(t1, tom, tmp_path):
    engine = FaceEngine(ModelManager(tmp_path / "models"))
    faces = engine.detect(t1)
    result = engine.prepare([tom], SwapOptions(selector="one")).process(t1)
    assert result.faces_swapped == 1
    assert changed_boxes(t1, result.image, faces) == [True] + [False] * (len(faces) - 1)


def test_reference_face_index_swaps_that_face_only(standin_engine, t1, tom):
    """The index counts the target's faces left to right (as face_map's face entries)."""
    faces = left_to_right(standin_engine.detect(t1))
    options = SwapOptions(
        selector="reference", reference_face_index=2, reference_distance=0.05, swapper="classic"
    )
    swapper = standin_engine.prepare([tom], options, reference_target=t1)
    result = swapper.process(t1)
    assert result.faces_swapped == 1
    assert changed_boxes(t1, result.image, faces) == [i == 2 for i in range(len(faces))]


def test_reference_index_out_of_range(standin_engine, t1, tom):
    options = SwapOptions(selector="reference", reference_face_index=40)
    with pytest.raises(InvalidOptions, match="out of range"):
        standin_engine.prepare([tom], options, reference_target=t1)


def test_several_sources_average_into_one_identity(standin_engine, t1, tom):
    big = np.ascontiguousarray(t1[60:360, 180:460])  # one face of t1.jpg, well framed
    single_a = standin_engine.source_identity([tom], SwapOptions(), needs_embedding=True)
    single_b = standin_engine.source_identity([big], SwapOptions(), needs_embedding=True)
    both = standin_engine.source_identity([tom, big], SwapOptions(), needs_embedding=True)
    np.testing.assert_allclose(
        both.embedding, (single_a.embedding + single_b.embedding) / 2, rtol=1e-5, atol=1e-5
    )


def test_source_without_face_names_which_source(standin_engine, tom):
    wall = np.full((160, 160, 3), 128, np.uint8)
    with pytest.raises(NoFaceFound, match="source image 2"):
        standin_engine.source_identity([tom, wall], SwapOptions(), needs_embedding=False)


def test_standard_models_run_through_run_job(standin_engine, tmp_path):
    out = tmp_path / "out.jpg"
    request = JobRequest(
        sources=[TOM_HANKS],
        target=T1,
        output=out,
        options={"selector": "many", "enhancer": "gfpgan_1.4"},
    )
    result = run_job(standin_engine, request)
    assert (result.swapper, result.kind) == ("inswapper_128", "image")
    assert result.faces_swapped == 6
    assert load_image(out).shape == load_image(T1).shape


def test_detect_every_reuses_faces_between_detections(t1, tom, tmp_path):
    engine = FaceEngine(ModelManager(tmp_path / "models"))
    swapper = engine.prepare([tom], SwapOptions(detect_every=3))
    first = swapper.faces(t1)
    assert swapper.faces(t1) is first
    assert swapper.faces(t1) is first
    assert swapper.faces(t1) is not first


def test_temporal_smoothing_blends_landmarks_with_the_previous_frame(t1, tom, tmp_path):
    engine = FaceEngine(ModelManager(tmp_path / "models"))
    frame = np.ascontiguousarray(t1[60:360, 180:460])  # one face of t1.jpg
    swapper = engine.prepare([tom], SwapOptions(temporal_smoothing=0.5))
    first = swapper.faces(frame)[0]
    shifted = np.ascontiguousarray(np.roll(frame, 4, axis=1))
    second = swapper.faces(shifted)[0]
    raw = engine.detect(shifted)[0]
    expected = 0.5 * first.landmarks + 0.5 * raw.landmarks
    np.testing.assert_allclose(second.landmarks, expected, atol=1e-3)
