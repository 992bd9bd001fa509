"""Masks, landmarks, detectors and face filters end to end, through the job pipeline.

Every test goes the way a job goes: ``FaceEngine(manager).prepare(sources, options)``
then ``process(frame)`` (or ``run_job``, or ``python app.py run``), on insightface's
t1.jpg (six faces, found by the bundled MTCNN) or on drawn stand-in faces. The models
are stand-ins with the families' real tensors, installed under their catalogue names
(``tests/standins/registry.py``): the HyperSwap stand-in paints the face black, so
wherever the final mask lets the swap through, the frame visibly changes, and
wherever it does not, the frame keeps its pixels. Where a mask should be is worked
out here, in the frame, from the numbers of MODELS-2.md (templates, crop rules).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.imageio import load_image
from engine.jobrun import JobRequest, run_job
from engine.models.manager import ModelManager
from engine.models.resolve import resolve_for_spec
from engine.options import SwapOptions, parse_options
from engine.pipeline import FaceEngine
from tests.assets import REPO, SCRFD_2_5G, T1, TOM_HANKS, load
from tests.standins.detectors import BOX, KEYPOINTS, draw_face, make_yolo_face
from tests.standins.maskers import make_parser
from tests.standins.registry import (
    FAN_68_5_WEIGHTS,
    LANDMARK_ROWS,
    install_standins,
    make_2dfan4,
)

# MODELS-2.md §4: arcface_128 at 256 px, the HyperSwap crop (x, y of the five points).
ARCFACE_128_AT_256 = np.array(
    [[92.59, 103.39], [163.06, 103.00], [128.05, 143.47], [99.10, 184.73], [157.46, 184.41]]
)
CROP = 256
# §6.1: the parser sees the crop at 512²; a block there is half as large in a 256 crop.
PARSER_SIZE = 512
NOSE_CLASS = 10  # §6.2
# §7: the landmarker crop centres the detector box in 256² with its longer side 195 px;
# its (x, y) come in 64-px heatmap units.
LANDMARK_CROP, LANDMARK_BOX_SIDE, HEATMAP = 256, 195.0, 64
# §6.3: the mouth area is points 48–67.
MOUTH = list(range(48, 68))
# §4 and §11: fairface's crop is arcface_112_v2 at 224 px.
ARCFACE_112_V2_AT_224 = np.array(
    [[76.59, 103.39], [147.06, 103.00], [112.05, 143.47], [83.10, 184.73], [141.46, 184.41]]
)
QUIET = 2  # a pixel that moved by more than this has changed
SWAPPED = 40  # a black face moves a lit face pixel by far more than this on average

CORE = ("arcface_w600k_r50", "hyperswap_1a_256")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tom() -> np.ndarray:
    return load(TOM_HANKS)


@pytest.fixture(scope="module")
def plain_engine(tmp_path_factory) -> FaceEngine:
    """No model installed: the offline defaults (MTCNN, classic)."""
    return FaceEngine(ModelManager(tmp_path_factory.mktemp("empty_models")), "cpu")


@pytest.fixture(scope="module")
def t1_faces(plain_engine, t1) -> list[Face]:
    faces = plain_engine.detect(t1)
    assert len(faces) == 6
    return faces


def standin_engine(tmp_path_factory, names, makers=None) -> FaceEngine:
    folder = tmp_path_factory.mktemp("models")
    return FaceEngine(install_standins(folder, tuple(names), makers), "cpu")


@pytest.fixture(scope="module")
def mask_engine(tmp_path_factory) -> FaceEngine:
    """HyperSwap, an upper-half occluder (xseg_1) and a nose-block parser."""
    return standin_engine(tmp_path_factory, (*CORE, "xseg_1", "bisenet_resnet_34"))


# -- geometry ---------------------------------------------------------------------------------


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (a, b, tx, ty) mapping ``src`` onto ``dst``, as 2×3."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    rows = []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append(([x, -y, 1, 0], u))
        rows.append(([y, x, 0, 1], v))
    a_matrix = np.array([r[0] for r in rows])
    values = np.array([r[1] for r in rows])
    a, b, tx, ty = np.linalg.lstsq(a_matrix, values, rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def crop_to_frame(face: Face, crop_points: np.ndarray) -> np.ndarray:
    """Points of the face's HyperSwap crop (in 256-px units) in frame pixels."""
    matrix = similarity(face.landmarks, ARCFACE_128_AT_256)
    return apply(cv2.invertAffineTransform(matrix), crop_points)


def grid(x0: float, x1: float, y0: float, y1: float, step: float = 6.0) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(x0, x1 + 1e-6, step), np.arange(y0, y1 + 1e-6, step))
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The pixels (nearest) at frame points, as int (N, 3)."""
    xy = np.rint(points).astype(int)
    return image[xy[:, 1], xy[:, 0]].astype(int)


def moved(before: np.ndarray, after: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per point: the largest channel change."""
    return np.abs(sample(after, points) - sample(before, points)).max(axis=1)


def polygon_mask(shape: tuple[int, ...], polygons: list[np.ndarray], grow: int) -> np.ndarray:
    """Frame-sized bool mask of convex polygons (frame points), grown by ``grow`` px."""
    mask = np.zeros(shape[:2], np.uint8)
    for polygon in polygons:
        hull = cv2.convexHull(np.rint(polygon).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
    if grow:
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return mask.astype(bool)


def shrunk(polygon: np.ndarray, factor: float) -> np.ndarray:
    centre = polygon.mean(axis=0)
    return centre + (polygon - centre) * factor


def changed_pixels(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.abs(after.astype(int) - before.astype(int)).max(axis=2) > QUIET


def mean_change(before: np.ndarray, after: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(after.astype(int) - before.astype(int)).max(axis=2)[where].mean())


def changed_boxes(before: np.ndarray, after: np.ndarray, faces: list[Face]) -> list[bool]:
    """For each face box: did pixels inside it change visibly?"""
    result = []
    for face in faces:
        x1, y1, x2, y2 = face.box.astype(int)
        region = (slice(max(y1, 0), y2), slice(max(x1, 0), x2))
        result.append(bool(np.abs(after[region].astype(int) - before[region]).max() > 10))
    return result


def landmarker_points(box: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Where a landmarker's (x, y) rows land in the frame for a face box (§7's crop)."""
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    scale = LANDMARK_BOX_SIDE / max(x2 - x1, y2 - y1, 1.0)
    shift = (LANDMARK_CROP - np.array([x1 + x2, y1 + y2]) * scale) / 2.0
    in_crop = np.asarray(rows, np.float64)[:, :2] * (LANDMARK_CROP / HEATMAP)
    return (in_crop - shift) / scale


def five_of_68(points: np.ndarray) -> np.ndarray:
    """§7.1: eyes are the means of 36–41 and 42–47, nose 30, mouth corners 48 and 54."""
    points = np.asarray(points, np.float64)
    return np.stack(
        [points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]]
    )


# -- 1. occlusion -----------------------------------------------------------------------------

UPPER = grid(60, 196, 50, 105)  # well above the occluder's edge at row 128
LOWER = grid(60, 196, 145, 205)  # well below it, inside the box mask's full-strength area


def test_occlusion_keeps_the_covered_lower_half_of_every_face(mask_engine, t1, tom, t1_faces):
    options = SwapOptions(mask_types=("box", "occlusion"), selector="many", color_correction=False)
    swapper = mask_engine.prepare([tom], options)
    assert swapper.resolved.occluders == ("xseg_1",)
    result = swapper.process(t1)
    assert result.faces_swapped == 6
    upper_halves = []
    for face in t1_faces:
        assert moved(t1, result.image, crop_to_frame(face, LOWER)).max() <= QUIET
        upper = moved(t1, result.image, crop_to_frame(face, UPPER))
        assert upper.mean() > SWAPPED
        upper_halves.append(crop_to_frame(face, [[0, 0], [CROP, 0], [CROP, 128], [0, 128]]))
    # Nothing outside the faces' upper halves moved at all.
    allowed = polygon_mask(t1.shape, upper_halves, grow=2)
    assert not (changed_pixels(t1, result.image) & ~allowed).any()
    assert not swapper.notes


def test_the_box_alone_swaps_both_halves(mask_engine, t1, tom, t1_faces):
    options = SwapOptions(mask_types=("box",), selector="many", color_correction=False)
    result = mask_engine.prepare([tom], options).process(t1)
    for face in t1_faces:
        assert moved(t1, result.image, crop_to_frame(face, UPPER)).mean() > SWAPPED
        assert moved(t1, result.image, crop_to_frame(face, LOWER)).mean() > SWAPPED


# -- 2. region --------------------------------------------------------------------------------


def parser_block_in_crop(block: tuple[int, int, int, int]) -> np.ndarray:
    """The corners of a block of the parser's 512² input, in 256-px crop units."""
    y0, y1, x0, x1 = (v * CROP / PARSER_SIZE for v in block)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


NOSE_BLOCK = (256, 320, 224, 288)  # rows, columns of the parser input


def test_region_swaps_only_the_parsed_nose_block(tmp_path_factory, t1, tom, t1_faces):
    parser = functools.partial(make_parser, blocks={NOSE_CLASS: [NOSE_BLOCK]})
    engine = standin_engine(tmp_path_factory, (*CORE, "bisenet_resnet_34"),
                            {"bisenet_resnet_34": parser})  # fmt: skip
    options = parse_options(
        {"mask_types": "region", "mask_regions": "nose", "selector": "many",
         "color_correction": False}
    ).swap  # fmt: skip
    swapper = engine.prepare([tom], options)
    assert swapper.resolved.parser == "bisenet_resnet_34"
    result = swapper.process(t1)
    assert result.faces_swapped == 6
    blocks = [crop_to_frame(face, parser_block_in_crop(NOSE_BLOCK)) for face in t1_faces]
    allowed = polygon_mask(t1.shape, blocks, grow=2)
    assert not (changed_pixels(t1, result.image) & ~allowed).any()
    for block in blocks:
        centre = polygon_mask(t1.shape, [shrunk(block, 0.4)], grow=0)
        assert mean_change(t1, result.image, centre) > SWAPPED


# -- 3. area ----------------------------------------------------------------------------------


def assert_only_mouths_changed(before, after, mouths: list[np.ndarray]) -> None:
    allowed = polygon_mask(before.shape, mouths, grow=2)
    assert not (changed_pixels(before, after) & ~allowed).any()
    for mouth in mouths:
        centre = polygon_mask(before.shape, [shrunk(mouth, 0.5)], grow=0)
        assert centre.sum() > 10
        assert mean_change(before, after, centre) > SWAPPED


def test_area_mouth_swaps_only_inside_the_hull_of_points_48_to_67(
    tmp_path_factory, t1, tom, t1_faces
):
    engine = standin_engine(tmp_path_factory, (*CORE, "2dfan4"))
    options = SwapOptions(
        mask_types=("area",), mask_areas=("mouth",), selector="many", color_correction=False
    )
    swapper = engine.prepare([tom], options)
    assert swapper.resolved.landmarker == "2dfan4"
    result = swapper.process(t1)
    assert result.faces_swapped == 6
    mouths = [landmarker_points(face.box, LANDMARK_ROWS)[MOUTH] for face in t1_faces]
    assert_only_mouths_changed(t1, result.image, mouths)


def test_area_with_only_fan_68_5_uses_its_estimate(tmp_path_factory, t1, tom, t1_faces):
    """fan_68_5's stand-in answers each point as fixed weights of the five (each row
    summing to 1), which commutes with §7's move into unit space and back: its 68 points
    are those weights applied to the detector's five."""
    engine = standin_engine(tmp_path_factory, (*CORE, "fan_68_5"))
    options = SwapOptions(
        mask_types=("area",), mask_areas=("mouth",), selector="many", color_correction=False
    )
    swapper = engine.prepare([tom], options)
    assert (swapper.resolved.landmarker, swapper.resolved.landmark_regressor) == (
        None,
        "fan_68_5",
    )
    result = swapper.process(t1)
    mouths = [(FAN_68_5_WEIGHTS @ face.landmarks)[MOUTH] for face in t1_faces]
    assert_only_mouths_changed(t1, result.image, mouths)


# -- 4. an empty mask -------------------------------------------------------------------------


def test_an_empty_mask_leaves_the_faces_untouched_and_says_so(mask_engine, tmp_path):
    """The parser finds a nose and nothing else: the mouth region has no area."""
    out = tmp_path / "out.png"
    request = JobRequest(
        sources=[TOM_HANKS],
        target=T1,
        output=out,
        options={"mask_types": "region", "mask_regions": "mouth", "selector": "many"},
    )
    result = run_job(mask_engine, request)
    assert np.array_equal(load_image(out), load_image(T1))
    notes = [w for w in result.warnings if "mask" in w and "empty" in w]
    assert len(notes) == 1, result.warnings
    assert "untouched" in notes[0]
    assert {"role": "parser", "name": "bisenet_resnet_34"}.items() <= next(
        m for m in result.models if m["role"] == "parser"
    ).items()


# -- 5. refused up front ----------------------------------------------------------------------

MISSING = [
    ({"mask_types": "box,area"}, ("2dfan4", "fan_68_5")),
    ({"mask_types": "occlusion"}, ("xseg_1",)),
    ({"mask_types": "box,region"}, ("bisenet_resnet_34",)),
    ({"face_genders": "female"}, ("fairface",)),
    ({"face_ages": "20-40"}, ("fairface",)),
]


@pytest.mark.parametrize(("raw", "names"), MISSING, ids=lambda v: str(v))
def test_a_missing_model_is_refused_at_resolve_naming_what_to_install(
    plain_engine, tom, tmp_path, raw, names
):
    options = parse_options(raw).swap
    for attempt in (
        lambda: plain_engine.resolve(options),
        lambda: plain_engine.prepare([tom], options),
        lambda: resolve_for_spec(options, tmp_path / "models"),  # the studio's submit
    ):
        with pytest.raises(ModelUnavailable) as caught:
            attempt()
        for name in names:
            assert name in caught.value.message
        assert "python app.py models download" in caught.value.message


def test_a_missing_model_fails_a_job_before_any_work(plain_engine, tmp_path):
    reports = []
    request = JobRequest(
        sources=[TOM_HANKS],
        target=T1,
        output=tmp_path / "out.png",
        options={"mask_types": "box,area"},
    )
    with pytest.raises(ModelUnavailable, match="2dfan4"):
        run_job(plain_engine, request, progress=reports.append)
    assert [report.stage for report in reports] == []  # no gate, no prepare
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [(("--mask-types", "box,area"), "2dfan4"), (("--face-genders", "female"), "fairface")],
)
def test_the_cli_refuses_with_one_line(tmp_path, flags, fragment):
    out = tmp_path / "out.png"
    proc = subprocess.run(
        [sys.executable, str(REPO / "app.py"), "run", "--quiet",
         "--data-dir", str(tmp_path / "data"), "--models-dir", str(tmp_path / "models"),
         "--source", str(TOM_HANKS), "--target", str(T1), "--output", str(out), *flags],
        capture_output=True, text=True, cwd=REPO, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert fragment in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()


# -- 6. face order and filters ----------------------------------------------------------------


def box_area(face: Face) -> float:
    x1, y1, x2, y2 = face.box
    return float((x2 - x1) * (y2 - y1))


def centre(face: Face) -> tuple[float, float]:
    x1, y1, x2, y2 = face.box
    return float(x1 + x2) / 2, float(y1 + y2) / 2


FIRST_OF_ORDER = {  # the face each order puts first
    "large-small": lambda faces: max(faces, key=box_area),
    "small-large": lambda faces: min(faces, key=box_area),
    "left-right": lambda faces: min(faces, key=lambda f: centre(f)[0]),
    "right-left": lambda faces: max(faces, key=lambda f: centre(f)[0]),
    "top-bottom": lambda faces: min(faces, key=lambda f: centre(f)[1]),
    "bottom-top": lambda faces: max(faces, key=lambda f: centre(f)[1]),
    "best-worst": lambda faces: max(faces, key=lambda f: f.score),
    "worst-best": lambda faces: min(faces, key=lambda f: f.score),
}


@pytest.mark.parametrize("order", list(FIRST_OF_ORDER))
def test_each_face_order_with_one_swaps_its_first_face(plain_engine, t1, tom, t1_faces, order):
    expected = FIRST_OF_ORDER[order](t1_faces)
    result = plain_engine.prepare([tom], SwapOptions(selector="one", face_order=order)).process(t1)
    assert result.faces_swapped == 1
    assert changed_boxes(t1, result.image, t1_faces) == [f is expected for f in t1_faces]


# Where the fairface stand-in looks, in its 224² crop: beside the chin, image-right,
# outside the face so that paint there leaves the detector's boxes and points alone.
SPOT = (204, 200)
WINDOW = 6  # half side of its window there, in crop px


def make_spot_fairface(path: Path) -> Path:
    """fairface's tensors (``input`` [1,3,224,224] → int64 ``race_id``, ``gender_id``,
    ``age_id``), answering from the mean colour of a window at ``SPOT`` of the aligned
    crop: female when red beats blue there, age class clip(⌊2·green + 4⌋, 0, 8) of
    the ImageNet-normalised green."""
    x, y = SPOT
    inits = [
        numpy_helper.from_array(np.array([0, 0, y - WINDOW, x - WINDOW], np.int64), "start"),
        numpy_helper.from_array(np.array([1, 3, y + WINDOW, x + WINDOW], np.int64), "end"),
        numpy_helper.from_array(np.array([0], np.int64), "red"),
        numpy_helper.from_array(np.array([1], np.int64), "green"),
        numpy_helper.from_array(np.array([2], np.int64), "blue"),
        numpy_helper.from_array(np.array(2.0, np.float32), "gain"),
        numpy_helper.from_array(np.array(4.0, np.float32), "offset"),
        numpy_helper.from_array(np.array(0.0, np.float32), "low"),
        numpy_helper.from_array(np.array(8.0, np.float32), "high"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    node = helper.make_node
    nodes = [
        node("Slice", ["input", "start", "end"], ["window"]),
        node("ReduceMean", ["window"], ["means"], axes=[0, 2, 3], keepdims=0),
        node("Gather", ["means", "red"], ["r"], axis=0),
        node("Gather", ["means", "green"], ["g"], axis=0),
        node("Gather", ["means", "blue"], ["b"], axis=0),
        node("Greater", ["r", "b"], ["female"]),
        node("Cast", ["female"], ["gender_id"], to=TensorProto.INT64),
        node("Mul", ["g", "gain"], ["g2"]),
        node("Add", ["g2", "offset"], ["line"]),
        node("Floor", ["line"], ["floor"]),
        node("Clip", ["floor", "low", "high"], ["clipped"]),
        node("Cast", ["clipped"], ["age_id"], to=TensorProto.INT64),
        node("Mul", ["r", "zero"], ["nothing"]),
        node("Cast", ["nothing"], ["race_id"], to=TensorProto.INT64),
    ]
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, [1])
        for name in ("race_id", "gender_id", "age_id")
    ]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])]
    graph = helper.make_graph(nodes, "fairface_spot_standin", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


# Per face (t1's faces, largest first): the colour painted at its ``SPOT`` (BGR) and
# what the stand-in must then answer. §11: gender id 1 is female; age classes 0, 4 and 8
# are the bins 0–2, 30–39 and 70+. Green 0 / 128 / 255 normalises to −2.04 / 0.21 / 2.43.
PAINT = [
    ((0, 0, 255), "female", (0, 3)),
    ((255, 255, 0), "male", (70, 101)),
    ((0, 128, 255), "female", (30, 40)),
    ((255, 0, 0), "male", (0, 3)),
    ((0, 255, 255), "female", (70, 101)),
    ((255, 128, 0), "male", (30, 40)),
]
PATCH = 10  # half side in frame px: well over the stand-in's window


@pytest.fixture(scope="module")
def painted(t1, t1_faces) -> np.ndarray:
    image = t1.copy()
    for face, (colour, _, _) in zip(t1_faces, PAINT, strict=True):
        to_frame = cv2.invertAffineTransform(similarity(face.landmarks, ARCFACE_112_V2_AT_224))
        x, y = np.rint(apply(to_frame, SPOT)[0]).astype(int)
        image[y - PATCH : y + PATCH, x - PATCH : x + PATCH] = colour
    return image


@pytest.fixture(scope="module")
def filter_engine(tmp_path_factory) -> FaceEngine:
    return standin_engine(tmp_path_factory, ("fairface",), {"fairface": make_spot_fairface})


def test_the_classifier_answers_what_each_face_was_painted(filter_engine, painted, t1_faces):
    faces = filter_engine.detect(painted, SwapOptions(face_genders=("female", "male")))
    assert len(faces) == 6
    for face, (_, gender, age) in zip(t1_faces, PAINT, strict=True):
        (found,) = [f for f in faces if np.abs(f.box - face.box).max() < 12]
        assert (found.gender, found.age) == (gender, age)


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ({"face_genders": "female"}, [0, 2, 4]),
        ({"face_genders": "male"}, [1, 3, 5]),
        ({"face_ages": "70-100"}, [1, 4]),
        ({"face_ages": "31-35"}, [2, 5]),
        ({"face_ages": "0-50", "face_genders": "female"}, [0, 2]),
        ({"face_genders": "female,male"}, [0, 1, 2, 3, 4, 5]),
        ({"face_ages": "10-25"}, []),
    ],
)
def test_age_and_gender_filters_choose_the_swapped_faces(
    filter_engine, painted, tom, t1_faces, raw, kept
):
    options = parse_options({**raw, "selector": "many"}).swap
    swapper = filter_engine.prepare([tom], options)
    assert swapper.resolved.classifier == "fairface"
    result = swapper.process(painted)
    assert result.faces_swapped == len(kept)
    assert changed_boxes(painted, result.image, t1_faces) == [i in kept for i in range(6)]


# -- 7. detectors -----------------------------------------------------------------------------

GREY = 90  # neutral for the detector stand-ins (equal blue and red)
OTHER_BOX = (-0.5, -0.75, 1.5, 2.0)  # the yolo stand-in's box, unlike retinaface's BOX
OTHER_POINTS = KEYPOINTS + np.float32(0.05)


def canvas(width: int = 600, height: int = 400) -> np.ndarray:
    return np.full((height, width, 3), GREY, np.uint8)


def drawn_box(x: float, y: float, side: float, box=BOX) -> np.ndarray:
    return np.array([x, y, x, y]) + np.array(box) * side


@pytest.fixture(scope="module")
def detector_engine(tmp_path_factory) -> FaceEngine:
    """retinaface (faces at stride 16) and a yolo_face that also finds them at stride 16
    but draws other boxes."""
    yolo = functools.partial(make_yolo_face, face_stride=16, box=OTHER_BOX, keypoints=OTHER_POINTS)
    return standin_engine(
        tmp_path_factory, ("retinaface_10g", "yoloface_8n"), {"yoloface_8n": yolo}
    )


@pytest.fixture(scope="module")
def drawn_source() -> np.ndarray:
    return draw_face(canvas(200, 200), 96, 96, 16, 255)


def test_many_merges_the_detectors_duplicates_in_a_job(detector_engine, drawn_source):
    target = canvas()
    draw_face(target, 64, 64, 16, 255)  # yolo scores 1.0, above retinaface's 0.98
    draw_face(target, 320, 192, 16, 200)  # retinaface 0.90 beats yolo's 0.78
    for single in ("retinaface_10g", "yoloface_8n"):
        assert len(detector_engine.detect(target, SwapOptions(detector=single))) == 2

    swapper = detector_engine.prepare([drawn_source], SwapOptions(detector="many", selector="many"))
    assert swapper.resolved.all_detectors == ("retinaface_10g", "yoloface_8n")
    faces = swapper.faces(target)
    assert len(faces) == 2
    boxes = sorted((face.box for face in faces), key=lambda box: box[0])
    np.testing.assert_allclose(boxes[0], drawn_box(64, 64, 16, OTHER_BOX), atol=1e-3)
    np.testing.assert_allclose(boxes[1], drawn_box(320, 192, 16), atol=1e-3)
    result = swapper.process(target)
    assert result.faces_swapped == 2
    roles = [(m["role"], m["name"]) for m in swapper.models_used() if m["role"] == "detector"]
    assert roles == [("detector", "retinaface_10g"), ("detector", "yoloface_8n")]


def test_angles_find_a_face_lying_on_its_side(detector_engine, drawn_source):
    target = canvas(640, 480)
    draw_face(target, 320, 224, 16, 255, turn=90)
    options = SwapOptions(detector="retinaface_10g", selector="many")
    assert detector_engine.prepare([drawn_source], options).faces(target) == []
    turned = SwapOptions(detector="retinaface_10g", selector="many", detector_angles=(0, 90))
    swapper = detector_engine.prepare([drawn_source], turned)
    faces = swapper.faces(target)
    assert len(faces) == 1
    # The upright face's box (x1, y1, x2, y2) turned a quarter clockwise about its cell.
    x1, y1, x2, y2 = BOX
    expected = np.array([320 + (1 - y2) * 16, 224 + x1 * 16, 320 + (1 - y1) * 16, 224 + x2 * 16])
    np.testing.assert_allclose(faces[0].box, expected, atol=1e-3)


@pytest.mark.skipif(not SCRFD_2_5G.is_file(), reason=f"real SCRFD weights not at {SCRFD_2_5G}")
def test_angles_find_t1s_faces_turned_sideways_with_the_real_scrfd(tmp_path, t1):
    """The source is upright t1 (SCRFD finds no face in the tight 112² Tom Hanks crop)."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(SCRFD_2_5G, models / "scrfd_2.5g.onnx")
    engine = FaceEngine(ModelManager(models), "cpu")
    upright = engine.detect(t1)
    assert len(upright) == 6
    sideways = np.ascontiguousarray(cv2.rotate(t1, cv2.ROTATE_90_CLOCKWISE))
    plain = engine.prepare([t1], SwapOptions(selector="many"))
    assert plain.resolved.detector == "scrfd_2.5g"
    assert len(plain.faces(sideways)) < 6
    swapper = engine.prepare([t1], SwapOptions(selector="many", detector_angles=(0, 90)))
    faces = swapper.faces(sideways)
    assert len(faces) == 6
    height = t1.shape[0]
    for face in upright:  # (x, y) upright lands at (height − y, x) turned clockwise
        cx, cy = centre(face)
        assert any(np.hypot(*(np.array(centre(f)) - (height - cy, cx))) < 8 for f in faces)
    result = swapper.process(sideways)
    assert result.faces_swapped == 6
    assert all(changed_boxes(sideways, result.image, faces))


def test_a_size_the_detector_does_not_offer_is_refused_up_front(detector_engine, drawn_source):
    for raw in (
        {"detector": "yoloface_8n", "detector_size": 320},
        {"detector": "many", "detector_size": 320},
    ):
        options = parse_options(raw).swap
        with pytest.raises(InvalidOptions, match="640"):
            detector_engine.resolve(options)
        with pytest.raises(InvalidOptions, match="detector_size 320"):
            detector_engine.prepare([drawn_source], options)
    fine = parse_options({"detector": "retinaface_10g", "detector_size": 320}).swap
    assert detector_engine.resolve(fine).detector == "retinaface_10g"


# -- 8. the offline default -------------------------------------------------------------------


def test_with_no_models_the_classic_swapper_swaps_the_largest_face(plain_engine, t1, tom, t1_faces):
    swapper = plain_engine.prepare([tom], SwapOptions())
    assert (swapper.resolved.detector, swapper.resolved.swapper) == ("mtcnn", "classic")
    assert swapper.resolved.landmarker is None and swapper.resolved.occluders == ()
    result = swapper.process(t1)
    assert result.faces_swapped == 1
    largest = max(t1_faces, key=box_area)
    assert changed_boxes(t1, result.image, t1_faces) == [f is largest for f in t1_faces]


# -- 9. 68-point alignment --------------------------------------------------------------------


def test_a_confident_landmarker_gives_the_five_alignment_points(tmp_path_factory, t1, t1_faces):
    engine = standin_engine(tmp_path_factory, ("2dfan4",))  # full score
    faces = engine.detect(t1)
    assert len(faces) == 6
    for face, plain in zip(faces, t1_faces, strict=True):
        np.testing.assert_allclose(face.box, plain.box)
        expected68 = landmarker_points(face.box, LANDMARK_ROWS)
        np.testing.assert_allclose(face.landmarks_68, expected68, atol=0.05)
        np.testing.assert_allclose(face.landmarks, five_of_68(expected68), atol=0.05)
        assert np.abs(face.landmarks - plain.landmarks).max() > 1.0  # not the detector's


def test_an_unsure_landmarker_keeps_the_detectors_points(tmp_path_factory, t1, t1_faces):
    unsure = functools.partial(make_2dfan4, peak=0.3)  # score 0.3 / 0.9 = 0.33 < 0.5
    engine = standin_engine(tmp_path_factory, ("2dfan4",), {"2dfan4": unsure})
    faces = engine.detect(t1)
    for face, plain in zip(faces, t1_faces, strict=True):
        np.testing.assert_allclose(face.landmarks, plain.landmarks)
        np.testing.assert_allclose(
            face.landmarks_68, landmarker_points(face.box, LANDMARK_ROWS), atol=0.05
        )
