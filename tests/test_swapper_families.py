"""Every neural swapper family through ``NeuralSwapper`` on stand-in files and t1.jpg.

The family facts (template, native size, per-channel input mean/std, output range, how
the identity is fed) are written here from MODELS-2.md §4 and §5.2; the stand-ins
(``tests/standins/swapper_families.py``) are built from them and invert the family's
pre-processing, so the swapped face must come back as a known function of the target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from engine.align import estimate_affine, template_points
from engine.converters import Converter
from engine.errors import InvalidInput, InvalidOptions, ModelUnavailable
from engine.faces import Face
from engine.models.registry import REGISTRY
from engine.options import SwapOptions
from engine.paste import box_mask
from engine.runtime import SessionCache
from engine.swappers.base import SourceIdentity
from engine.swappers.inswapper import InSwapper
from engine.swappers.neural import NeuralSwapper
from tests.assets import TOM_HANKS
from tests.standins.inswapper import make_inswapper
from tests.standins.swapper_families import make_converter, make_plain, make_swapper

Triple = tuple[float, float, float]
ZERO: Triple = (0.0, 0.0, 0.0)
ONE: Triple = (1.0, 1.0, 1.0)
HALF: Triple = (0.5, 0.5, 0.5)
IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Fact:
    """One family as MODELS-2.md §5.2 states it. ``signed``: the output is in [−1, 1]
    (mapped ×0.5 + 0.5), else already [0, 1]. ``source``: emap, norm (L2 of the
    embedding), converter (as is), converter_norm (then L2), image."""

    model: str
    template: str
    size: int
    mean: Triple
    std: Triple
    signed: bool
    source: str
    converter: str = ""
    source_template: str = ""
    source_size: int = 0


FACTS = {
    "inswapper": Fact("inswapper_128", "arcface_128", 128, ZERO, ONE, False, "emap"),
    "hyperswap": Fact("hyperswap_1a_256", "arcface_128", 256, HALF, HALF, True, "norm"),
    "ghost": Fact(
        "ghost_1_256", "arcface_112_v1", 256, HALF, HALF, True, "converter", "crossface_ghost"
    ),
    "simswap": Fact(
        "simswap_256", "arcface_112_v1", 256, IMAGENET_MEAN, IMAGENET_STD, False,
        "converter_norm", "crossface_simswap",
    ),
    "simswap_512": Fact(
        "simswap_unofficial_512", "arcface_112_v1", 512, ZERO, ONE, False, "converter_norm",
        "crossface_simswap",
    ),
    "hififace": Fact(
        "hififace_unofficial_256", "mtcnn_512", 256, HALF, HALF, True, "converter_norm",
        "crossface_hififace",
    ),
    "blendswap": Fact(
        "blendswap_256", "ffhq_512", 256, ZERO, ONE, False, "image", "", "arcface_112_v2", 112
    ),
    "uniface": Fact("uniface_256", "ffhq_512", 256, HALF, HALF, True, "image", "", "ffhq_512", 256),
}  # fmt: skip
FAMILY_OF = {
    "inswapper": "inswapper", "hyperswap": "hyperswap", "ghost": "ghost", "simswap": "simswap",
    "simswap_512": "simswap", "hififace": "hififace", "blendswap": "blendswap",
    "uniface": "uniface",
}  # fmt: skip
EMBEDDING_FAMILIES = [key for key, fact in FACTS.items() if fact.source != "image"]

# MODELS-2.md §4, "pixel values at the sizes used": template @ size → (x, y) of the five points.
TEMPLATE_PIXELS = {
    ("arcface_112_v1", 256): [(90.81, 116.89), (165.19, 116.89), (128.00, 156.56), (97.06, 198.88), (158.94, 198.88)],
    ("arcface_112_v1", 512): [(181.62, 233.77), (330.38, 233.77), (256.00, 313.11), (194.12, 397.76), (317.88, 397.76)],
    ("arcface_112_v2", 112): [(38.29, 51.70), (73.53, 51.50), (56.03, 71.74), (41.55, 92.37), (70.73, 92.20)],
    ("arcface_128", 128): [(46.29, 51.70), (81.53, 51.50), (64.03, 71.74), (49.55, 92.37), (78.73, 92.20)],
    ("arcface_128", 256): [(92.59, 103.39), (163.06, 103.00), (128.05, 143.47), (99.10, 184.73), (157.46, 184.41)],
    ("ffhq_512", 256): [(96.49, 119.97), (159.45, 120.10), (128.32, 157.01), (100.63, 185.71), (156.54, 185.58)],
    ("mtcnn_512", 256): [(93.60, 119.64), (162.06, 119.26), (128.05, 158.57), (99.92, 198.65), (156.62, 198.34)],
}  # fmt: skip
IDENTITY = ("y", "y", "y")
GAMMA = ("y2", "y", "sqrt")  # R squared, G as is, B square root: the channels differ
RED_OFF = ("zero", "y", "y")
CURVES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "y": lambda y: y,
    "y2": lambda y: y * y,
    "sqrt": np.sqrt,
    "zero": np.zeros_like,
}
QUIET = SwapOptions(color_correction=False, mask_blur=0.0, mask_padding=0.0)


def boost_sizes(size: int) -> list[int]:
    """Whole multiples of the native size up to 1024 (MODELS-2.md §5.5)."""
    return [k * size for k in range(1, 1024 // size + 1)]


def curved(crop: np.ndarray, curves: tuple[str, str, str]) -> np.ndarray:
    """What an inverse stand-in with ``curves`` makes of a BGR crop, as BGR levels."""
    rgb = crop[..., ::-1].astype(np.float64) / 255.0
    out = np.stack([CURVES[c](rgb[..., n]) for n, c in enumerate(curves)], axis=-1)
    return (np.clip(out, 0.0, 1.0) * 255.0)[..., ::-1]


def converter_matrix(name: str) -> np.ndarray:
    seed = sum(name.encode())
    return np.random.default_rng(seed).normal(size=(512, 512)) / np.sqrt(512)


EMAP = np.random.default_rng(11).normal(size=(512, 512)) / np.sqrt(512)


class Builder:
    """Stand-in files and swappers for the tests of this module, each made once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sessions = SessionCache("cpu")
        self._swappers: dict[tuple, NeuralSwapper] = {}
        self._converters: dict[str, Converter] = {}

    def converter(self, name: str) -> Converter:
        if name not in self._converters:
            path = make_converter(self.folder / f"{name}.onnx", converter_matrix(name))
            self._converters[name] = Converter(self.sessions, REGISTRY[name], path)
        return self._converters[name]

    def file(self, key: str, curves=IDENTITY, batch: int | None = 1) -> Path:
        fact = FACTS[key]
        label = f"{key}_{'-'.join(curves)}_{batch or 'dynamic'}"
        path = self.folder / f"{label}.onnx"
        if not path.exists():
            make_swapper(
                path,
                size=fact.size,
                undo_mean=fact.mean,
                undo_std=fact.std,
                out_mean=HALF if fact.signed else ZERO,
                out_std=HALF if fact.signed else ONE,
                curves=curves,
                source_size=fact.source_size or None,
                batch=batch,
                mask_output=key == "hyperswap",  # HyperSwap's second output
                emap=EMAP if fact.source == "emap" else None,
            )
        return path

    def swapper(
        self, key: str, curves=IDENTITY, batch: int | None = 1, **spec_changes
    ) -> NeuralSwapper:
        cache_key = (key, curves, batch, tuple(sorted(spec_changes.items())))
        if cache_key not in self._swappers:
            fact = FACTS[key]
            spec = dataclasses.replace(REGISTRY[fact.model], **spec_changes)
            converter = self.converter(fact.converter) if fact.converter else None
            path = self.file(key, curves, batch)
            self._swappers[cache_key] = NeuralSwapper(self.sessions, spec, path, converter)
        return self._swappers[cache_key]


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Builder:
    return Builder(tmp_path_factory.mktemp("swapper_families"))


@pytest.fixture(scope="module")
def t1_faces(t1: np.ndarray) -> list[Face]:
    from engine.detectors.mtcnn import MtcnnDetector

    faces = MtcnnDetector(SessionCache("cpu")).detect(t1, 0.5)
    assert len(faces) >= 5, "the detector should find (nearly) all six faces of t1.jpg"
    return faces


@pytest.fixture(scope="module")
def hanks() -> SourceIdentity:
    """Tom_Hanks_54745.png is an ArcFace-aligned 112 px crop: its landmarks are the
    arcface_112_v2 @112 points of MODELS-2.md §4."""
    image = cv2.imread(str(TOM_HANKS))
    points = np.array(TEMPLATE_PIXELS[("arcface_112_v2", 112)], np.float32)
    face = Face(np.array([0, 0, 112, 112], np.float32), 1.0, points)
    embedding = np.random.default_rng(7).normal(size=512).astype(np.float32) * 20
    return SourceIdentity(image=image, face=face, embedding=embedding)


@pytest.fixture(scope="module")
def canvas(t1: np.ndarray) -> np.ndarray:
    """t1.jpg enlarged so that a 1024 px crop fits with room around it."""
    return cv2.resize(t1, (1200, 1100), interpolation=cv2.INTER_CUBIC)


OFFSET = np.array([60.0, 40.0])


def placed_face(template: str, size: int) -> Face:
    """A face whose landmarks are ``template`` at ``size``, shifted by OFFSET: its crop is
    the canvas region at OFFSET, pixel for pixel (scale 1, whole-pixel shift)."""
    points = (template_points(template, size) + OFFSET).astype(np.float32)
    return Face(np.array([0, 0, 1, 1], np.float32), 1.0, points)


def region(frame: np.ndarray, size: int) -> np.ndarray:
    x, y = OFFSET.astype(int)
    return frame[y : y + size, x : x + size]


def footprint(shape: tuple[int, ...], face: Face, template: str, size: int) -> np.ndarray:
    """Where a size² crop of ``face`` lands in the frame (grown by 2 px for interpolation)."""
    matrix = estimate_affine(face.landmarks, template, size)
    inverse = cv2.invertAffineTransform(matrix)
    ones = np.ones((size, size), np.float32)
    warped = cv2.warpAffine(ones, inverse, (shape[1], shape[0])) > 0
    return cv2.dilate(warped.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


# -- every family on t1 --------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, None], ids=["batch1", "dynamic"])
@pytest.mark.parametrize("key", list(FACTS))
def test_every_family_swaps_the_faces_of_t1_and_nothing_else(
    build: Builder, t1: np.ndarray, t1_faces: list[Face], hanks: SourceIdentity,
    key: str, batch: int | None,
) -> None:  # fmt: skip
    fact = FACTS[key]
    swapper = build.swapper(key, GAMMA, batch)
    assert (swapper.name, swapper.family) == (fact.model, FAMILY_OF[key])
    assert swapper.native_size == fact.size
    assert swapper.needs_embedding == (fact.source != "image")
    assert swapper.batched == (batch is None)
    assert swapper.boost_sizes == tuple(boost_sizes(fact.size))
    size = 2 * fact.size if batch is None else fact.size  # boosted through the batch
    faces = t1_faces[:3]
    result = t1
    for face in faces:
        result = swapper.swap(result, face, hanks, SwapOptions(color_correction=False), size=size)
    assert result.shape == t1.shape and result.dtype == np.uint8
    inside = np.zeros(t1.shape[:2], bool)
    for face in faces:
        inside |= footprint(t1.shape, face, fact.template, size)
        centre = face.landmarks.mean(axis=0).astype(int)
        patch = (slice(centre[1] - 5, centre[1] + 5), slice(centre[0] - 5, centre[0] + 5))
        # R is squared and B square-rooted by the stand-in: the face visibly changed.
        assert np.abs(result[patch].astype(int) - t1[patch]).mean() > 5
    assert np.array_equal(result[~inside], t1[~inside])


@pytest.mark.parametrize("key", list(FACTS))
def test_the_crop_is_aligned_with_the_family_template(
    build: Builder, t1: np.ndarray, hanks: SourceIdentity, key: str
) -> None:
    """A face whose landmarks are the template's pixel points (MODELS-2.md §4) is cropped
    with the identity matrix at the native size, and at twice the scale when boosted ×2."""
    fact = FACTS[key]
    swapper = build.swapper(key)
    points = np.array(TEMPLATE_PIXELS[(fact.template, fact.size)], np.float32)
    seen = []

    def record(crop, swapped, matrix, target):
        seen.append((crop.shape, swapped.shape, swapped.dtype, matrix, target))
        return np.zeros(crop.shape[:2], np.float32)

    face = Face(np.array([0, 0, 1, 1], np.float32), 1.0, points)
    unchanged = swapper.swap(t1, face, hanks, QUIET, mask_builder=record)
    assert np.array_equal(unchanged, t1)  # a zero mask changes nothing
    swapper.swap(t1, face, hanks, QUIET, size=2 * fact.size, mask_builder=record)
    (shape, swapped_shape, dtype, matrix, target), boosted = seen[0], seen[1]
    assert shape == swapped_shape == (fact.size, fact.size, 3) and dtype == np.uint8
    assert target is face
    assert np.abs(matrix - np.eye(2, 3)).max() < 0.02
    assert boosted[0] == (2 * fact.size, 2 * fact.size, 3)
    assert np.abs(boosted[3] - 2 * np.eye(2, 3)).max() < 0.04


# -- pre- and post-processing, exactly -----------------------------------------------------


@pytest.mark.parametrize("key", list(FACTS))
def test_an_inverse_standin_gives_back_the_target_at_every_boost_size(
    build: Builder, canvas: np.ndarray, hanks: SourceIdentity, key: str
) -> None:
    """The stand-in undoes the family's normalisation and maps to its output range; with
    the identity curve the pasted face is the target, with the gamma curve (R², G, √B)
    it is that curve of the target, within 2 levels, at every pixel-boost size."""
    fact = FACTS[key]
    for curves in (IDENTITY, GAMMA):
        swapper = build.swapper(key, curves, batch=None)
        for size in boost_sizes(fact.size):
            face = placed_face(fact.template, size)
            result = swapper.swap(canvas, face, hanks, QUIET, size=size)
            target = region(canvas, size)[1:-1, 1:-1]  # the box mask zeroes a 1 px border
            pasted = region(result, size)[1:-1, 1:-1]
            difference = np.abs(pasted.astype(float) - curved(target, curves))
            assert difference.max() <= 2, f"{key} at {size} with {curves}"
            outside = np.ones(canvas.shape[:2], bool)
            x, y = OFFSET.astype(int)
            outside[y - 1 : y + size + 1, x - 1 : x + size + 1] = False
            assert np.array_equal(result[outside], canvas[outside])
    # Batch 1 (one run per sub-image) gives the same face.
    single = build.swapper(key, GAMMA, batch=1)
    face = placed_face(fact.template, 2 * fact.size)
    batched = build.swapper(key, GAMMA, batch=None).swap(
        canvas, face, hanks, QUIET, size=2 * fact.size
    )
    assert np.array_equal(single.swap(canvas, face, hanks, QUIET, size=2 * fact.size), batched)


@pytest.mark.parametrize("key", list(FACTS))
def test_turning_off_red_in_the_model_turns_off_red_in_the_frame(
    build: Builder, canvas: np.ndarray, hanks: SourceIdentity, key: str
) -> None:
    """The stand-in drives its first (R) output channel to the bottom of the output range:
    frame channel 2 (R of BGR) goes to 0 in the face; channels 0 and 1 stay."""
    fact = FACTS[key]
    swapper = build.swapper(key, RED_OFF)
    face = placed_face(fact.template, fact.size)
    result = swapper.swap(canvas, face, hanks, QUIET)
    target = region(canvas, fact.size)[1:-1, 1:-1].astype(int)
    pasted = region(result, fact.size)[1:-1, 1:-1].astype(int)
    assert target[..., 2].mean() > 60
    assert pasted[..., 2].max() <= 2
    assert np.abs(pasted[..., :2] - target[..., :2]).max() <= 2


@pytest.mark.parametrize(
    ("key", "mean", "std", "curves"),
    [
        ("simswap", ZERO, ONE, IDENTITY),  # simswap_256 fed like simswap_unofficial_512
        ("simswap_512", IMAGENET_MEAN, IMAGENET_STD, IDENTITY),  # and the other way round
        ("hyperswap", ZERO, ONE, GAMMA),  # [0, 1] in and out where the model uses [−1, 1]
    ],
)
def test_a_wrong_normalisation_moves_the_face(
    build: Builder, canvas: np.ndarray, hanks: SourceIdentity,
    key: str, mean: Triple, std: Triple, curves: tuple[str, str, str],
) -> None:  # fmt: skip
    fact = FACTS[key]
    face = placed_face(fact.template, fact.size)
    target = curved(region(canvas, fact.size)[1:-1, 1:-1], curves)

    def error(swapper: NeuralSwapper) -> float:
        pasted = region(swapper.swap(canvas, face, hanks, QUIET), fact.size)[1:-1, 1:-1]
        per_channel = np.abs(pasted.astype(float) - target).reshape(-1, 3).mean(axis=0)
        return float(per_channel.max())

    assert error(build.swapper(key, curves)) < 1.0
    assert error(build.swapper(key, curves, mean=mean, std=std)) > 10.0


# -- identity: embeddings, converters, images ----------------------------------------------


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, np.float64).reshape(-1)
    return vector / np.linalg.norm(vector)


def family_rule(build: Builder, key: str, raw: np.ndarray) -> np.ndarray:
    """MODELS-2.md §5.2's ``source`` for a raw embedding, computed here independently."""
    fact = FACTS[key]
    raw = np.asarray(raw, np.float64)
    if fact.source == "emap":
        model = onnx.load(str(build.file(key)))
        emap = numpy_helper.to_array(model.graph.initializer[-1]).astype(np.float64)
        return _unit(_unit(raw) @ emap)  # insightface renormalises the latent
    if fact.source == "norm":
        return _unit(raw)
    converted = raw @ converter_matrix(fact.converter)
    return converted if fact.source == "converter" else _unit(converted)


def test_a_converter_is_a_checked_model(build: Builder, tmp_path: Path) -> None:
    converter = build.converter("crossface_ghost")
    raw = np.random.default_rng(2).normal(size=512).astype(np.float32) * 15
    out = converter.convert(raw)
    assert out.shape == (512,) and out.dtype == np.float32
    assert np.allclose(out, raw @ converter_matrix("crossface_ghost"), rtol=1e-4, atol=1e-3)
    with pytest.raises(InvalidInput, match="512"):
        converter.convert(raw[:100])

    narrow = make_converter(tmp_path / "narrow.onnx", np.eye(256), input_dim=256)
    with pytest.raises(ModelUnavailable, match=r"crossface_simswap.*'input'"):
        Converter(build.sessions, REGISTRY["crossface_simswap"], narrow)
    short = make_converter(tmp_path / "short.onnx", np.eye(512)[:, :256])
    with pytest.raises(ModelUnavailable, match=r"crossface_hififace.*'output'"):
        Converter(build.sessions, REGISTRY["crossface_hififace"], short)


@pytest.mark.parametrize("key", EMBEDDING_FAMILIES)
def test_each_family_feeds_the_identity_its_own_way(
    build: Builder, hanks: SourceIdentity, key: str
) -> None:
    swapper = build.swapper(key)
    fed = swapper.source_input(hanks)
    assert fed.shape == (1, 512) and fed.dtype == np.float32
    expected = family_rule(build, key, hanks.embedding)
    assert np.allclose(fed.reshape(-1), expected, rtol=1e-4, atol=1e-4)
    if FACTS[key].source == "converter":  # ghost: the converter's output, not renormalised
        assert abs(np.linalg.norm(fed) - 1.0) > 0.1
    else:
        assert np.linalg.norm(fed) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("key", EMBEDDING_FAMILIES)
def test_the_identity_weight_moves_toward_or_away_from_the_target(
    build: Builder, hanks: SourceIdentity, key: str
) -> None:
    swapper = build.swapper(key)
    target = np.random.default_rng(9).normal(size=512).astype(np.float32) * 25
    neutral = swapper.source_input(hanks)
    assert np.array_equal(swapper.source_input(hanks, target, 0.5), neutral)  # no-op

    def closeness(weight: float) -> float:
        fed = _unit(swapper.source_input(hanks, target, weight))
        return float(fed @ _unit(family_rule(build, key, target)))

    assert closeness(0.0) > closeness(0.25) > closeness(0.5) > closeness(1.0)

    # The mix is made on the raw embeddings (w' = +0.35 at weight 0, −0.35 at 1), rescaled
    # to the source's length, and then goes through the family's own rule.
    source = np.asarray(hanks.embedding, np.float64)
    for weight, w in ((0.0, 0.35), (1.0, -0.35)):
        mixed = _unit(source) * (1 - w) + _unit(target) * w
        mixed *= np.linalg.norm(source) / np.linalg.norm(mixed)
        fed = swapper.source_input(hanks, target, weight).reshape(-1)
        assert np.allclose(fed, family_rule(build, key, mixed), rtol=1e-4, atol=1e-4)

    with pytest.raises(InvalidOptions, match="between 0 and 1"):
        swapper.source_input(hanks, target, 1.5)
    with pytest.raises(InvalidInput, match="target face's embedding"):
        swapper.source_input(hanks, None, 0.2)


def test_the_weight_reaches_the_identity_through_swap(
    build: Builder, t1: np.ndarray, t1_faces: list[Face], hanks: SourceIdentity
) -> None:
    swapper = build.swapper("hyperswap")
    face = dataclasses.replace(t1_faces[0], embedding=None)
    with pytest.raises(InvalidInput, match="target face's embedding"):
        swapper.swap(t1, face, hanks, QUIET, weight=0.0)
    embedded = dataclasses.replace(face, embedding=np.ones(512, np.float32))
    assert swapper.swap(t1, embedded, hanks, QUIET, weight=0.0).shape == t1.shape
    no_identity = SourceIdentity(hanks.image, hanks.face, None)
    with pytest.raises(InvalidInput, match="embedding"):
        swapper.swap(t1, face, no_identity, QUIET)


@pytest.mark.parametrize("key", ["blendswap", "uniface"])
def test_image_families_are_fed_the_first_source_face(
    build: Builder, hanks: SourceIdentity, key: str
) -> None:
    """blendswap: arcface_112_v2 @112; uniface: ffhq_512 @256; RGB /255, no mean/std. A
    source image whose face sits exactly on that template comes through unchanged."""
    fact = FACTS[key]
    size = fact.source_size
    image = cv2.resize(hanks.image, (size, size), interpolation=cv2.INTER_CUBIC)
    points = np.array(TEMPLATE_PIXELS[(fact.source_template, size)], np.float32)
    face = Face(np.array([0, 0, size, size], np.float32), 1.0, points)
    other = np.full_like(image, 30)
    source = SourceIdentity(other, face, None, sources=((image, face), (other, face)))
    swapper = build.swapper(key)
    fed = swapper.source_input(source)
    assert fed.shape == (1, 3, size, size) and fed.dtype == np.float32
    expected = image[..., ::-1].transpose(2, 0, 1)[None] / 255.0
    assert np.abs(fed - expected).mean() < 1.0 / 255
    assert np.abs(fed - expected).max() < 12.0 / 255
    # The identity weight does not apply to image inputs.
    assert np.array_equal(swapper.source_input(source, None, 0.0), fed)
    # Without a list of sources, the identity's own image and face are used.
    alone = swapper.source_input(SourceIdentity(image, face, None))
    assert np.array_equal(alone, fed)


def test_the_inswapper_family_matches_the_inswapper_class(
    build: Builder, tmp_path: Path, t1: np.ndarray, t1_faces: list[Face], hanks: SourceIdentity
) -> None:
    """The same inswapper file through NeuralSwapper and through InSwapper: the same latent
    (insightface's rule) and, at the native size, the same frame."""
    path = make_inswapper(tmp_path / "inswapper_128.onnx")
    generic = NeuralSwapper(build.sessions, REGISTRY["inswapper_128"], path)
    specific = InSwapper(build.sessions, path)
    assert np.allclose(generic.source_input(hanks), specific.latent(hanks.embedding), atol=1e-6)
    for options in (SwapOptions(), SwapOptions(color_correction=False, mask_padding=0.1)):
        face = t1_faces[1]
        ours = generic.swap(t1, face, hanks, options)
        theirs = specific.swap(t1, face, hanks, options)
        assert np.abs(ours.astype(int) - theirs).max() <= 1


# -- masks and blending ----------------------------------------------------------------------


def test_the_mask_builder_decides_where_the_face_changes(
    build: Builder, canvas: np.ndarray, hanks: SourceIdentity
) -> None:
    swapper = build.swapper("hyperswap", GAMMA)
    face = placed_face("arcface_128", 256)

    def left_half(crop, swapped, matrix, target):
        mask = np.zeros(crop.shape[:2], np.float32)
        mask[:, : crop.shape[1] // 2] = 1.0
        return mask

    result = swapper.swap(canvas, face, hanks, QUIET, mask_builder=left_half)
    pasted, target = region(result, 256), region(canvas, 256)
    assert np.abs(pasted[:, :127].astype(float) - curved(target[:, :127], GAMMA)).max() <= 2
    assert np.array_equal(pasted[:, 129:], target[:, 129:])
    with pytest.raises(InvalidInput, match="mask builder"):
        swapper.swap(canvas, face, hanks, QUIET, mask_builder=lambda *_: np.ones((10, 10)))


@pytest.mark.parametrize("blend_mode", ["alpha", "poisson"])
def test_colour_correction_and_poisson_keep_the_outside(
    build: Builder, t1: np.ndarray, t1_faces: list[Face], hanks: SourceIdentity, blend_mode: str
) -> None:
    swapper = build.swapper("simswap", GAMMA)
    face = t1_faces[0]
    options = SwapOptions(color_correction=True, blend_mode=blend_mode, mask_blur=0.3)
    result = swapper.swap(t1, face, hanks, options, size=512)
    plain = swapper.swap(t1, face, hanks, dataclasses.replace(options, color_correction=False))
    inside = footprint(t1.shape, face, "arcface_112_v1", 512)
    assert np.array_equal(result[~inside], t1[~inside])
    assert np.abs(result[inside].astype(int) - t1[inside]).max() > 10
    assert np.abs(result.astype(int) - plain).max() > 3  # the correction did something
    mask = box_mask(256, 0.3, 0.0)
    assert mask.max() == pytest.approx(1.0, abs=1e-3)


# -- files that do not fit -------------------------------------------------------------------


def test_files_whose_tensors_do_not_fit_are_refused_by_name(
    build: Builder, tmp_path: Path, t1: np.ndarray, t1_faces: list[Face], hanks: SourceIdentity
) -> None:
    sessions = build.sessions
    hyper = REGISTRY["hyperswap_1a_256"]

    def refused(spec, path: Path, pattern: str, converter=None) -> None:
        with pytest.raises(ModelUnavailable, match=pattern):
            NeuralSwapper(sessions, spec, path, converter)

    narrow = make_swapper(
        tmp_path / "narrow.onnx", size=256, undo_mean=HALF, undo_std=HALF, source_dim=256
    )
    refused(hyper, narrow, r"hyperswap_1a_256.*'source'.*\[1, 256\]")
    single = make_plain(
        tmp_path / "single.onnx", [("input", [1, 3, 256, 256])], [("output", [1, 3, 256, 256])]
    )
    refused(hyper, single, r"hyperswap_1a_256.*'input'")
    four = make_plain(
        tmp_path / "four.onnx",
        [("target", [1, 4, 256, 256]), ("source", [1, 512])],
        [("output", [1, 3, 256, 256])],
    )
    refused(hyper, four, r"hyperswap_1a_256.*'target'.*\[1, 4, 256, 256\]")
    smaller = make_plain(
        tmp_path / "smaller.onnx",
        [("target", [1, 3, 256, 256]), ("source", [1, 512])],
        [("output", [1, 3, 128, 128])],
    )
    refused(hyper, smaller, r"hyperswap_1a_256.*'output'.*\[1, 3, 128, 128\]")
    embedding_source = build.file("hyperswap")
    refused(REGISTRY["blendswap_256"], embedding_source, r"blendswap_256.*'source'")
    oblong = make_plain(
        tmp_path / "oblong.onnx",
        [("target", [1, 3, 256, 256]), ("source", [1, 3, 112, 128])],
        [("output", [1, 3, 256, 256])],
    )
    refused(REGISTRY["blendswap_256"], oblong, r"blendswap_256.*'source'.*square")
    refused(REGISTRY["ghost_1_256"], build.file("ghost"), r"ghost_1_256.*crossface_ghost")
    refused(
        dataclasses.replace(hyper, family="nope"), embedding_source, r"hyperswap_1a_256.*'nope'"
    )

    # A renamed export is fed by position and behaves like the named one.
    renamed = make_swapper(
        tmp_path / "renamed.onnx", size=256, undo_mean=HALF, undo_std=HALF, out_mean=HALF,
        out_std=HALF, curves=GAMMA, input_names=("img", "identity"),
    )  # fmt: skip
    named = build.swapper("hyperswap", GAMMA)
    positional = NeuralSwapper(sessions, hyper, renamed)
    face = t1_faces[0]
    assert np.array_equal(
        positional.swap(t1, face, hanks, QUIET), named.swap(t1, face, hanks, QUIET)
    )
