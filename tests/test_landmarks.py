"""68-point landmarkers, fan_68_5 and the choice of landmark set (MODELS-2.md §7).

Stand-in models with the real layouts run in real ONNX Runtime sessions; the faces
are MTCNN's detections on insightface's t1.jpg. Expected values are computed here
from §7's numbers (195, 256, 64, the score ranges) and §4's ffhq_512 template.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import cv2
import numpy as np
import pytest

from engine.align import warp_crop
from engine.detectors.mtcnn import MtcnnDetector
from engine.errors import InvalidInput, InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.landmarks import (
    BestOfLandmarkers,
    Fan68From5,
    Landmarker68,
    annotate_landmarks,
    face_angle,
    five_from_68,
)
from engine.models.registry import REGISTRY
from tests.standins.landmarkers import make_fan_68_5, make_landmarker

# §7: the box's longer side becomes 195 px, centred in a 256² crop; 64-px heatmap units.
BOX_SIDE, CROP, HEATMAP = 195.0, 256.0, 64.0
# §4: ffhq_512 normalised, the unit space of fan_68_5.
FFHQ_512 = np.array(
    [
        [0.37691676, 0.46864664],
        [0.62285697, 0.46912813],
        [0.50123859, 0.61331904],
        [0.39308822, 0.72541100],
        [0.61150205, 0.72490465],
    ]
)


FILE_NUMBERS = itertools.count()


@pytest.fixture(scope="module")
def faces(t1, sessions) -> list[Face]:
    found = MtcnnDetector(sessions).detect(t1)
    assert len(found) == 6
    return found


def rows_with(points64: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return np.column_stack([points64, np.broadcast_to(scores, (68,))]).astype(np.float32)


def section7_to_frame(points64: np.ndarray, box: np.ndarray) -> np.ndarray:
    """§7's crop maths undone by hand: crop px = frame·s + t; model px = crop px·64/256."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    s = BOX_SIDE / max(x2 - x1, y2 - y1, 1.0)
    t = (CROP - np.array([x1 + x2, y1 + y2]) * s) / 2.0
    return (points64 * (CROP / HEATMAP) - t) / s


def landmarker(tmp_path, sessions, family: str, **kwargs) -> Landmarker68:
    # A fresh file name each time: the session cache keys sessions by path.
    path = make_landmarker(tmp_path / f"{family}_{next(FILE_NUMBERS)}.onnx", family, **kwargs)
    return Landmarker68(sessions, REGISTRY[family], path)


@pytest.mark.parametrize("family", ["2dfan4", "peppa_wutz"])
def test_fixed_answer_lands_where_section7_puts_it(tmp_path, sessions, t1, faces, family):
    rng = np.random.default_rng(1)
    points64 = rng.uniform(4.0, 60.0, (68, 2))
    model = landmarker(
        tmp_path, sessions, family, rows=rows_with(points64, np.full(68, 0.5)), peaks=np.ones(68)
    )
    for face in faces:
        points, _ = model.detect(t1, face.box)
        assert points.shape == (68, 2) and points.dtype == np.float32
        np.testing.assert_allclose(points, section7_to_frame(points64, face.box), atol=1e-3)


def test_2dfan4_score_is_the_heatmap_maxima_mapped_from_0_to_0_9(tmp_path, sessions, t1, faces):
    rng = np.random.default_rng(2)
    peaks = rng.uniform(0.3, 0.6, 68)
    peaks += 0.45 - peaks.mean()  # mean maximum 0.45 → 0.45 / 0.9 = 0.5
    rows = rows_with(np.full((68, 2), 32.0), np.full(68, 0.1))  # score column ignored
    _, score = landmarker(tmp_path, sessions, "2dfan4", rows=rows, peaks=peaks).detect(
        t1, faces[0].box
    )
    assert score == pytest.approx(0.5, abs=1e-5)
    _, score = landmarker(tmp_path, sessions, "2dfan4", rows=rows, peaks=np.full(68, 0.99)).detect(
        t1, faces[0].box
    )
    assert score == 1.0  # clamped above 0.9


def test_2dfan4_without_heatmaps_scores_the_score_column(tmp_path, sessions, t1, faces):
    rows = rows_with(np.full((68, 2), 32.0), np.linspace(0.25, 0.65, 68))  # mean 0.45
    model = landmarker(tmp_path, sessions, "2dfan4", rows=rows, heatmaps=False)
    _, score = model.detect(t1, faces[0].box)
    assert score == pytest.approx(0.5, abs=1e-5)


def test_peppa_score_is_the_third_values_mapped_from_0_to_0_95(tmp_path, sessions, t1, faces):
    for mean, expected in ((0.475, 0.5), (0.19, 0.2), (0.97, 1.0), (0.0, 0.0)):
        rows = rows_with(np.full((68, 2), 32.0), np.full(68, mean))
        _, score = landmarker(tmp_path, sessions, "peppa_wutz", rows=rows).detect(t1, faces[0].box)
        assert score == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("angle", [0, 90, 180, 270])
@pytest.mark.parametrize(
    "box",
    [
        [840.0, 520.0, 960.0, 700.0],  # crop scale ≈ 1.1: a direct warp
        [500.0, 300.0, 1300.0, 1000.0],  # crop scale ≈ 0.24: engine.align's INTER_AREA path
    ],
    ids=["near-scale", "shrunk"],
)
def test_a_bright_dot_comes_back_where_it_is(tmp_path, sessions, angle, box):
    frame = np.zeros((1200, 1600, 3), np.uint8)
    dot = (900.0, 611.0)
    cv2.circle(frame, (int(dot[0]), int(dot[1])), 12, (255, 255, 255), -1)
    model = landmarker(tmp_path, sessions, "peppa_wutz", track_bright=True)
    points, score = model.detect(frame, np.array(box), angle)
    np.testing.assert_allclose(points, np.tile(dot, (68, 1)), atol=0.75)
    assert score == 1.0  # a score of 1 is past 0.95: clamped


def test_the_crop_turns_a_quarter_turned_face_upright(tmp_path, sessions, t1, faces):
    model = landmarker(tmp_path, sessions, "peppa_wutz", rows=rows_with(np.zeros((68, 2)), 0))
    x1, y1, x2, y2 = faces[0].box
    height = t1.shape[0]
    turned = np.ascontiguousarray(np.rot90(t1, -1))  # a quarter turn clockwise
    turned_box = np.array([height - 1 - y2, x1, height - 1 - y1, x2], np.float32)
    upright = model.crop(t1, faces[0].box).astype(np.float32)
    assert np.abs(model.crop(turned, turned_box, 90).astype(np.float32) - upright).mean() < 0.5
    for wrong in (0, 180, 270):
        assert (
            np.abs(model.crop(turned, turned_box, wrong).astype(np.float32) - upright).mean() > 10
        )


def test_face_angle_follows_the_jaw_line():
    rng = np.random.default_rng(3)
    points = rng.uniform(-40, 40, (68, 2))
    points[0], points[16] = (-50.0, 3.0), (50.0, -4.0)  # jaw line pointing right: upright
    # Quarter turns clockwise in image coordinates (y down): (x, y) → (−y, x).
    for turns, expected in enumerate((0, 90, 180, 270)):
        turned = points.copy()
        for _ in range(turns):
            turned = np.column_stack([-turned[:, 1], turned[:, 0]])
        assert face_angle(turned + 500.0) == expected


def test_dark_crops_get_clahe_and_others_only_the_lab_round_trip(tmp_path, sessions, t1, faces):
    model = landmarker(
        tmp_path, sessions, "2dfan4", rows=rows_with(np.zeros((68, 2)), 0), peaks=np.ones(68)
    )
    box = faces[0].box
    x1, y1, x2, y2 = box
    s = BOX_SIDE / max(x2 - x1, y2 - y1)
    matrix = np.array([[s, 0, (CROP - (x1 + x2) * s) / 2], [0, s, (CROP - (y1 + y2) * s) / 2]])
    plain = warp_crop(t1, matrix, 256)
    # Only OpenCV's uint8 Lab round trip, a level or so on average.
    assert np.abs(model.crop(t1, box).astype(int) - plain.astype(int)).mean() < 1.0
    dark = (t1 * 0.1).astype(np.uint8)
    plain_dark = warp_crop(dark, matrix, 256)
    lightness = cv2.cvtColor(plain_dark, cv2.COLOR_RGB2Lab)[:, :, 0]
    assert lightness.mean() < 30
    boosted = cv2.cvtColor(model.crop(dark, box), cv2.COLOR_RGB2Lab)[:, :, 0]
    assert boosted.std() > 1.5 * lightness.std()


def test_landmarker_refuses_wrong_files(tmp_path, sessions):
    wrong_size = make_landmarker(
        tmp_path / "w.onnx", rows=np.zeros((68, 3)), peaks=np.ones(68), side=128
    )
    with pytest.raises(ModelUnavailable, match="input 'input'"):
        Landmarker68(sessions, REGISTRY["2dfan4"], wrong_size)
    good = make_landmarker(tmp_path / "g.onnx", rows=np.zeros((68, 3)), peaks=np.ones(68))
    with pytest.raises(ModelUnavailable, match="fan_68_5"):
        Landmarker68(sessions, REGISTRY["fan_68_5"], good)
    model = Landmarker68(sessions, REGISTRY["2dfan4"], good)
    with pytest.raises(InvalidOptions, match="angle"):
        model.detect(np.zeros((64, 64, 3), np.uint8), np.array([0, 0, 10, 10]), 45)
    with pytest.raises(InvalidInput, match="box"):
        model.detect(np.zeros((64, 64, 3), np.uint8), np.array([0, 0, np.nan, 10]))


def test_many_keeps_2dfan4_unless_peppa_is_clearly_better(tmp_path, sessions, t1, faces):
    fan_points, peppa_points = np.full((68, 2), 20.0), np.full((68, 2), 40.0)
    fan = landmarker(
        tmp_path, sessions, "2dfan4", rows=rows_with(fan_points, 0), peaks=np.full(68, 0.45)
    )
    for peppa_raw, winner in ((0.6175, fan_points), (0.7125, peppa_points)):  # 0.65, 0.75
        path = make_landmarker(
            tmp_path / f"p{next(FILE_NUMBERS)}.onnx",
            "peppa_wutz",
            rows=rows_with(peppa_points, peppa_raw),
        )
        peppa = Landmarker68(sessions, REGISTRY["peppa_wutz"], path)
        points, _ = BestOfLandmarkers(fan, peppa).detect(t1, faces[0].box)
        np.testing.assert_allclose(points, section7_to_frame(winner, faces[0].box), atol=1e-3)


# -- fan_68_5 -------------------------------------------------------------------------------


def unit_similarity(points5: np.ndarray) -> np.ndarray:
    """Least-squares similarity (a, b, tx, ty) of the five points onto ffhq_512 × 1."""
    rows, values = [], []
    for (x, y), (u, v) in zip(points5, FFHQ_512, strict=True):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        values += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(values), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def fan_weights() -> np.ndarray:
    """68 rows that sum to 1 (points of the five's convex hull); rows 0 and 16 are the
    eyes, so the estimate's jaw line is the eye line."""
    weights = np.random.default_rng(4).dirichlet(np.ones(5), 68)
    weights[0], weights[16] = np.eye(5)[0], np.eye(5)[1]
    return weights


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fan_68_5_works_in_ffhq_unit_space_and_maps_back(tmp_path, sessions, faces, dtype):
    weights, offset = fan_weights(), np.array([0.02, -0.015])
    path = make_fan_68_5(tmp_path / f"fan_{dtype}.onnx", weights, offset, dtype)
    model = Fan68From5(sessions, REGISTRY["fan_68_5"], path)
    assert model.dtype == np.dtype(dtype)
    for face in faces:
        p = face.landmarks.astype(np.float64)
        a = unit_similarity(p)
        unit = p @ a[:, :2].T + a[:, 2]
        answer = weights @ unit + offset
        inverse = cv2.invertAffineTransform(a)
        expected = answer @ inverse[:, :2].T + inverse[:, 2]
        estimate = model.estimate(face.landmarks)
        assert estimate.shape == (68, 2)
        np.testing.assert_allclose(estimate, expected, atol=2e-3)


def test_fan_68_5_refuses_other_families_and_layouts(tmp_path, sessions):
    path = make_fan_68_5(tmp_path / "fan.onnx", fan_weights(), np.zeros(2))
    with pytest.raises(ModelUnavailable, match="fan_68_5"):
        Fan68From5(sessions, REGISTRY["2dfan4"], path)
    wrong = make_landmarker(tmp_path / "l.onnx", rows=np.zeros((68, 3)), peaks=np.ones(68))
    with pytest.raises(ModelUnavailable, match="input 'input'"):
        Fan68From5(sessions, REGISTRY["fan_68_5"], wrong)


# -- 68 → 5 and which set a face keeps -------------------------------------------------------


def test_five_from_68_uses_the_eye_means_nose_and_mouth_corners():
    points = np.random.default_rng(5).uniform(0, 500, (68, 2))
    five = five_from_68(points)
    np.testing.assert_allclose(five[0], points[36:42].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(five[1], points[42:48].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(five[2:], points[[30, 48, 54]], rtol=1e-6)
    with pytest.raises(InvalidInput):
        five_from_68(points[:67])


def test_annotate_landmarks_honours_the_threshold(tmp_path, sessions, t1, faces):
    rng = np.random.default_rng(6)
    points64 = rng.uniform(10, 54, (68, 2))
    fan = make_fan_68_5(tmp_path / "fan.onnx", fan_weights(), np.zeros(2))
    fan_model = Fan68From5(sessions, REGISTRY["fan_68_5"], fan)
    model = landmarker(tmp_path, sessions, "peppa_wutz", rows=rows_with(points64, 0.57))  # 0.6
    originals = [replace(face) for face in faces]

    confident = annotate_landmarks(t1, faces, model, fan_model, threshold=0.5)
    doubtful = annotate_landmarks(t1, faces, model, fan_model, threshold=0.7)
    estimated = annotate_landmarks(t1, faces, None, fan_model)
    for face, sure, unsure, only_fan, before in zip(
        faces, confident, doubtful, estimated, originals, strict=True
    ):
        expected68 = section7_to_frame(points64, face.box)
        np.testing.assert_allclose(sure.landmarks_68, expected68, atol=1e-3)
        np.testing.assert_allclose(sure.landmarks, five_from_68(expected68), atol=1e-3)
        np.testing.assert_allclose(unsure.landmarks_68, expected68, atol=1e-3)
        np.testing.assert_array_equal(unsure.landmarks, face.landmarks)
        np.testing.assert_allclose(only_fan.landmarks_68, fan_model.estimate(face.landmarks))
        np.testing.assert_array_equal(only_fan.landmarks, face.landmarks)
        # The inputs are untouched.
        assert face.landmarks_68 is None
        np.testing.assert_array_equal(face.landmarks, before.landmarks)
    unchanged = annotate_landmarks(t1, faces, None, None)
    assert all(
        a.landmarks_68 is None and a.landmarks is f.landmarks
        for a, f in zip(unchanged, faces, strict=True)
    )
    with pytest.raises(InvalidOptions, match="threshold"):
        annotate_landmarks(t1, faces, model, None, threshold=1.5)
