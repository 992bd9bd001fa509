"""Face orders, the fairface classifier and the age/gender filters (MODELS-2.md §11).

The faces are MTCNN's detections on insightface's t1.jpg; the classifier is a stand-in
with fairface's real tensors whose answers depend on the crop (``fairface_answers``).
Expected orders come from the boxes, expected classes from a crop made here with
§4's arcface_112_v2 numbers and ImageNet's mean and std.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from engine.align import warp_crop
from engine.classifier import FairFace
from engine.detectors.mtcnn import MtcnnDetector
from engine.errors import InvalidOptions, ModelUnavailable
from engine.face_order import (
    FACE_ORDERS,
    filter_faces,
    left_to_right,
    order_faces,
    parse_age_range,
    parse_genders,
)
from engine.faces import Face
from engine.models.registry import REGISTRY
from tests.standins.landmarkers import fairface_answers, make_fairface

# §4: arcface_112_v2 normalised; fairface crops it at 224.
ARCFACE_112_V2 = np.array(
    [
        [0.34191607, 0.46157411],
        [0.65653393, 0.45983393],
        [0.50022500, 0.64050536],
        [0.37097589, 0.82469196],
        [0.63151696, 0.82325089],
    ]
)
SIZE = 224
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# §11: age classes 0–8 are FairFace's bins 0–2, 3–9, …, 60–69, 70+; (low, high exclusive).
AGE_BINS = [(0, 3), (3, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60), (60, 70), (70, 101)]
GENDER_OF_ID = {0: "male", 1: "female"}
FILE_NUMBERS = itertools.count()


@pytest.fixture(scope="module")
def faces(t1, sessions) -> list[Face]:
    found = MtcnnDetector(sessions).detect(t1)
    assert len(found) == 6
    return found


def fairface(tmp_path, sessions, **kwargs) -> FairFace:
    path = make_fairface(tmp_path / f"fairface_{next(FILE_NUMBERS)}.onnx", **kwargs)
    return FairFace(sessions, REGISTRY["fairface"], path)


# -- orders -----------------------------------------------------------------------------------


def area(face: Face) -> float:
    x1, y1, x2, y2 = face.box
    return float((x2 - x1) * (y2 - y1))


EXPECTED_KEYS = {
    "large-small": lambda f: -area(f),
    "small-large": area,
    "left-right": lambda f: float(f.box[0] + f.box[2]) / 2,
    "right-left": lambda f: -float(f.box[0] + f.box[2]) / 2,
    "top-bottom": lambda f: float(f.box[1] + f.box[3]) / 2,
    "bottom-top": lambda f: -float(f.box[1] + f.box[3]) / 2,
    "best-worst": lambda f: -f.score,
    "worst-best": lambda f: f.score,
}


@pytest.mark.parametrize("order", list(EXPECTED_KEYS))
def test_every_order_sorts_t1s_faces_by_its_measure(faces, order):
    shuffled = [faces[i] for i in (3, 0, 5, 1, 4, 2)]
    ordered = order_faces(shuffled, order)
    keys = [EXPECTED_KEYS[order](face) for face in ordered]
    assert keys == sorted(keys)
    assert len(set(keys)) == 6  # t1's faces differ in every measure: one right answer
    assert ordered[0] is min(faces, key=EXPECTED_KEYS[order])


def test_the_orders_are_exactly_facefusions_eight():
    assert set(FACE_ORDERS) == set(EXPECTED_KEYS) and len(FACE_ORDERS) == 8


def test_faces_are_numbered_left_to_right(faces):
    numbered = left_to_right(faces[::-1])
    centres = [float(face.box[0] + face.box[2]) / 2 for face in numbered]
    assert centres == sorted(centres)
    assert numbered[0].box[0] < 100 and numbered[-1].box[0] > 1100


def test_unknown_order_is_a_clear_error(faces):
    with pytest.raises(InvalidOptions, match="face_order must be one of large-small"):
        order_faces(faces, "biggest")


# -- option parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected", [("20-40", (20, 40)), (" 5 - 5 ", (5, 5)), ("0-100", (0, 100))]
)
def test_age_ranges_parse(text, expected):
    assert parse_age_range(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("40-20", "MIN must not exceed MAX"),
        ("20-101", "between 0 and 100"),
        ("-5-10", "MIN-MAX"),
        ("20", "MIN-MAX"),
        ("20-", "MIN-MAX"),
        ("twenty-forty", "MIN-MAX"),
        ("20.5-30", "MIN-MAX"),
    ],
)
def test_bad_age_ranges_are_clear_errors(text, message):
    with pytest.raises(InvalidOptions, match=message):
        parse_age_range(text)


def test_genders_parse():
    assert parse_genders("female") == {"female"}
    assert parse_genders("Female, male") == {"female", "male"}
    assert parse_genders(["male"]) == {"male"}
    with pytest.raises(InvalidOptions, match="empty"):
        parse_genders("")
    with pytest.raises(InvalidOptions, match="'other'"):
        parse_genders("female,other")


# -- the classifier ---------------------------------------------------------------------------


def blob_here(frame: np.ndarray, face: Face) -> np.ndarray:
    """fairface's input made here: least-squares similarity onto arcface_112_v2 × 224,
    RGB, /255, ImageNet mean and std, NCHW."""
    rows, values = [], []
    for (x, y), (u, v) in zip(
        face.landmarks.astype(np.float64), ARCFACE_112_V2 * SIZE, strict=True
    ):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        values += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(values), rcond=None)[0]
    crop = warp_crop(frame, np.array([[a, -b, tx], [b, a, ty]]), SIZE)
    rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return ((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None]


@pytest.mark.parametrize("logits", [False, True], ids=["class-ids", "logits"])
def test_fairface_answers_depend_on_each_faces_crop(tmp_path, sessions, t1, faces, logits):
    model = fairface(tmp_path, sessions, logits=logits)
    answers = [model.classify(t1, face) for face in faces]
    for face, answer in zip(faces, answers, strict=True):
        ids = fairface_answers(blob_here(t1, face))
        assert answer == (AGE_BINS[ids["age_id"]], GENDER_OF_ID[ids["gender_id"]])
    assert len(set(answers)) >= 3  # the faces differ, so do the answers


def fairface_test_frame(colour: tuple[int, int, int]) -> tuple[np.ndarray, Face]:
    """A black frame with a disc of ``colour`` where the face's left eye lands at 224."""
    landmarks = (ARCFACE_112_V2 * SIZE * 2 + (150, 100)).astype(np.float32)  # crop scale 1/2
    frame = np.zeros((700, 800, 3), np.uint8)
    eye = landmarks[0]
    cv2.circle(frame, (int(round(eye[0])), int(round(eye[1]))), 14, colour, -1)
    box = np.array([150, 100, 150 + 2 * SIZE, 100 + 2 * SIZE], np.float32)
    return frame, Face(box=box, score=0.99, landmarks=landmarks)


def test_fairface_crop_is_arcface_112_v2_at_224_in_rgb(tmp_path, sessions):
    model = fairface(tmp_path, sessions)
    red, face = fairface_test_frame((0, 0, 255))  # BGR red
    blue, _ = fairface_test_frame((255, 0, 0))
    # The stand-in says female when red beats blue in the window around (76.6, 103.4).
    assert model.classify(red, face)[1] == "female"
    assert model.classify(blue, face)[1] == "male"
    assert model.crop(red, face).shape == (SIZE, SIZE, 3)
    # Another template would put the disc elsewhere: the window would stay black (male).
    shifted = Face(box=face.box, score=0.99, landmarks=face.landmarks + (0, 30))
    assert model.classify(red, shifted)[1] == "male"


@pytest.mark.parametrize("age_id", range(9))
def test_every_age_class_maps_to_its_bin(tmp_path, sessions, age_id):
    # A uniform grey crop: normalised mean m = mean_c((g/255 − mean_c)/std_c); the
    # stand-in's class is floor(4m + 4), so aim g at the middle of the class.
    target = (age_id + 0.5 - 4.0) / 4.0
    grey = 255.0 * (target + np.mean(IMAGENET_MEAN / IMAGENET_STD)) / np.mean(1 / IMAGENET_STD)
    level = int(np.clip(round(grey), 0, 255))
    frame = np.full((700, 800, 3), level, np.uint8)
    _, face = fairface_test_frame((0, 0, 0))
    assert fairface_answers(blob_here(frame, face))["age_id"] == age_id
    age, _ = fairface(tmp_path, sessions).classify(frame, face)
    assert age == AGE_BINS[age_id]


def test_fairface_annotate_sets_age_and_gender_on_new_faces(tmp_path, sessions, t1, faces):
    model = fairface(tmp_path, sessions)
    annotated = model.annotate(t1, faces)
    assert all(face.age is None and face.gender is None for face in faces)
    assert [(f.age, f.gender) for f in annotated] == [model.classify(t1, f) for f in faces]


def test_fairface_refuses_other_layouts(tmp_path, sessions):
    from tests.standins.arcface import make_arcface

    wrong = make_arcface(tmp_path / "arcface.onnx")
    with pytest.raises(ModelUnavailable, match="fairface"):
        FairFace(sessions, REGISTRY["fairface"], wrong)
    good = make_fairface(tmp_path / "ff.onnx")
    with pytest.raises(ModelUnavailable, match="expected fairface"):
        FairFace(sessions, REGISTRY["2dfan4"], good)


# -- filters ----------------------------------------------------------------------------------


def overlaps(age: tuple[int, int], wanted: tuple[int, int]) -> bool:
    """A bin [low, high) holds a year of [MIN, MAX] (both inclusive)."""
    return age[0] <= wanted[1] and wanted[0] < age[1]


def test_filters_pick_the_classified_faces(tmp_path, sessions, t1, faces):
    annotated = fairface(tmp_path, sessions).annotate(t1, faces)
    ages = sorted({face.age for face in annotated})
    assert len(ages) >= 2
    for wanted in [(0, 100), (ages[0][0], ages[0][0]), (ages[-1][0], ages[-1][1] - 1), (0, 2)]:
        expected = [face for face in annotated if overlaps(face.age, wanted)]
        assert filter_faces(annotated, ages=f"{wanted[0]}-{wanted[1]}") == expected
    for gender in ("female", "male"):
        expected = [face for face in annotated if face.gender == gender]
        assert filter_faces(annotated, genders=gender) == expected
    both = filter_faces(annotated, ages=(ages[0][0], 100), genders="female")
    assert both == [
        f for f in annotated if f.gender == "female" and overlaps(f.age, (ages[0][0], 100))
    ]
    assert filter_faces(annotated) == annotated


def synthetic(age: tuple[int, int], gender: str) -> Face:
    box = np.array([0, 0, 10, 10], np.float32)
    return Face(box=box, score=0.9, landmarks=np.zeros((5, 2), np.float32), age=age, gender=gender)


@pytest.mark.parametrize(
    "wanted, kept",
    [
        ("30-40", False),  # the 20–29 bin holds no 30-year-old
        ("29-29", True),
        ("10-20", True),  # 20 is in the bin
        ("0-19", False),
        ("25-26", True),
    ],
)
def test_the_bin_upper_bound_is_exclusive(wanted, kept):
    face = synthetic((20, 30), "male")
    assert filter_faces([face], ages=wanted) == ([face] if kept else [])


def test_filters_without_classifier_results_say_so(faces):
    with pytest.raises(InvalidOptions, match="face_ages needs the fairface"):
        filter_faces(faces, ages="20-40")
    with pytest.raises(InvalidOptions, match="face_genders needs the fairface"):
        filter_faces(faces, genders="female")
    assert filter_faces(faces) == list(faces)
    with pytest.raises(InvalidOptions, match="face_ages"):
        filter_faces([synthetic((20, 30), "male")], ages="50-40")
