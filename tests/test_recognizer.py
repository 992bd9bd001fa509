"""ArcFace recognizer on stand-in ONNX files, faces found by the embedded MTCNN.

The stand-ins have the real models' interface; the comparison with
insightface's ``ArcFaceONNX.get`` on the same file and landmarks checks the
alignment, colour order, normalisation and layout.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from engine.detectors.mtcnn import MtcnnDetector
from engine.errors import InvalidInput, ModelUnavailable
from engine.faces import Face
from engine.recognizer import ArcFaceRecognizer
from tests.standins.arcface import make_arcface
from tests.standins.scrfd import make_scrfd


@pytest.fixture(scope="module")
def faces(sessions, t1) -> list[Face]:
    found = MtcnnDetector(sessions).detect(t1)
    assert len(found) == 6
    return found


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("arcface")


@pytest.fixture(scope="module")
def recognizer(sessions, model_dir) -> ArcFaceRecognizer:
    return ArcFaceRecognizer(sessions, make_arcface(model_dir / "arcface.onnx"))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_standin_has_the_real_interface(model_dir):
    path = make_arcface(model_dir / "interface.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("input", "tensor(float)", [1, 3, 112, 112])
    assert out.shape == [1, 512]
    assert path.stat().st_size < 1_000_000


def test_embedding_is_raw_512_float32(recognizer, t1, faces):
    embedding = recognizer.embed(t1, faces[0])
    assert embedding.shape == (512,) and embedding.dtype == np.float32
    assert np.all(np.isfinite(embedding))
    assert abs(float(np.linalg.norm(embedding)) - 1.0) > 0.1  # not normalised
    assert recognizer.mean == 127.5 and recognizer.std == 127.5
    assert not recognizer.dynamic_batch


def test_same_face_gives_the_same_embedding(recognizer, t1, faces):
    first = recognizer.embed(t1, faces[2])
    np.testing.assert_array_equal(recognizer.embed(t1.copy(), faces[2]), first)
    # The same face in a shifted frame: the aligned crop and embedding barely change.
    dx, dy = 37, 23
    moved = cv2.copyMakeBorder(t1, dy, 0, dx, 0, cv2.BORDER_REFLECT)
    shifted = Face(faces[2].box + [dx, dy, dx, dy], faces[2].score, faces[2].landmarks + [dx, dy])
    again = recognizer.embed(moved, shifted)
    np.testing.assert_allclose(again, first, atol=1e-3 * float(np.abs(first).max()))


def test_different_faces_give_different_embeddings(recognizer, t1, faces):
    embeddings = [recognizer.embed(t1, face) for face in faces]
    for i in range(len(faces)):
        for j in range(i + 1, len(faces)):
            assert not np.allclose(embeddings[i], embeddings[j], rtol=0.05, atol=0.05)
            assert cosine(embeddings[i], embeddings[j]) < 0.95


@pytest.mark.parametrize("batch", [1, None])
def test_embed_many_equals_one_by_one(sessions, model_dir, t1, faces, batch):
    recognizer = ArcFaceRecognizer(
        sessions, make_arcface(model_dir / f"b{batch}.onnx", batch=batch)
    )
    assert recognizer.dynamic_batch is (batch is None)
    many = recognizer.embed_many(t1, faces)
    assert many.shape == (6, 512) and many.dtype == np.float32
    single = np.stack([recognizer.embed(t1, face) for face in faces])
    np.testing.assert_allclose(many, single, rtol=1e-5, atol=1e-5)
    assert recognizer.embed_many(t1, []).shape == (0, 512)


@pytest.mark.parametrize(
    ("options", "mean"),
    [({}, 127.5), ({"batch": None}, 127.5), ({"mxnet": True}, 0.0)],
)
def test_matches_insightface_arcface(sessions, model_dir, t1, faces, options, mean):
    """Same embedding as insightface's ArcFaceONNX.get on the same file and landmarks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    name = "_".join(f"{k}{v}" for k, v in options.items()) or "default"
    path = make_arcface(model_dir / f"ref_{name}.onnx", **options)
    ours = ArcFaceRecognizer(sessions, path)
    assert ours.mean == mean
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = ArcFaceONNX(str(path), session=session)
    assert reference.input_mean == mean
    for face in faces:

        class Detected:  # insightface reads the landmarks from .kps
            kps = face.landmarks.astype(np.float32)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            expected = reference.get(t1, Detected())
        got = ours.embed(t1, face)
        np.testing.assert_allclose(got, expected, atol=1e-3 * float(np.abs(expected).max()))


def test_mxnet_export_is_fed_raw_pixels(sessions, model_dir, t1, faces):
    """An MXNet-style graph normalises itself; fed raw pixels it equals the plain model."""
    plain = ArcFaceRecognizer(sessions, make_arcface(model_dir / "plain.onnx"))
    mxnet = ArcFaceRecognizer(sessions, make_arcface(model_dir / "mx.onnx", mxnet=True))
    np.testing.assert_allclose(
        mxnet.embed(t1, faces[0]), plain.embed(t1, faces[0]), rtol=1e-4, atol=1e-4
    )


def test_bad_faces_and_models_are_clear_errors(sessions, recognizer, model_dir, t1, faces):
    broken = Face(faces[0].box, faces[0].score, np.zeros((4, 2), np.float32))
    with pytest.raises(InvalidInput, match="five"):
        recognizer.embed(t1, broken)
    with pytest.raises(InvalidInput, match="uint8"):
        recognizer.embed(t1.astype(np.float32), faces[0])
    with pytest.raises(ModelUnavailable, match="not an ArcFace"):
        ArcFaceRecognizer(sessions, make_scrfd(model_dir / "scrfd.onnx"))
    with pytest.raises(ModelUnavailable, match="does not exist"):
        ArcFaceRecognizer(sessions, model_dir / "absent.onnx")
