"""Face masks (MODELS-2.md §6): box, occlusion, region, area, soften and combination,
through the real loading code on stand-in XSeg and BiSeNet files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.align import transform_points, warp_face
from engine.errors import InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.masks import (
    FaceParser,
    MaskBuilder,
    MaskSettings,
    Occluder,
    area_mask,
    best_class_in,
    box_mask,
    combine,
    is_empty,
    occlusion_mask,
    parse_padding,
    soften,
)
from engine.models.registry import REGISTRY
from engine.runtime import SessionCache
from tests.standins.maskers import make_occluder, make_parser, occluder_pattern

# One face of t1.jpg (insightface SCRFD on scrfd_2.5g): box and five landmarks.
T1_FACE = Face(
    box=np.array([465.4, 265.4, 573.4, 416.1], np.float32),
    score=0.9,
    landmarks=np.array(
        [[491.7, 318.9], [540.8, 331.9], [507.1, 360.7], [483.9, 367.1], [531.9, 378.4]],
        np.float32,
    ),
)

# MODELS-2.md §6.2 and §6.3, written out here rather than imported from the product.
REGION_IDS = {
    "skin": 1, "left-eyebrow": 2, "right-eyebrow": 3, "left-eye": 4, "right-eye": 5,
    "glasses": 6, "nose": 10, "mouth": 11, "upper-lip": 12, "lower-lip": 13,
}  # fmt: skip
UPPER_FACE = [0, 1, 2, 31, 32, 33, 34, 35, 14, 15, 16, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17]
LOWER_FACE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 35, 34, 33, 32, 31]
MOUTH = list(range(48, 68))


def expected_soften(mask: np.ndarray, sigma: float) -> np.ndarray:
    """§6.3: Gaussian σ, clip to [0.5, 1], m → (m − 0.5)·2."""
    blurred = cv2.GaussianBlur(np.clip(mask, 0, 1).astype(np.float32), (0, 0), sigma)
    return (np.clip(blurred, 0.5, 1.0) - 0.5) * 2


# -- models ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tmp_path_factory.mktemp("maskers")


@pytest.fixture(scope="module")
def sessions():
    return SessionCache("cpu")


def occluder(sessions, models, visible="upper", name="xseg_1", **layout) -> Occluder:
    suffix = "_".join(f"{k}{'x'.join(map(str, v))}" for k, v in layout.items())
    path = make_occluder(models / f"{name}_{visible}_{suffix}.onnx", visible, **layout)
    return Occluder(sessions, REGISTRY[name], path)


def parser(sessions, models, tag: str, name="bisenet_resnet_34", **kwargs) -> FaceParser:
    path = make_parser(models / f"{name}_{tag}.onnx", **kwargs)
    return FaceParser(sessions, REGISTRY[name], path)


@pytest.fixture(scope="module")
def t1_crop(t1):
    crop, _ = warp_face(t1, T1_FACE.landmarks, "arcface_128", 256)
    return crop


# -- box and soften --------------------------------------------------------------------------


def test_box_mask_matches_the_documented_numbers() -> None:
    # S = 256, blur 0.3: blur amount ⌊256·0.5·0.3⌋ = 38, zeroed border 19 px, σ 9.5.
    expected = np.ones((256, 256), np.float32)
    expected[:19], expected[-19:], expected[:, :19], expected[:, -19:] = 0, 0, 0, 0
    expected = cv2.GaussianBlur(expected, (0, 0), 9.5)
    mask = box_mask(256, 0.3, (0.0, 0.0, 0.0, 0.0))
    np.testing.assert_allclose(mask, expected, atol=1e-6)
    # Padding top 10 %, bottom 20 %: strips of max(19, ⌊25.6⌋) = 25 and max(19, ⌊51.2⌋) = 51.
    padded = np.ones((256, 256), np.float32)
    padded[:25], padded[-51:], padded[:, :19], padded[:, -19:] = 0, 0, 0, 0
    padded = cv2.GaussianBlur(padded, (0, 0), 9.5)
    np.testing.assert_allclose(box_mask(256, 0.3, (0.1, 0.0, 0.2, 0.0)), padded, atol=1e-6)
    # No blur: a 1-px zeroed border, no feather.
    sharp = box_mask(128, 0.0, (0.0, 0.0, 0.0, 0.0))
    assert sharp[0].max() == 0 and sharp[1:-1, 1:-1].min() == 1


def test_box_mask_is_shared_and_read_only() -> None:
    first = box_mask(512, 0.3, (0.0, 0.0, 0.0, 0.0))
    assert box_mask(512, 0.3, (0.0, 0.0, 0.0, 0.0)) is first
    assert box_mask(512, 0.4, (0.0, 0.0, 0.0, 0.0)) is not first
    with pytest.raises(ValueError):
        first[0, 0] = 1.0


@pytest.mark.parametrize(("size", "sigma"), [(256, 5.0), (512, 10.0), (128, 2.5)])
def test_soften_matches_the_documented_step(size: int, sigma: float) -> None:
    rng = np.random.default_rng(size)
    mask = np.zeros((size, size), np.float32)
    for _ in range(6):
        x, y = rng.integers(0, size, 2)
        cv2.circle(mask, (int(x), int(y)), int(rng.integers(size // 16, size // 4)), 1.0, -1)
    mask[: size // 3, : size // 3] = 0.7  # a grey patch: soften is not only for 0/1
    np.testing.assert_allclose(soften(mask), expected_soften(mask, sigma), atol=1e-6)


# -- occlusion -------------------------------------------------------------------------------


def test_occlusion_is_visible_above_and_covered_below_on_a_t1_crop(
    sessions, models, t1_crop
) -> None:
    upper = occluder(sessions, models, "upper")
    mask = occlusion_mask([upper], t1_crop)
    assert mask.shape == (256, 256) and mask.dtype == np.float32
    assert mask[:100].min() > 0.99  # upper half: visible
    assert mask[128:].max() == 0.0  # lower half: covered (soften sends < 0.5 to 0)
    np.testing.assert_allclose(mask, expected_soften(occluder_pattern("upper"), 5.0), atol=1e-6)
    # A pixel-boosted 512² crop: the 256² result is resized back and softened with σ 10.
    big = cv2.resize(t1_crop, (512, 512))
    expected = expected_soften(cv2.resize(occluder_pattern("upper"), (512, 512)), 10.0)
    np.testing.assert_allclose(occlusion_mask([upper], big), expected, atol=1e-6)


def test_many_occluders_take_the_element_wise_minimum(sessions, models, t1_crop) -> None:
    upper = occluder(sessions, models, "upper")
    left = occluder(sessions, models, "left", name="xseg_2")
    both = occlusion_mask([upper, left], t1_crop)
    minimum = np.minimum(occluder_pattern("upper"), occluder_pattern("left"))
    np.testing.assert_allclose(both, expected_soften(minimum, 5.0), atol=1e-6)
    assert both[:100, :100].min() > 0.99 and both[:, 128:].max() == 0 and both[128:].max() == 0


def test_occluder_feed_is_nhwc_bgr_over_255(sessions, models) -> None:
    # The stand-in returns the fed channel 0. Blue 204 (0.8) on the left, 102 (0.4) on
    # the right, red and green the other way round: an RGB feed would swap the halves
    # and a feed without /255 would clip both to 1.
    crop = np.zeros((256, 256, 3), np.uint8)
    crop[:, :128] = (204, 102, 102)
    crop[:, 128:] = (102, 204, 204)
    blue = occluder(sessions, models, "blue")
    mask = occlusion_mask([blue], crop)
    np.testing.assert_allclose(mask, expected_soften(crop[:, :, 0] / 255.0, 5.0), atol=1e-5)
    assert abs(mask[128, 40] - 0.6) < 1e-3 and mask[128, 200] == 0.0


@pytest.mark.parametrize("shape", [(1, 256, 256), (1, 1, 256, 256)])
def test_occluder_output_layouts_are_read_by_element_count(
    sessions, models, t1_crop, shape
) -> None:
    reference = occlusion_mask([occluder(sessions, models, "upper")], t1_crop)
    other = occluder(sessions, models, "upper", output_shape=shape)
    np.testing.assert_array_equal(occlusion_mask([other], t1_crop), reference)


def test_wrong_occluder_tensors_name_the_model_and_tensor(sessions, models) -> None:
    with pytest.raises(ModelUnavailable, match=r"xseg_1.*'input'.*\[1, 3, 256, 256\]"):
        occluder(sessions, models, "upper", input_shape=(1, 3, 256, 256))
    with pytest.raises(ModelUnavailable, match=r"xseg_3.*'output'.*\[1, 128, 128, 1\]"):
        occluder(sessions, models, "upper", name="xseg_3", output_shape=(1, 128, 128, 1))
    path = make_occluder(models / "misfiled.onnx")
    with pytest.raises(InvalidOptions, match="bisenet_resnet_18 is a parser"):
        Occluder(sessions, REGISTRY["bisenet_resnet_18"], path)


# -- region ----------------------------------------------------------------------------------

NOSE_BLOCK = (128, 256, 192, 320)  # in the 512² parser input → crop rows 64:128, cols 96:160
SKIN_BLOCK = (320, 448, 64, 192)
HAIR_BLOCK = (0, 64, 0, 512)


@pytest.fixture(scope="module")
def block_parser(sessions, models):
    blocks = {10: [NOSE_BLOCK], 1: [SKIN_BLOCK], 17: [HAIR_BLOCK]}
    return parser(sessions, models, "blocks", blocks=blocks)


def block_in_crop(block, size: int = 256) -> np.ndarray:
    y0, y1, x0, x1 = (v * size // 512 for v in block)
    inside = np.zeros((size, size), np.float32)
    inside[y0:y1, x0:x1] = 1
    return inside


def test_region_mask_is_one_only_around_the_chosen_class(block_parser, t1_crop) -> None:
    nose = block_parser.mask(t1_crop, [REGION_IDS["nose"]])
    np.testing.assert_allclose(nose, expected_soften(block_in_crop(NOSE_BLOCK), 5.0), atol=1e-6)
    assert nose[80:112, 112:144].min() > 0.99
    ring = cv2.dilate(block_in_crop(NOSE_BLOCK), np.ones((3, 3), np.uint8)) > 0
    assert nose[~ring].max() == 0.0  # nothing outside the block's edge
    # Default regions (all ten): nose and skin, never hair (class 17).
    settings = MaskSettings(types=("region",))
    everything = MaskBuilder(settings, parser=block_parser).build(
        t1_crop, t1_crop, np.eye(2, 3), T1_FACE
    )
    expected = np.maximum(block_in_crop(NOSE_BLOCK), block_in_crop(SKIN_BLOCK))
    np.testing.assert_allclose(everything, expected_soften(expected, 5.0), atol=1e-6)
    assert everything[:32].max() == 0.0
    glasses = block_parser.mask(t1_crop, [REGION_IDS["glasses"]])
    assert is_empty(glasses)


def test_region_feed_is_rgb_with_imagenet_normalisation(sessions, models) -> None:
    # The stand-in scores class 10 with the fed channel 0 against a background of 1.5:
    # only R = 255 after (1 − 0.485)/0.229 = 2.25 wins; B = 255 or an unnormalised
    # feed (at most 1) does not.
    red = parser(sessions, models, "red", red_class=10)
    crop = np.zeros((256, 256, 3), np.uint8)
    crop[:, :] = (255, 0, 0)  # blue everywhere
    crop[64:192, 64:128] = (0, 0, 255)  # a red block
    fed_red = cv2.resize(crop, (512, 512))[:, :, 2] / 255.0
    np.testing.assert_allclose(red.scores(crop)[10], (fed_red - 0.485) / 0.229, atol=1e-5)
    mask = red.mask(crop, [10])
    assert mask[80:176, 80:112].min() > 0.99
    assert mask[:, 140:].max() == 0.0 and mask[:50].max() == 0.0


def test_best_class_matches_argmax_with_ties() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(19, 64, 64)).astype(np.float32)  # many ties
    for classes in ([10], [0, 1], [1, 2, 3, 4, 5, 6, 10, 11, 12, 13], [18]):
        expected = np.isin(np.argmax(scores, axis=0), classes)
        np.testing.assert_array_equal(best_class_in(scores, classes), expected)
    assert best_class_in(scores, range(19)).all() and not best_class_in(scores, []).any()


def test_wrong_parser_tensors_name_the_model_and_tensor(sessions, models) -> None:
    with pytest.raises(ModelUnavailable, match=r"bisenet_resnet_34.*'output'.*\[1, 18"):
        parser(sessions, models, "eighteen", classes=18)
    with pytest.raises(ModelUnavailable, match=r"bisenet_resnet_18.*'input'.*\[1, 3, 256, 256\]"):
        parser(sessions, models, "small", name="bisenet_resnet_18", input_shape=(1, 3, 256, 256))


# -- area ------------------------------------------------------------------------------------


def synthetic_68() -> np.ndarray:
    """A plausible 68-point face in 256² crop coordinates (iBUG order)."""
    points = np.zeros((68, 2))
    angles = np.pi - np.arange(17) * np.pi / 16
    points[:17] = np.stack([128 + 90 * np.cos(angles), 110 + 110 * np.sin(angles)], 1)
    points[17:22] = np.stack([np.linspace(55, 115, 5), np.full(5, 75)], 1)
    points[22:27] = np.stack([np.linspace(141, 201, 5), np.full(5, 75)], 1)
    points[27:31] = np.stack([np.full(4, 128), np.linspace(90, 140, 4)], 1)
    points[31:36] = np.stack([np.linspace(108, 148, 5), np.full(5, 150)], 1)
    eye = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    points[36:42] = np.stack([85 + 15 * np.cos(eye), 100 + 6 * np.sin(eye)], 1)
    points[42:48] = np.stack([171 + 15 * np.cos(eye), 100 + 6 * np.sin(eye)], 1)
    outer = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    points[48:60] = np.stack([128 + 40 * np.cos(outer), 190 + 20 * np.sin(outer)], 1)
    inner = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    points[60:68] = np.stack([128 + 24 * np.cos(inner), 190 + 8 * np.sin(inner)], 1)
    return points


# Frame → crop: rotate 10°, scale 0.8, shift; the face's 68 points live in the frame.
ANGLE = np.deg2rad(10)
MATRIX = np.array(
    [
        [0.8 * np.cos(ANGLE), -0.8 * np.sin(ANGLE), -200.0],
        [0.8 * np.sin(ANGLE), 0.8 * np.cos(ANGLE), -150.0],
    ]
)


def frame_points(crop_points: np.ndarray) -> np.ndarray:
    return transform_points(crop_points, cv2.invertAffineTransform(MATRIX))


def test_area_mouth_is_one_only_inside_the_hull_of_points_48_to_67() -> None:
    crop_points = synthetic_68()
    mask = area_mask(256, MATRIX, frame_points(crop_points), MOUTH)
    hull = cv2.convexHull(crop_points[MOUTH].astype(np.float32))
    checked_inside = checked_outside = 0
    for y in range(0, 256, 2):
        for x in range(0, 256, 2):
            distance = cv2.pointPolygonTest(hull, (float(x), float(y)), True)
            if distance > 12:  # deeper than 2.4σ: the blur keeps it near 1
                assert mask[y, x] > 0.95, (x, y)
                checked_inside += 1
            elif distance < -1:  # outside a convex hull the blur stays below 0.5
                assert mask[y, x] == 0.0, (x, y)
                checked_outside += 1
    assert checked_inside > 20 and checked_outside > 10000
    assert mask[190, 128] > 0.99 and mask[100, 85] == 0.0  # mouth centre; an eye


@pytest.mark.parametrize(
    ("area", "indices"),
    [("upper-face", UPPER_FACE), ("lower-face", LOWER_FACE), ("mouth", MOUTH)],
)
def test_area_uses_exactly_the_documented_landmarks(area: str, indices: list[int]) -> None:
    settings = MaskSettings(types=("area",), areas=(area,))
    crop_points = synthetic_68()
    reference = area_mask(256, MATRIX, frame_points(crop_points), settings.area_points)
    used = set()
    for index in range(68):
        moved = crop_points.copy()
        moved[index] = (-60.0, 300.0)  # far outside the crop, below left
        mask = area_mask(256, MATRIX, frame_points(moved), settings.area_points)
        if not np.array_equal(mask, reference):
            used.add(index)
    assert used == set(indices)


def test_areas_share_one_hull() -> None:
    # Between the nose bottom (y 150) and the upper lip (y 170) lies a gap that neither
    # the upper-face nor the mouth hull covers, but their union's one hull does.
    points = frame_points(synthetic_68())
    both = MaskSettings(types=("area",), areas=("upper-face", "mouth"))
    joined = area_mask(256, MATRIX, points, both.area_points)
    assert joined[160, 128] > 0.99
    assert area_mask(256, MATRIX, points, UPPER_FACE)[160, 128] == 0.0
    assert area_mask(256, MATRIX, points, MOUTH)[160, 128] == 0.0


def test_area_without_68_points_is_a_clear_error() -> None:
    with pytest.raises(InvalidOptions, match="68-point landmarks"):
        MaskBuilder(MaskSettings(types=("area",))).build(
            np.zeros((256, 256, 3), np.uint8), np.zeros((256, 256, 3), np.uint8), MATRIX, T1_FACE
        )


# -- combination -----------------------------------------------------------------------------


def test_combine_is_the_clipped_element_wise_minimum() -> None:
    rng = np.random.default_rng(7)
    masks = [rng.uniform(-0.2, 1.2, (64, 64)).astype(np.float32) for _ in range(3)]
    expected = np.clip(np.minimum(np.minimum(masks[0], masks[1]), masks[2]), 0, 1)
    combined = combine(masks)
    np.testing.assert_array_equal(combined, expected)
    assert combined is not masks[0]
    single = box_mask(64, 0.3, (0.0, 0.0, 0.0, 0.0))
    assert combine([single]).flags.writeable  # never the shared cached box


def test_builder_uses_the_target_crop_for_box_and_occlusion_and_the_swap_for_the_rest(
    sessions, models
) -> None:
    blue = occluder(sessions, models, "blue")
    red = parser(sessions, models, "red", red_class=REGION_IDS["nose"])
    # Target crop: visible (blue 255) on the left half; swapped crop: visible on the
    # right half and a red block that the parser labels nose.
    crop = np.zeros((256, 256, 3), np.uint8)
    crop[:, :128, 0] = 255
    swapped = np.zeros((256, 256, 3), np.uint8)
    swapped[:, 128:, 0] = 255
    swapped[96:224, 32:224] = (0, 0, 255)
    crop_points = synthetic_68()
    face = Face(T1_FACE.box, 0.9, T1_FACE.landmarks, landmarks_68=frame_points(crop_points))
    settings = MaskSettings(
        types=("box", "occlusion", "area", "region"),
        blur=0.2,
        padding=(0.0, 0.1, 0.0, 0.0),
        regions=("nose",),
        areas=("mouth",),
    )
    builder = MaskBuilder(settings, (blue,), red)
    mask = builder.build(crop, swapped, MATRIX, face)
    parts = [
        box_mask(256, 0.2, (0.0, 0.1, 0.0, 0.0)),
        occlusion_mask([blue], crop),
        area_mask(256, MATRIX, face.landmarks_68, MOUTH),
        red.mask(swapped, [10]),
    ]
    np.testing.assert_array_equal(mask, np.minimum.reduce(parts))
    assert mask.dtype == np.float32 and mask.shape == (256, 256)
    assert mask[190, 100] > 0.9  # mouth, left half, red block, inside the box
    assert mask[190, 150] == 0.0  # mouth, but the right half: occluded in the target crop
    # The enhancer: box without padding, occlusion only.
    enhanced = builder.enhancer_mask(crop, swapped, MATRIX, face)
    expected = np.minimum(box_mask(256, 0.2, (0.0, 0.0, 0.0, 0.0)), occlusion_mask([blue], crop))
    np.testing.assert_array_equal(enhanced, expected)
    plain = MaskBuilder(MaskSettings(padding=(0.3, 0.3, 0.3, 0.3)))
    np.testing.assert_array_equal(
        plain.enhancer_mask(crop, swapped, MATRIX, face), box_mask(256, 0.3, (0, 0, 0, 0))
    )


def test_a_mask_without_area_is_reported(t1_crop) -> None:
    closed = MaskBuilder(MaskSettings(padding=(0.5, 0.0, 0.5, 0.0)))
    mask = closed.build(t1_crop, t1_crop, np.eye(2, 3), T1_FACE)
    assert is_empty(mask)
    assert not is_empty(MaskBuilder().build(t1_crop, t1_crop, np.eye(2, 3), T1_FACE))


# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"types": ("box", "hair")}, r"unknown face mask type 'hair'.*box, occlusion, region"),
        ({"types": ()}, "at least one"),
        ({"regions": ("nose", "ear")}, r"unknown face mask region 'ear'.*skin, left-eyebrow"),
        ({"types": ("region",), "regions": ()}, "regions: choose at least one"),
        ({"areas": ("chin",)}, r"unknown face mask area 'chin'.*upper-face, lower-face, mouth"),
        ({"blur": 1.5}, r"blur must be between 0 and 1, got 1.5"),
        ({"blur": float("nan")}, r"blur must be a number"),
        ({"padding": (0.0, 0.6, 0.0, 0.0)}, r"padding must be between 0 and 0.5"),
        ({"padding": (0.1,) * 5}, r"one to four values"),
    ],
)
def test_bad_options_are_clear_errors(kwargs, message) -> None:
    with pytest.raises(InvalidOptions, match=message):
        MaskSettings(**kwargs)


def test_settings_defaults_and_padding_forms() -> None:
    settings = MaskSettings()
    assert settings.types == ("box",) and settings.blur == 0.3
    assert settings.padding == (0.0, 0.0, 0.0, 0.0)
    assert settings.region_classes == tuple(REGION_IDS.values())
    assert set(settings.area_points) == set(UPPER_FACE + LOWER_FACE + MOUTH)
    assert parse_padding(0.1) == (0.1, 0.1, 0.1, 0.1)
    assert parse_padding((0.1, 0.2)) == (0.1, 0.2, 0.1, 0.2)
    assert parse_padding((0.1, 0.2, 0.3)) == (0.1, 0.2, 0.3, 0.2)
    assert MaskSettings(types=("box", "area", "box")).types == ("box", "area")


def test_builder_refuses_a_type_without_its_model() -> None:
    with pytest.raises(InvalidOptions, match="occluder"):
        MaskBuilder(MaskSettings(types=("box", "occlusion")))
    with pytest.raises(InvalidOptions, match="parser"):
        MaskBuilder(MaskSettings(types=("region",)))
