"""Every face-enhancer family of the catalogue through ``FaceEnhancer``: real ONNX Runtime
sessions on stand-ins with the real tensors (MODELS-2.md §3, §8), real alignment and
paste-back, on insightface's t1.jpg."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from onnx import TensorProto

from engine.enhancers import FaceEnhancer
from engine.errors import InvalidInput, InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.models.registry import REGISTRY
from engine.runtime import SessionCache
from tests.standins.enhancers import make_enhancer

# One face of t1.jpg (insightface SCRFD on scrfd_2.5g): box and five landmarks.
FACE = Face(
    box=np.array([465.4, 265.4, 573.4, 416.1], np.float32),
    score=0.9,
    landmarks=np.array(
        [[491.7, 318.9], [540.8, 331.9], [507.1, 360.7], [483.9, 367.1], [531.9, 378.4]],
        np.float32,
    ),
)

# MODELS-2.md §4: normalised templates, five (x, y) points.
FFHQ_512 = np.array(
    [
        [0.37691676, 0.46864664],
        [0.62285697, 0.46912813],
        [0.50123859, 0.61331904],
        [0.39308822, 0.72541100],
        [0.61150205, 0.72490465],
    ]
)
ARCFACE_128 = np.array(
    [
        [0.36167656, 0.40387734],
        [0.63696719, 0.40235469],
        [0.50019687, 0.56044219],
        [0.38710391, 0.72160547],
        [0.61507734, 0.72034453],
    ]
)

# MODELS-2.md §8: catalogue name → (family, native size, template).
ENHANCERS = {
    "codeformer": ("codeformer", 512, FFHQ_512),
    "gfpgan_1.2": ("gfpgan", 512, FFHQ_512),
    "gfpgan_1.3": ("gfpgan", 512, FFHQ_512),
    "gfpgan_1.4": ("gfpgan", 512, FFHQ_512),
    "gpen_bfr_256": ("gpen", 256, ARCFACE_128),
    "gpen_bfr_512": ("gpen", 512, FFHQ_512),
    "gpen_bfr_1024": ("gpen", 1024, FFHQ_512),
    "gpen_bfr_2048": ("gpen", 2048, FFHQ_512),
    "restoreformer_plus_plus": ("restoreformer", 512, FFHQ_512),
}
WITH_WEIGHT = {"codeformer"}  # §8: believed to be the only file that declares ``weight``


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("enhancers")


def load(sessions: SessionCache, name: str, path, **replace) -> FaceEnhancer:
    spec = dataclasses.replace(REGISTRY[name], **replace) if replace else REGISTRY[name]
    return FaceEnhancer(sessions, spec, path)


def footprint(shape, size: int, template: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Frame pixels that the square [lo·S, hi·S)² of the aligned crop covers, with the
    matrix FaceFusion estimates (§4: estimateAffinePartial2D, RANSAC, threshold 100)."""
    matrix, _ = cv2.estimateAffinePartial2D(
        FACE.landmarks,
        (template * size).astype(np.float32),
        method=cv2.RANSAC,
        ransacReprojThreshold=100,
    )
    square = np.zeros((size, size), np.uint8)
    square[int(lo * size) : int(hi * size), int(lo * size) : int(hi * size)] = 1
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(square, matrix, (shape[1], shape[0]), flags=flags).astype(bool)


def regions(shape, size: int, template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(core, outside): where the box mask (blur 0.3: zero border 7.5 %, σ 3.75 % of S) is
    ~1, and where no part of the crop reaches."""
    kernel = np.ones((5, 5), np.uint8)
    core = cv2.erode(footprint(shape, size, template, 0.2, 0.8).astype(np.uint8), kernel)
    crop = cv2.dilate(footprint(shape, size, template, 0.0, 1.0).astype(np.uint8), kernel)
    return core.astype(bool), ~crop.astype(bool)


def levels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def test_the_catalogue_enhancers_are_the_ones_tested() -> None:
    catalogue = {name for name, spec in REGISTRY.items() if spec.kind == "enhancer"}
    assert catalogue == set(ENHANCERS)


@pytest.mark.parametrize("name", sorted(ENHANCERS))
def test_every_family_restores_the_face_and_nothing_else(
    name: str, t1: np.ndarray, sessions: SessionCache, models
) -> None:
    family, size, template = ENHANCERS[name]
    weight = name in WITH_WEIGHT
    path = make_enhancer(
        models / f"{name}.onnx", size, gain=(0.8,) * 3, offset=(0.15,) * 3, weight=weight
    )
    enhancer = load(sessions, name, path)
    assert (enhancer.name, enhancer.family, enhancer.size) == (name, family, size)
    assert enhancer.has_fidelity == weight
    original = t1.copy()
    result = enhancer.enhance(t1, FACE, blend=1.0)
    assert np.array_equal(t1, original) and result.shape == t1.shape
    core, outside = regions(t1.shape, size, template)
    assert core.sum() > 2000 and outside.sum() > t1.shape[0] * t1.shape[1] * 0.9
    assert levels(result, t1).max(axis=2)[core].mean() > 5
    assert np.array_equal(result[outside], t1[outside])


@pytest.mark.parametrize("name", ["gfpgan_1.4", "gpen_bfr_256", "gpen_bfr_1024"])
def test_identity_colour_order_and_value_range(
    name: str, t1: np.ndarray, sessions: SessionCache, models
) -> None:
    _, size, template = ENHANCERS[name]
    core, _ = regions(t1.shape, size, template)

    def run(**look) -> np.ndarray:
        path = make_enhancer(models / f"{name}-look.onnx", size, **look)
        sessions.clear()  # the same path is rewritten with each look
        return load(sessions, name, path).enhance(t1, FACE, blend=1.0)

    # Output = input: the face comes back as it was. Sampling the crop and back blurs
    # sharp edges by a few levels, so the mean over the face is what is held to 2.
    identity = run()
    assert levels(identity, t1)[core].mean() <= 2.0
    # Model RGB channel 0 (red) driven to −1: BGR channel 2 drops, blue stays.
    red = run(gain=(0.0, 1.0, 1.0), offset=(-1.0, 0.0, 0.0))
    assert red[..., 2][core].max() <= 3 and t1[..., 2][core].mean() > 60
    assert levels(red[..., 0], t1[..., 0])[core].mean() <= 2.0
    # A file written for [0, 1] input (output 2x − 1) is not an identity for [−1, 1] input.
    unit = run(gain=(2.0,) * 3, offset=(-1.0,) * 3)
    assert levels(unit, t1)[core].mean() > 10


@pytest.mark.parametrize(
    ("name", "right", "wrong"),
    [
        ("gpen_bfr_256", ARCFACE_128, FFHQ_512),
        ("gpen_bfr_512", FFHQ_512, ARCFACE_128),
        ("gfpgan_1.4", FFHQ_512, ARCFACE_128),
        ("gpen_bfr_1024", FFHQ_512, ARCFACE_128),
    ],
)
def test_each_size_aligns_to_its_template(
    name: str, right, wrong, t1: np.ndarray, sessions: SessionCache, models
) -> None:
    # The stand-in paints white squares where a template puts the eyes in its crop;
    # pasted back, they must cover the face's eye landmarks for the family's template
    # and miss them for the other one.
    size = ENHANCERS[name][1]
    eyes = [(int(round(x)), int(round(y))) for x, y in FACE.landmarks[:2]]
    for template, white in ((right, True), (wrong, False)):
        path = make_enhancer(
            models / f"{name}-marks-{white}.onnx",
            size,
            marks=[tuple(point * size) for point in template[:2]],
            mark_radius=round(0.02 * size),
        )
        result = load(sessions, name, path).enhance(t1, FACE, blend=1.0)
        for x, y in eyes:
            assert (result[y, x].min() >= 250) == white, (name, white, result[y, x])


def test_a_dynamic_file_takes_the_catalogue_size_then_the_family_default(
    t1: np.ndarray, sessions: SessionCache, models
) -> None:
    dynamic = {"input_shape": (1, 3, "height", "width"), "output_shape": (1, 3, "height", "width")}
    path = make_enhancer(models / "dynamic.onnx", 512, **dynamic)
    assert load(sessions, "gfpgan_1.4", path).size == REGISTRY["gfpgan_1.4"].input_size == 512
    assert REGISTRY["restoreformer_plus_plus"].input_size is None
    assert load(sessions, "restoreformer_plus_plus", path).size == 512
    # A 256 entry aligns with arcface_128 even when only the catalogue says 256.
    marked = make_enhancer(
        models / "dynamic-256.onnx",
        256,
        marks=[tuple(point * 256) for point in ARCFACE_128[:2]],
        mark_radius=5,
        **dynamic,
    )
    enhancer = load(sessions, "gpen_bfr_256", marked, input_size=256)
    assert enhancer.size == 256
    result = enhancer.enhance(t1, FACE, blend=1.0)
    for x, y in FACE.landmarks[:2]:
        assert result[int(round(y)), int(round(x))].min() >= 250


def test_a_float16_file_is_fed_float16(sessions: SessionCache, models) -> None:
    path = make_enhancer(models / "fp16.onnx", 512, elem_type=TensorProto.FLOAT16)
    crop = np.empty((512, 512, 3), np.uint8)
    crop[...] = (10, 100, 200)
    restored = load(sessions, "gfpgan_1.4", path).restore(crop)
    assert levels(restored, crop).max() <= 1


def test_the_weight_input_receives_the_fidelity(
    t1: np.ndarray, sessions: SessionCache, models
) -> None:
    # output = input·weight: the fidelity w maps a pixel v to ((v/127.5 − 1)·w + 1)·127.5.
    weighted = load(sessions, "codeformer", make_enhancer(models / "w.onnx", 512, weight=True))
    assert weighted.has_fidelity
    crop = np.empty((512, 512, 3), np.uint8)
    crop[...] = (10, 100, 200)
    for fidelity in (0.2, 0.9):
        expected = np.rint(((crop[0, 0] / 127.5 - 1) * fidelity + 1) * 127.5)
        assert levels(weighted.restore(crop, fidelity=fidelity)[256, 256], expected).max() <= 1
    low = weighted.enhance(t1, FACE, blend=1.0, fidelity=0.2)
    high = weighted.enhance(t1, FACE, blend=1.0, fidelity=0.9)
    assert levels(low, high).max() > 50
    # A float32 ``weight`` is fed float32 (onnxruntime refuses a float64 feed there).
    single = make_enhancer(models / "w32.onnx", 512, weight=True, weight_type=TensorProto.FLOAT)
    restored = load(sessions, "codeformer", single).restore(crop, fidelity=0.2)
    assert restored[0, 0, 0] == round((10 / 127.5 - 1) * 0.2 * 127.5 + 127.5)  # 104
    # Files without ``weight`` are fed without it, and fidelity changes nothing.
    plain = load(sessions, "codeformer", make_enhancer(models / "plain.onnx", 512))
    assert not plain.has_fidelity
    assert np.array_equal(
        plain.enhance(t1, FACE, blend=1.0, fidelity=0.1),
        plain.enhance(t1, FACE, blend=1.0, fidelity=0.9),
    )
    with pytest.raises(InvalidOptions, match="enhancer_fidelity"):
        weighted.enhance(t1, FACE, blend=1.0, fidelity=1.5)


def test_blend_and_mask_builder(t1: np.ndarray, sessions: SessionCache, models) -> None:
    path = make_enhancer(models / "mask.onnx", 512, gain=(0.8,) * 3, offset=(0.15,) * 3)
    enhancer = load(sessions, "gfpgan_1.4", path)
    zero = enhancer.enhance(t1, FACE, blend=0.0)
    assert zero is not t1 and np.array_equal(zero, t1)
    # FaceFusion: addWeighted(frame, 1 − α, pasted, α) over the whole frame.
    full = enhancer.enhance(t1, FACE, blend=1.0)
    reference = cv2.addWeighted(t1, 0.3, full, 0.7, 0.0)
    assert levels(enhancer.enhance(t1, FACE, blend=0.7), reference).max() <= 1
    seen = []

    def nothing(crop, restored, matrix, face):
        seen.append((crop.shape, restored.shape, np.shape(matrix), face is FACE))
        return np.zeros((512, 512), np.float32)

    assert np.array_equal(enhancer.enhance(t1, FACE, blend=1.0, mask_builder=nothing), t1)
    assert seen == [((512, 512, 3), (512, 512, 3), (2, 3), True)]
    with pytest.raises(InvalidInput, match="512x512"):
        enhancer.enhance(t1, FACE, blend=1.0, mask_builder=lambda *_: np.ones((256, 256)))
    with pytest.raises(InvalidOptions, match="enhancer_blend"):
        enhancer.enhance(t1, FACE, blend=-0.1)


@pytest.mark.parametrize(
    ("look", "match"),
    [
        (
            {"input_shape": (1, 1, 512, 512)},
            r"codeformer.*input 'input' has shape \[1, 1, 512, 512\]",
        ),
        (
            {"input_shape": (1, 3, 512, 256), "output_shape": (1, 3, 512, 256)},
            r"codeformer: input 'input' has shape \[1, 3, 512, 256\], expected a square",
        ),
        (
            {"input_name": "image", "extra_inputs": ("strength",)},
            r"codeformer.*inputs 'image' \[1, 3, 512, 512\], 'strength'.*takes 1: 'input'",
        ),
        (
            {"output_shape": (1, 3, 256, 256), "crop_output": 256},
            r"codeformer: output 'output' has shape \[1, 3, 256, 256\]",
        ),
        ({"weight": True, "weight_shape": (2,)}, r"codeformer: input 'weight' has shape \[2\]"),
    ],
)
def test_a_file_with_the_wrong_tensors_is_refused(look: dict, match: str, tmp_path) -> None:
    path = make_enhancer(tmp_path / "wrong.onnx", 512, **look)
    with pytest.raises(ModelUnavailable, match=match):
        load(SessionCache("cpu"), "codeformer", path)


def test_an_output_of_the_wrong_size_at_run_time_is_refused(sessions: SessionCache, models) -> None:
    dynamic = (1, 3, "height", "width")
    path = make_enhancer(
        models / "shrinks.onnx", 512, input_shape=dynamic, output_shape=dynamic, crop_output=256
    )
    enhancer = load(sessions, "gpen_bfr_512", path)
    with pytest.raises(
        ModelUnavailable, match=r"gpen_bfr_512: output 'output'.*\[1, 3, 256, 256\]"
    ):
        enhancer.restore(np.zeros((512, 512, 3), np.uint8))


def test_not_an_enhancer_or_no_file(sessions: SessionCache, models) -> None:
    path = make_enhancer(models / "ok.onnx", 512)
    with pytest.raises(ModelUnavailable, match="inswapper_128: family 'inswapper'"):
        FaceEnhancer(sessions, REGISTRY["inswapper_128"], path)
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load(sessions, "gfpgan_1.4", models / "absent.onnx")
