"""Swappers and paste-back on real photos: classic, inswapper (stand-in model) vs insightface."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.align import estimate_affine, template_points
from engine.errors import InvalidInput, ModelUnavailable
from engine.faces import Face
from engine.options import SwapOptions
from engine.paste import box_mask, color_transfer, paste_back, seamless_paste
from engine.runtime import SessionCache
from engine.swappers.base import SourceIdentity
from engine.swappers.classic import ClassicSwapper, oval_mask
from engine.swappers.inswapper import InSwapper
from tests.assets import TOM_HANKS
from tests.standins.inswapper import make_inswapper

# The six faces of t1.jpg as insightface's SCRFD finds them with scrfd_2.5g at 640
# (box x1, y1, x2, y2; five landmarks). Used only if the MTCNN detector is unavailable.
T1_SCRFD = [
    ([745.8, 339.2, 845.7, 480.6], [[760.2, 395.7], [801.9, 401.1], [770.8, 430.7], [763.4, 437.7], [805.6, 441.8]]),
    ([465.4, 265.4, 573.4, 416.1], [[491.7, 318.9], [540.8, 331.9], [507.1, 360.7], [483.9, 367.1], [531.9, 378.4]]),
    ([58.5, 262.9, 168.8, 395.6], [[87.3, 330.4], [128.9, 306.3], [120.6, 336.8], [114.9, 369.1], [148.8, 349.6]]),
    ([1131.4, 271.1, 1225.7, 398.9], [[1148.3, 326.5], [1192.4, 322.2], [1167.5, 350.1], [1154.8, 366.5], [1195.7, 362.8]]),
    ([904.8, 54.2, 1013.2, 204.2], [[916.3, 119.3], [944.8, 113.6], [919.3, 149.6], [936.8, 171.2], [958.3, 165.8]]),
    ([269.0, 147.3, 371.2, 265.1], [[287.0, 210.7], [320.6, 194.7], [305.1, 227.9], [311.2, 245.0], [337.9, 231.0]]),
]  # fmt: skip


@pytest.fixture(scope="module")
def t1_faces(t1: np.ndarray) -> list[Face]:
    try:
        from engine.detectors.mtcnn import MtcnnDetector
    except ImportError:
        return [
            Face(np.array(box, np.float32), 0.9, np.array(points, np.float32))
            for box, points in T1_SCRFD
        ]
    faces = MtcnnDetector(SessionCache("cpu")).detect(t1, 0.5)
    assert len(faces) >= 5, "the detector should find (nearly) all six faces of t1.jpg"
    return faces


@pytest.fixture(scope="module")
def hanks() -> SourceIdentity:
    """Tom_Hanks_54745.png is an ArcFace-aligned 112 px crop: its landmarks are the template."""
    image = cv2.imread(str(TOM_HANKS))
    points = template_points("arcface_112_v2", 112)
    face = Face(np.array([0, 0, 112, 112], np.float32), 1.0, points.astype(np.float32))
    embedding = np.random.default_rng(7).normal(size=512).astype(np.float32) * 20
    return SourceIdentity(image=image, face=face, embedding=embedding)


@pytest.fixture(scope="module")
def inswapper_file(tmp_path_factory: pytest.TempPathFactory):
    return make_inswapper(tmp_path_factory.mktemp("models") / "inswapper_128.onnx")


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 0


def away_from_faces(shape: tuple[int, ...], faces: list[Face], grow: float) -> np.ndarray:
    """True where no face box, grown by ``grow`` of its size on each side, reaches."""
    keep = np.ones(shape[:2], dtype=bool)
    for face in faces:
        x1, y1, x2, y2 = face.box
        w, h = x2 - x1, y2 - y1
        xa, ya = max(int(x1 - grow * w), 0), max(int(y1 - grow * h), 0)
        keep[ya : int(y2 + grow * h) + 1, xa : int(x2 + grow * w) + 1] = False
    return keep


# -- masks and paste-back ----------------------------------------------------------------


def test_box_mask_blur_and_padding_shape_the_mask() -> None:
    hard = box_mask(128, blur=0.0, padding=0.0)
    assert set(np.unique(hard)) == {0.0, 1.0}
    assert hard[0].max() == 0 and hard[:, -1].max() == 0 and hard[1:-1, 1:-1].min() == 1

    padded = box_mask(128, blur=0.0, padding=0.1)
    assert padded[:12].max() == 0 and padded[-12:].max() == 0 and padded[:, :12].max() == 0
    assert padded[12:-12, 12:-12].min() == 1

    top_only = box_mask(128, blur=0.0, padding=(0.25, 0.0, 0.0, 0.0))
    assert top_only[:32].max() == 0 and top_only[32:-1, 64].min() == 1

    soft, softer = box_mask(128, blur=0.3), box_mask(128, blur=0.8)
    assert soft[64, 64] == pytest.approx(1.0, abs=1e-3)
    # More blur: a wider feather, so less weight near the edges.
    assert softer[64, 20] < soft[64, 20] < 1.0
    assert np.count_nonzero((softer > 0.01) & (softer < 0.99)) > np.count_nonzero(
        (soft > 0.01) & (soft < 0.99)
    )
    non_square = box_mask((200, 100), blur=0.3)
    assert non_square.shape == (100, 200)

    with pytest.raises(InvalidInput, match="blur"):
        box_mask(128, blur=1.5)
    with pytest.raises(InvalidInput, match="padding"):
        box_mask(128, padding=0.7)


def test_paste_back_touches_only_pixels_under_the_mask(
    t1: np.ndarray, t1_faces: list[Face]
) -> None:
    frame = t1.copy()
    face = t1_faces[0]
    matrix = estimate_affine(face.landmarks, "arcface_128", 128)
    crop = np.full((128, 128, 3), (20, 200, 40), dtype=np.uint8)
    mask = box_mask(128, blur=0.3, padding=0.05)
    result = paste_back(frame, crop, matrix, mask)

    assert np.array_equal(frame, t1), "the input frame must not be modified"
    inverse = cv2.invertAffineTransform(matrix)
    footprint = cv2.warpAffine(mask, inverse, (frame.shape[1], frame.shape[0]))
    assert np.array_equal(result[footprint == 0], frame[footprint == 0])
    inside = footprint > 0.999
    assert inside.sum() > 1000
    assert np.abs(result[inside].astype(int) - (20, 200, 40)).max() <= 1
    # Only the face's neighbourhood may differ.
    ys, xs = np.nonzero(changed(result, frame))
    x1, y1, x2, y2 = face.box
    assert xs.min() >= x1 - (x2 - x1) and xs.max() <= x2 + (x2 - x1)
    assert ys.min() >= y1 - (y2 - y1) and ys.max() <= y2 + (y2 - y1)

    untouched = paste_back(frame, crop, matrix, np.zeros((128, 128), np.float32))
    assert np.array_equal(untouched, frame)


def test_paste_back_clips_at_the_frame_border() -> None:
    frame = np.full((60, 80, 3), 90, dtype=np.uint8)
    # A face half outside the top-left corner.
    matrix = np.array([[1.0, 0.0, 40.0], [0.0, 1.0, 40.0]])
    crop = np.full((64, 64, 3), 250, dtype=np.uint8)
    result = paste_back(frame, crop, matrix, box_mask(64, blur=0.0))
    assert result[5, 5].tolist() == [250, 250, 250]
    assert result[40, 60].tolist() == [90, 90, 90]


def test_paste_back_rejects_bad_input(t1: np.ndarray) -> None:
    crop = np.zeros((128, 128, 3), np.uint8)
    matrix = np.eye(2, 3)
    with pytest.raises(InvalidInput, match="mask shape"):
        paste_back(t1, crop, matrix, np.ones((64, 64), np.float32))
    with pytest.raises(InvalidInput, match="frame"):
        paste_back(t1.astype(np.float32), crop, matrix, np.ones((128, 128), np.float32))
    with pytest.raises(InvalidInput, match="2x3"):
        paste_back(t1, crop, np.eye(3), np.ones((128, 128), np.float32))


def test_color_transfer_matches_lab_statistics_inside_the_mask(t1: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    reference = t1[300:428, 460:588].copy()
    crop = np.clip(rng.normal(90, 10, reference.shape), 0, 255).astype(np.uint8)
    crop[..., 0] = 200  # strongly blue
    mask = box_mask(128, blur=0.0, padding=0.1)
    result = color_transfer(crop, reference, mask)

    def lab_mean(image: np.ndarray) -> np.ndarray:
        lab = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_BGR2LAB)
        return lab[mask > 0.5].mean(axis=0)

    before = np.abs(lab_mean(crop) - lab_mean(reference))
    after = np.abs(lab_mean(result) - lab_mean(reference))
    assert before.max() > 20
    assert after.max() < 2.0
    # Towards black: the result is dark, not folded back up from below zero.
    dark = color_transfer(crop, np.zeros_like(reference), mask)[mask > 0.5]
    assert dark.mean() < 4
    with pytest.raises(InvalidInput, match="equal sizes"):
        color_transfer(crop, reference[:64], mask)


# -- classic -----------------------------------------------------------------------------


@pytest.mark.parametrize("blend_mode", ["alpha", "poisson"])
def test_classic_swap_changes_faces_and_nothing_else(
    t1: np.ndarray, t1_faces: list[Face], hanks: SourceIdentity, blend_mode: str
) -> None:
    swapper = ClassicSwapper()
    options = SwapOptions(swapper="classic", blend_mode=blend_mode)
    result = t1
    for face in t1_faces:
        result = swapper.swap(result, face, hanks, options)
    assert result is not t1 and result.shape == t1.shape and result.dtype == np.uint8

    diff = changed(result, t1)
    for face in t1_faces:
        # The middle of every face (between the eyes and the mouth) was replaced.
        centre = face.landmarks.mean(axis=0)
        half = 0.25 * np.linalg.norm(face.landmarks[1] - face.landmarks[0])
        x0, y0 = (centre - half).astype(int)
        x1, y1 = (centre + half).astype(int)
        patch = np.abs(result[y0:y1, x0:x1].astype(int) - t1[y0:y1, x0:x1]).mean()
        assert diff[y0:y1, x0:x1].mean() > 0.9
        assert patch > 3.0
    away = away_from_faces(t1.shape, t1_faces, grow=0.5)
    assert away.mean() > 0.5
    assert not diff[away].any(), "pixels away from the faces must stay exactly as they were"


def test_classic_swap_honours_padding_and_colour_correction(
    t1: np.ndarray, t1_faces: list[Face], hanks: SourceIdentity
) -> None:
    swapper = ClassicSwapper()
    face = t1_faces[0]
    plain = swapper.swap(t1, face, hanks, SwapOptions())
    padded = swapper.swap(t1, face, hanks, SwapOptions(mask_padding=0.1))
    raw = swapper.swap(t1, face, hanks, SwapOptions(color_correction=False))
    assert changed(padded, t1).sum() < 0.8 * changed(plain, t1).sum()
    assert np.abs(raw.astype(int) - plain).max() > 10

    sharp, soft = oval_mask(256, 0.0, 0.0), oval_mask(256, 0.6, 0.0)
    assert np.count_nonzero((soft > 0.05) & (soft < 0.95)) > 3 * np.count_nonzero(
        (sharp > 0.05) & (sharp < 0.95)
    )
    assert oval_mask(256, 0.0, 0.1).sum() < 0.6 * sharp.sum()


def test_classic_swap_rejects_bad_faces(t1: np.ndarray, hanks: SourceIdentity) -> None:
    bad = Face(np.zeros(4, np.float32), 1.0, np.full((5, 2), np.nan, np.float32))
    with pytest.raises(InvalidInput, match="landmarks"):
        ClassicSwapper().swap(t1, bad, hanks, SwapOptions())
    with pytest.raises(InvalidInput, match="target frame"):
        ClassicSwapper().swap(t1[..., 0], hanks.face, hanks, SwapOptions())


def test_seamless_paste_keeps_outside_pixels() -> None:
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 255, (200, 240, 3), dtype=np.uint8)
    crop = np.full((64, 64, 3), 128, np.uint8)
    matrix = np.array([[0.8, 0.0, -40.0], [0.0, 0.8, -30.0]])
    mask = box_mask(64, blur=0.3)
    result = seamless_paste(frame, crop, matrix, mask)
    footprint = cv2.warpAffine(mask, cv2.invertAffineTransform(matrix), (240, 200))
    assert np.array_equal(result[footprint == 0], frame[footprint == 0])
    assert changed(result, frame).sum() > 500


# -- inswapper ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::FutureWarning")  # skimage, inside insightface's align
def test_inswapper_matches_insightface_reference(
    t1: np.ndarray, t1_faces: list[Face], hanks: SourceIdentity, inswapper_file
) -> None:
    """Same model file, face and embedding through our code and insightface's ``INSwapper``.

    The raw 128×128 swapped crops agree (we round where insightface truncates,
    and alignment matrices differ in the 5th decimal: at most 2 levels). The
    pasted frames differ only in blending: we use FaceFusion's box mask, insightface
    an eroded white square. So: far outside the crop both equal the input exactly;
    deep inside the crop both equal the swapped crop; in the feather band both lie
    between the original and the swapped pixel.
    """
    from insightface.app.common import Face as InsightFace
    from insightface.model_zoo.inswapper import INSwapper as InsightInSwapper

    sessions = SessionCache("cpu")
    ours = InSwapper(sessions, inswapper_file)
    theirs = InsightInSwapper(model_file=str(inswapper_file), session=sessions.get(inswapper_file))
    target = max(t1_faces, key=lambda face: face.area)
    their_target = InsightFace(bbox=target.box, kps=target.landmarks, det_score=target.score)
    their_source = InsightFace(embedding=hanks.embedding)

    their_crop, their_matrix = theirs.get(t1, their_target, their_source, paste_back=False)
    our_crop, our_matrix, _ = ours.swap_crop(t1, target, ours.latent(hanks.embedding))
    assert np.abs(their_matrix - our_matrix).max() < 1e-3
    crop_diff = np.abs(their_crop.astype(int) - our_crop)
    assert crop_diff.max() <= 2 and crop_diff.mean() < 1.0

    their_frame = theirs.get(t1, their_target, their_source, paste_back=True)
    our_frame = ours.swap(t1, target, hanks, SwapOptions(color_correction=False))
    height, width = t1.shape[:2]
    inverse = cv2.invertAffineTransform(our_matrix)
    footprint = cv2.warpAffine(np.ones((128, 128), np.float32), inverse, (width, height))
    outside = cv2.dilate((footprint > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    assert np.array_equal(our_frame[outside], t1[outside])
    assert np.array_equal(their_frame[outside], t1[outside])

    core = np.zeros((128, 128), np.float32)
    core[40:88, 40:88] = 1
    core_frame = cv2.warpAffine(core, inverse, (width, height)) > 0.999
    assert core_frame.sum() > 500
    swapped_full = paste_back(t1, our_crop, our_matrix, np.ones((128, 128), np.float32))
    assert np.abs(our_frame[core_frame].astype(int) - swapped_full[core_frame]).max() <= 1
    assert np.abs(their_frame[core_frame].astype(int) - swapped_full[core_frame]).max() <= 3

    band = ~outside & ~core_frame
    low = np.minimum(t1, swapped_full)[band].astype(int) - 3
    high = np.maximum(t1, swapped_full)[band].astype(int) + 3
    for frame in (our_frame, their_frame):
        values = frame[band].astype(int)
        assert ((values >= low) & (values <= high)).mean() > 0.995


def test_inswapper_latent_is_unit_length_and_scale_free(inswapper_file) -> None:
    swapper = InSwapper(SessionCache("cpu"), inswapper_file)
    raw = np.random.default_rng(1).normal(size=512).astype(np.float32)
    latent = swapper.latent(raw)
    assert latent.shape == (1, 512) and latent.dtype == np.float32
    assert np.linalg.norm(latent) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(swapper.latent(raw * 37.0), latent, atol=1e-6)
    with pytest.raises(InvalidInput, match="512"):
        swapper.latent(raw[:100])
    with pytest.raises(InvalidInput, match="zeros"):
        swapper.latent(np.zeros(512, np.float32))


def test_inswapper_source_identity_changes_the_face(
    t1: np.ndarray, t1_faces: list[Face], hanks: SourceIdentity, inswapper_file
) -> None:
    swapper = InSwapper(SessionCache("cpu"), inswapper_file)
    face = t1_faces[0]
    other = SourceIdentity(hanks.image, hanks.face, -hanks.embedding)
    first = swapper.swap(t1, face, hanks, SwapOptions(color_correction=False))
    second = swapper.swap(t1, face, other, SwapOptions(color_correction=False))
    assert np.abs(first.astype(int) - second).max() > 20
    away = away_from_faces(t1.shape, [face], grow=0.6)
    assert not changed(first, t1)[away].any()
    corrected = swapper.swap(t1, face, hanks, SwapOptions(color_correction=True))
    assert not changed(corrected, t1)[away].any()

    with pytest.raises(InvalidInput, match="embedding"):
        swapper.swap(t1, face, SourceIdentity(hanks.image, hanks.face, None), SwapOptions())


def test_inswapper_feeds_unnamed_inputs_by_position(
    tmp_path, t1: np.ndarray, t1_faces: list[Face], hanks: SourceIdentity, inswapper_file
) -> None:
    renamed = make_inswapper(tmp_path / "renamed.onnx", input_names=("img", "lat"))
    sessions = SessionCache("cpu")
    named = InSwapper(sessions, inswapper_file)
    positional = InSwapper(sessions, renamed)
    assert (positional.image_name, positional.latent_name) == ("img", "lat")
    options = SwapOptions()
    face = t1_faces[1]
    assert np.array_equal(
        named.swap(t1, face, hanks, options), positional.swap(t1, face, hanks, options)
    )


def test_inswapper_without_a_proper_emap_is_a_clear_error(tmp_path) -> None:
    sessions = SessionCache("cpu")
    missing = make_inswapper(tmp_path / "no_emap.onnx", emap_shape=None)
    with pytest.raises(ModelUnavailable, match=r"512x512"):
        InSwapper(sessions, missing)
    wrong = make_inswapper(tmp_path / "wrong_emap.onnx", emap_shape=(512, 256))
    with pytest.raises(ModelUnavailable, match=r"\(512, 256\)"):
        InSwapper(sessions, wrong)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ModelUnavailable, match="garbage.onnx"):
        InSwapper(sessions, garbage)
    with pytest.raises(ModelUnavailable, match="does not exist"):
        InSwapper(sessions, tmp_path / "absent.onnx")


def test_swappers_declare_what_they_need(inswapper_file) -> None:
    classic = ClassicSwapper()
    assert (classic.name, classic.needs_embedding) == ("classic", False)
    model = InSwapper(SessionCache("cpu"), inswapper_file)
    assert (model.name, model.needs_embedding) == ("inswapper_128", True)
    assert model.size == 128
