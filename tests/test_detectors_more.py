"""FaceFusion's other detectors (retinaface, yolo_face, yunet), ``many`` and angles.

Real ONNX Runtime sessions on generated stand-ins with the families' real tensor
layouts (``tests/standins/detectors.py``): they score a grid cell by how much
bluer its top half is than its bottom half, and decode every face to a known box
and landmarks around that cell. So a face drawn at a known place must come back
at exactly that place after FaceFusion's pre-processing (downscale only, top-left
paste, no channel swap, the family's normalisation) and the scale back. Angles
are also checked with the real scrfd_2.5g on insightface's t1.jpg when present.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from engine.detectors.build import build_detector, build_many
from engine.detectors.many import ManyDetector
from engine.detectors.mtcnn import MtcnnDetector
from engine.detectors.retinaface import RetinafaceDetector
from engine.detectors.rotated import RotatedDetector
from engine.detectors.scrfd import ScrfdDetector
from engine.detectors.yolo_face import YoloFaceDetector
from engine.detectors.yunet import YunetDetector
from engine.errors import InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.models.registry import REGISTRY
from tests.assets import SCRFD_2_5G
from tests.standins.arcface import make_arcface
from tests.standins.detectors import (
    BOX,
    KEYPOINTS,
    draw_face,
    make_retinaface,
    make_yolo_face,
    make_yunet,
)
from tests.standins.scrfd import make_scrfd

GREY = 90  # neutral for the stand-ins: equal blue and red


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    model: str
    make: object
    detector: type
    stride: int  # the stand-in's face stride
    weak_blue: int  # a face that scores below 0.5 (but above 0.25)

    def score(self, blue: int) -> float:
        """The stand-in's score for a face of this blue, as the family's input sees it
        (MODELS-2.md §10 normalisation): retinaface (x − 127.5) / 128, yolo x / 255,
        yunet raw 0–255 with FaceFusion's score cls · obj (obj 0.8)."""
        if self.name == "retinaface":
            return sigmoid(4 * (blue / 128 - 1))
        if self.name == "yolo_face":
            return blue / 255
        return (blue / 255) * 0.8


FAMILIES = {
    "retinaface": Family(
        "retinaface", "retinaface_10g", make_retinaface, RetinafaceDetector, 16, 96
    ),
    "yolo_face": Family("yolo_face", "yoloface_8n", make_yolo_face, YoloFaceDetector, 32, 102),
    # cls 0.6 · obj 0.8 = 0.48 is dropped at 0.5; OpenCV's √(cls·obj) = 0.69 would keep it.
    "yunet": Family("yunet", "yunet_2023_mar", make_yunet, YunetDetector, 16, 153),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("detectors")
    return {name: family.make(folder / f"{family.model}.onnx") for name, family in FAMILIES.items()}


def grey(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), GREY, np.uint8)


def face_box(x: float, y: float, side: float) -> np.ndarray:
    return np.array([x, y, x, y]) + np.array(BOX) * side


def face_points(x: float, y: float, side: float) -> np.ndarray:
    return np.array([x, y]) + KEYPOINTS * side


def at(faces: list[Face], x: float, y: float, side: float) -> Face:
    """The face whose box is the expected box of a face drawn at (x, y)."""
    expected = face_box(x, y, side)
    matches = [face for face in faces if np.abs(face.box - expected).max() < 1e-3]
    assert len(matches) == 1, ([face.box for face in faces], expected)
    return matches[0]


def assert_face(face: Face, x: float, y: float, side: float, score: float) -> None:
    np.testing.assert_allclose(face.box, face_box(x, y, side), atol=1e-3)
    np.testing.assert_allclose(face.landmarks, face_points(x, y, side), atol=1e-3)
    assert face.score == pytest.approx(score, rel=1e-5)
    assert face.box.dtype == np.float32 and face.landmarks.shape == (5, 2)


# -- the stand-ins have the real layouts ----------------------------------------------------


def test_standins_have_the_families_layouts(models):
    def run(name):
        session = ort.InferenceSession(str(models[name]), providers=["CPUExecutionProvider"])
        (inp,) = session.get_inputs()
        assert (inp.name, inp.type, inp.shape[:2]) == ("input", "tensor(float)", [1, 3])
        outputs = session.run(None, {"input": np.zeros((1, 3, 640, 640), np.float32)})
        return [o.name for o in session.get_outputs()], [o.shape for o in outputs]

    names, shapes = run("yolo_face")
    assert (names, shapes) == (["output0"], [(1, 20, 8400)])
    names, shapes = run("retinaface")
    assert names == [str(i) for i in range(9)]
    assert shapes == [(n, w) for w in (1, 4, 10) for n in (12800, 3200, 800)]
    names, shapes = run("yunet")
    assert names == [f"{h}_{s}" for h in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)]
    assert shapes == [(1, n, w) for w in (1, 1, 4, 10) for n in (6400, 1600, 400)]


# -- each decoder places faces exactly ------------------------------------------------------


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize(
    ("width", "height", "factor"),
    [(600, 400, 1), (1280, 960, 2)],  # fits 640 as is; downscaled by 2 to 640x480
)
def test_decoder_finds_faces_at_their_frame_coordinates(
    sessions, models, name, width, height, factor
):
    family = FAMILIES[name]
    detector = family.detector(sessions, models[name])
    side = family.stride * factor
    image = grey(width, height)
    strong, weak = (2 * side, 3 * side), (10 * side, 5 * side)
    draw_face(image, *strong, side, 255)
    draw_face(image, *weak, side, family.weak_blue)

    faces = detector.detect(image, 0.5)
    assert len(faces) == 1
    assert_face(faces[0], *strong, side, family.score(255))

    faces = detector.detect(image, 0.25)
    assert len(faces) == 2
    assert_face(at(faces, *strong, side), *strong, side, family.score(255))
    assert_face(at(faces, *weak, side), *weak, side, family.score(family.weak_blue))
    assert family.score(family.weak_blue) < 0.5


@pytest.mark.parametrize("name", list(FAMILIES))
def test_frames_are_fed_bgr_without_a_channel_swap(sessions, models, name):
    """A red face is what a blue one becomes if the frame were swapped to RGB."""
    family = FAMILIES[name]
    side = family.stride
    image = grey(600, 400)
    draw_face(image, 64, 64, side)
    red = draw_face(np.zeros((side, side, 3), np.uint8), 0, 0, side)[:, :, ::-1]
    image[256 : 256 + side, 320 : 320 + side] = red
    faces = family.detector(sessions, models[name]).detect(image, 0.1)
    assert len(faces) == 1
    assert_face(faces[0], 64, 64, side, family.score(255))


@pytest.mark.parametrize(("size", "factor"), [(320, 4), (160, 8)])
def test_retinaface_smaller_detector_sizes(sessions, models, size, factor):
    detector = RetinafaceDetector(sessions, models["retinaface"], size=size)
    side = 16 * factor
    image = grey(1280, 960)  # 1280x960 → 320x240 or 160x120 inside the square input
    draw_face(image, 2 * side, side, side)
    faces = detector.detect(image)
    assert len(faces) == 1
    assert_face(faces[0], 2 * side, side, side, sigmoid(4 * (255 / 128 - 1)))


def test_overlapping_candidates_are_suppressed(sessions, tmp_path):
    """Boxes three cells wide, faces one cell apart: IoU 0.5 > 0.4, the better one stays."""
    path = make_retinaface(tmp_path / "retinaface_10g.onnx", box=(-1.0, -1.0, 2.0, 2.0))
    image = grey(600, 400)
    draw_face(image, 160, 160, 16, 200)
    draw_face(image, 176, 160, 16, 255)
    draw_face(image, 320, 160, 16, 255)  # far away: kept
    faces = RetinafaceDetector(sessions, path).detect(image)
    assert sorted(face.box[0] + 16 for face in faces) == [176, 320]


# -- sizes and files ------------------------------------------------------------------------


def test_detector_sizes_are_the_families_choices(sessions, models):
    for size in (160, 320, 480, 512, 640):
        assert RetinafaceDetector(sessions, models["retinaface"], size=size).size == size
    with pytest.raises(InvalidOptions, match=r"300 .*retinaface_10g.*160, 320, 480, 512, 640"):
        RetinafaceDetector(sessions, models["retinaface"], size=300)
    with pytest.raises(InvalidOptions, match=r"320 .*yoloface_8n.*choose one of 640"):
        YoloFaceDetector(sessions, models["yolo_face"], size=320)
    with pytest.raises(InvalidOptions, match=r"512 .*yunet_2023_mar.*choose one of 640"):
        YunetDetector(sessions, models["yunet"], size=512)
    with pytest.raises(InvalidOptions, match="'640'"):
        YunetDetector(sessions, models["yunet"], size="640")


def test_a_fixed_input_refuses_another_size(sessions, tmp_path):
    path = make_retinaface(tmp_path / "retinaface_10g.onnx", input_size=640)
    assert RetinafaceDetector(sessions, path).size == 640
    with pytest.raises(InvalidOptions, match=r"retinaface_10g .*fixed input \[1, 3, 640, 640\]"):
        RetinafaceDetector(sessions, path, size=320)


def test_wrong_tensors_are_refused_naming_model_and_tensor(sessions, models, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    cases = [
        (RetinafaceDetector, make_retinaface(broken / "retinaface_10g.onnx", kps_width=8),
         r"retinaface_10g .*output '6' has width 8, expected 10"),
        (YoloFaceDetector, make_yolo_face(broken / "yoloface_8n.onnx", rows=16),
         r"yoloface_8n .*output 'output0' has shape \[1, 16, 8400\], expected \[1, 20, N\]"),
        (YunetDetector, make_yunet(broken / "yunet_2023_mar.onnx", obj_width=2),
         r"yunet_2023_mar .*output 'obj_8' has shape \[1, 6400, 2\], expected \[1, 6400, 1\]"),
        (RetinafaceDetector, models["yolo_face"], r"yoloface_8n .*1 output.*'output0'"),
        (YunetDetector, models["retinaface"], r"retinaface_10g .*9 output.*reads 12"),
        (YoloFaceDetector, make_arcface(broken / "arcface.onnx"),
         r"arcface .*output 'output' has shape \[1, 512\]"),
    ]  # fmt: skip
    for detector, path, message in cases:
        with pytest.raises(ModelUnavailable, match=message):
            detector(sessions, path)
    with pytest.raises(ModelUnavailable, match="does not exist"):
        YunetDetector(sessions, tmp_path / "absent.onnx")


# -- the factory ----------------------------------------------------------------------------


def test_factory_builds_each_family(sessions, models, tmp_path):
    kinds = {
        "retinaface_10g": (RetinafaceDetector, models["retinaface"]),
        "yoloface_8n": (YoloFaceDetector, models["yolo_face"]),
        "yunet_2023_mar": (YunetDetector, models["yunet"]),
    }
    for name, (kind, path) in kinds.items():
        detector = build_detector(sessions, REGISTRY[name], path)
        assert type(detector) is kind
        assert (detector.size, detector.model_name) == (640, name)
    retinaface = build_detector(sessions, REGISTRY["retinaface_10g"], models["retinaface"], 320)
    assert retinaface.size == 320
    image = grey(1280, 960)
    draw_face(image, 128, 64, 64)
    assert_face(retinaface.detect(image)[0], 128, 64, 64, sigmoid(4 * (255 / 128 - 1)))

    scrfd_path = make_scrfd(tmp_path / "scrfd_2.5g.onnx")
    scrfd = build_detector(sessions, REGISTRY["scrfd_2.5g"], scrfd_path, 480)
    assert isinstance(scrfd, ScrfdDetector) and scrfd.input_size == (480, 480)
    assert isinstance(build_detector(sessions, REGISTRY["mtcnn"], None, 640), MtcnnDetector)


def test_factory_refuses_bad_choices(sessions, models, tmp_path):
    scrfd_path = make_scrfd(tmp_path / "scrfd_2.5g.onnx")
    with pytest.raises(InvalidOptions, match=r"100 .*scrfd_2.5g.*160, 320, 480, 512, 640"):
        build_detector(sessions, REGISTRY["scrfd_2.5g"], scrfd_path, 100)
    with pytest.raises(InvalidOptions, match="yoloface_8n"):
        build_detector(sessions, REGISTRY["yoloface_8n"], models["yolo_face"], 320)
    with pytest.raises(InvalidOptions, match="arcface_w600k_r50 is a recognizer"):
        build_detector(sessions, REGISTRY["arcface_w600k_r50"], models["yolo_face"])
    unknown = dataclasses.replace(REGISTRY["yoloface_8n"], family="dlib")
    with pytest.raises(InvalidOptions, match="'dlib'"):
        build_detector(sessions, unknown, models["yolo_face"])
    with pytest.raises(ModelUnavailable, match=r"scrfd_2.5g .*1 output"):
        build_detector(sessions, REGISTRY["scrfd_2.5g"], models["yolo_face"])
    members = [(REGISTRY["retinaface_10g"], models["retinaface"])]
    with pytest.raises(InvalidOptions, match="many"):
        build_many(sessions, members, 320)
    assert isinstance(build_many(sessions, members), ManyDetector)


# -- many -----------------------------------------------------------------------------------

OTHER_BOX = (-0.5, -0.75, 1.5, 2.0)
OTHER_POINTS = KEYPOINTS + np.float32(0.05)


def test_many_merges_duplicates_keeping_the_better_face(sessions, models, tmp_path):
    yolo = YoloFaceDetector(
        sessions,
        make_yolo_face(
            tmp_path / "yolo16.onnx", face_stride=16, box=OTHER_BOX, keypoints=OTHER_POINTS
        ),
    )
    retinaface = RetinafaceDetector(sessions, models["retinaface"])
    many = ManyDetector([retinaface, yolo])
    image = grey(600, 400)
    draw_face(image, 64, 64, 16, 255)  # yolo 255/255 = 1.0 beats retinaface 0.98
    draw_face(image, 320, 192, 16, 200)  # retinaface 0.90 beats yolo 200/255 = 0.78
    assert len(retinaface.detect(image)) == 2 and len(yolo.detect(image)) == 2

    faces = many.detect(image)
    assert len(faces) == 2
    first = next(face for face in faces if face.box[0] < 200)
    np.testing.assert_allclose(first.box, [64, 64, 64, 64] + np.array(OTHER_BOX) * 16, atol=1e-3)
    np.testing.assert_allclose(first.landmarks, [64, 64] + OTHER_POINTS * 16, atol=1e-3)
    assert first.score == pytest.approx(1.0, rel=1e-5)
    second = next(face for face in faces if face.box[0] > 200)
    assert_face(second, 320, 192, 16, sigmoid(4 * (200 / 128 - 1)))


def test_many_needs_detectors():
    with pytest.raises(InvalidOptions, match="at least one"):
        ManyDetector([])


# -- angles ---------------------------------------------------------------------------------


def turned_face(angle: int, x: float, y: float, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Expected box and landmarks of a face drawn at (x, y) turned clockwise by ``angle``:
    the upright face's point (u, v), as fractions of its cell, lands at turn(u, v)."""
    turn = {
        0: lambda u, v: (u, v),
        90: lambda u, v: (1 - v, u),
        180: lambda u, v: (1 - u, 1 - v),
        270: lambda u, v: (v, 1 - u),
    }[angle]

    def place(points):
        return np.array([[x + turn(u, v)[0] * side, y + turn(u, v)[1] * side] for u, v in points])

    x1, y1, x2, y2 = BOX
    corners = place([(x1, y1), (x2, y1), (x2, y2), (x1, y2)])
    return np.concatenate([corners.min(axis=0), corners.max(axis=0)]), place(KEYPOINTS)


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_a_turned_face_is_found_at_its_angle_and_mapped_back(sessions, models, angle):
    detector = RetinafaceDetector(sessions, models["retinaface"])
    image = grey(640, 480)
    draw_face(image, 320, 224, 16, turn=angle)
    assert detector.detect(image, 0.1) == []
    assert RotatedDetector(detector, ()).detect(image, 0.1) == []

    for angles in [(angle,), (90, 180, 270)]:
        faces = RotatedDetector(detector, angles).detect(image)
        assert len(faces) == 1
        box, points = turned_face(angle, 320, 224, 16)
        np.testing.assert_allclose(faces[0].box, box, atol=1e-3)
        # Landmarks are mapped back, not reordered: the upright face's template order.
        np.testing.assert_allclose(faces[0].landmarks, points, atol=1e-3)
        assert faces[0].score == pytest.approx(sigmoid(4 * (255 / 128 - 1)), rel=1e-5)


def test_faces_at_every_angle_are_each_found_once(sessions, models):
    detector = RotatedDetector(RetinafaceDetector(sessions, models["retinaface"]), (90, 180, 270))
    image = grey(640, 480)
    places = {0: (64, 64), 90: (320, 64), 180: (64, 320), 270: (480, 320)}
    for angle, (x, y) in places.items():
        draw_face(image, x, y, 16, turn=angle)
    faces = detector.detect(image)
    assert len(faces) == 4
    for angle, (x, y) in places.items():
        box, points = turned_face(angle, x, y, 16)
        (face,) = [f for f in faces if np.abs(f.box - box).max() < 1e-3]
        np.testing.assert_allclose(face.landmarks, points, atol=1e-3)


def test_a_face_seen_at_two_angles_is_reported_once(sessions, models):
    """Blue only in the top-left quarter: upright enough at 0° and at 270°."""
    detector = RetinafaceDetector(sessions, models["retinaface"])
    image = grey(640, 480)
    image[160:168, 160:168] = (255, 0, 0)
    image[168:176, 160:176] = 0
    image[160:168, 168:176] = 0
    candidates = [turned_face(angle, 160, 160, 16)[0] for angle in (0, 270)]
    assert len(detector.detect(image, 0.3)) == 1
    rotated = RotatedDetector(detector, (270,))
    assert rotated.iou_threshold == 0.3  # FaceFusion's NMS IoU for two angles
    faces = rotated.detect(image, 0.3)
    assert len(faces) == 1
    assert any(np.abs(faces[0].box - box).max() < 1e-3 for box in candidates)


def test_angles_are_validated():
    detector = ManyDetector([object()])  # never run
    assert RotatedDetector(detector, [270, 0, 90, 90]).angles == (0, 90, 270)
    assert RotatedDetector(detector, ["180"]).angles == (0, 180)
    assert [RotatedDetector(detector, a).iou_threshold for a in [(), (90,), (90, 180)]] == [
        0.4,
        0.3,
        0.2,
    ]
    assert RotatedDetector(detector, (90, 180, 270)).iou_threshold == 0.1
    for bad in [(45,), (90.5,), (True,), (-90,), 90]:
        with pytest.raises(InvalidOptions, match="angles"):
            RotatedDetector(detector, bad)


@pytest.mark.skipif(not SCRFD_2_5G.is_file(), reason=f"real SCRFD weights not at {SCRFD_2_5G}")
def test_real_scrfd_finds_sideways_faces_with_angles(sessions, t1):
    """t1.jpg turned clockwise: plain SCRFD misses faces; at 90° it finds all six, where
    the upright photo's faces land in the turned frame."""
    scrfd = ScrfdDetector(sessions, SCRFD_2_5G)
    upright = scrfd.detect(t1)
    assert len(upright) == 6
    sideways = cv2.rotate(t1, cv2.ROTATE_90_CLOCKWISE)
    assert len(scrfd.detect(sideways)) < 6
    faces = RotatedDetector(scrfd, (90, 180, 270)).detect(sideways)
    assert len(faces) == 6
    height = t1.shape[0]
    for face in upright:  # turning clockwise maps (x, y) to (height − y, x)
        x1, y1, x2, y2 = face.box
        box = np.array([height - y2, x1, height - y1, x2])
        match = min(faces, key=lambda f: np.abs(f.box - box).max())
        assert np.abs(match.box - box).max() < 1.0
        points = np.stack([height - face.landmarks[:, 1], face.landmarks[:, 0]], axis=1)
        assert np.abs(match.landmarks - points).max() < 1.0
        assert match.score == pytest.approx(face.score, abs=0.01)
