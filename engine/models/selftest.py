"""``python app.py models selftest``: does each installed swapper really swap identities?

The first thing to run after downloading models. Each installed swapper (or the one
named) swaps the face of a photo the project ships, ``assets/selftest/astronaut.jpg``
(the source: Eileen Collins, NASA, public domain), onto the face of
``assets/selftest/camera.jpg`` (the target: CC0, Lav Varshney), with that swapper
alone: native size (no pixel boost), the built-in MTCNN detector (checked to find one
face in each photo), no landmarker, box mask, no colour correction (so a colour-order
mistake is not evened out by the colour transfer), no enhancer. The recognizer
(``arcface_w600k_r50``) then embeds the result's face and both original faces, and the
cosine similarity of the result to the source and to the target is reported.

Pass: similarity to the source ≥ the threshold **and** greater than the similarity to
the target. The default threshold is 0.35. Real swappers with correct pre-processing
typically give an ArcFace cosine similarity of about 0.5–0.8 to the source identity
(FaceFusion users report about 0.6 and above for inswapper and HyperSwap), while a
wrong pre-processing (colour order, normalisation, template, identity input) leaves the
result with the target's identity or with noise, below about 0.3. 0.35 sits between
the two. It is a sanity check of the wiring, not a quality score: a pass says the
swapper transfers identity at all, not how well. The target face is turned well to
the side (a hard case for every swapper), so expect lower numbers than on frontal
faces; a colour target would also be needed to catch a swapped colour order on the
*target* path, since a grey target reads the same in RGB and BGR.

The built-in ``classic`` swapper is skipped unless named: it copies the source's
pixels, so it passes by construction and tells nothing about pre-processing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import InvalidInput, InvalidOptions, ModelUnavailable, NoFaceFound
from engine.faces import Face
from engine.models.manager import ModelManager
from engine.models.registry import DEFAULT_RECOGNIZER
from engine.models.resolve import BUILTIN_DETECTOR, BUILTIN_SWAPPER
from engine.options import SwapOptions
from engine.progress import Progress, ProgressCallback

SELFTEST_DIR = Path(__file__).resolve().parents[2] / "assets" / "selftest"
SOURCE_PHOTO = SELFTEST_DIR / "astronaut.jpg"
TARGET_PHOTO = SELFTEST_DIR / "camera.jpg"
DEFAULT_THRESHOLD = 0.35
SAME_FACE_IOU = 0.3  # a face found in the result is the swapped one if it overlaps this much
STAGE = "selftest"


@dataclass(frozen=True)
class SelftestResult:
    """One swapper's verdict. Similarities are ArcFace cosine similarities in [−1, 1]
    (None when the swap did not run); ``message`` says why it passed or failed."""

    model: str
    passed: bool
    similarity_to_source: float | None
    similarity_to_target: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Photo:
    """A shipped photo, its face and that face's embedding."""

    image: np.ndarray
    face: Face
    embedding: np.ndarray


def swappers_to_test(manager: ModelManager, names: Sequence[str] | None = None) -> list[str]:
    """The swappers the self-test runs: ``names`` (each must be an installed swapper), or
    every installed swapper but the built-in ``classic``."""
    if names:
        for name in names:
            spec = manager.spec(name)  # unknown: an error listing the known models
            if spec.kind != "swapper":
                raise InvalidOptions(
                    f"{name} is a {spec.kind} model, not a swapper; the self-test checks "
                    f"swappers ({', '.join(_installed_swappers(manager)) or 'none installed'})"
                )
            if not spec.embedded:
                manager.check_present(name)  # not installed: how to install it
        return list(dict.fromkeys(names))
    found = _installed_swappers(manager)
    if not found:
        raise ModelUnavailable(
            "no swapper model is installed, so there is nothing to test; run "
            "`python app.py models download hyperswap_1a_256` (or another swapper from "
            "`python app.py models list`)"
        )
    return found


def _installed_swappers(manager: ModelManager) -> list[str]:
    return [
        name
        for name, spec in manager.registry.items()
        if spec.kind == "swapper" and not spec.embedded and manager.is_installed(name)
    ]


def check_recognizer(manager: ModelManager, name: str = DEFAULT_RECOGNIZER) -> None:
    """The recognizer the self-test measures with is installed, or a clear error."""
    spec = manager.spec(name)
    if spec.kind != "recognizer":
        raise InvalidOptions(f"{name} is a {spec.kind} model, not a recognizer")
    if not manager.is_installed(name):
        raise ModelUnavailable(
            f"the self-test measures identity with the {name} recognizer, which is not "
            f"installed; run `python app.py models download {name}`"
        )


def run_selftest(
    manager: ModelManager,
    names: Sequence[str] | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
    recognizer: str = DEFAULT_RECOGNIZER,
) -> list[SelftestResult]:
    """Swap the shipped source onto the shipped target with each swapper (module
    docstring) and judge the result against ``threshold``.

    Usage problems (an unknown, missing or non-swapper name, no recognizer, a bad
    threshold or device) raise ``EngineError``s before any swap; a swapper that fails to
    load or run is a failed result naming the error, and the others still run."""
    from engine.pipeline import FaceEngine

    if not -1.0 <= threshold <= 1.0:
        raise InvalidOptions(f"threshold must be a cosine similarity in [-1, 1], got {threshold}")
    models = swappers_to_test(manager, names)
    check_recognizer(manager, recognizer)
    engine = FaceEngine(manager, device)
    embedder = engine.recognizer(recognizer)
    source = _photo(engine, embedder, SOURCE_PHOTO)
    target = _photo(engine, embedder, TARGET_PHOTO)
    results = []
    for done, name in enumerate(models):
        if progress is not None:
            progress(Progress(STAGE, done=done, total=len(models), message=name))
        results.append(_test_one(engine, embedder, name, source, target, threshold))
    if progress is not None:
        progress(Progress(STAGE, done=len(models), total=len(models), message="done"))
    return results


def _options(swapper: str = BUILTIN_SWAPPER) -> SwapOptions:
    return SwapOptions(
        swapper=swapper,
        pixel_boost="native",
        detector=BUILTIN_DETECTOR,
        landmarker="none",
        selector="one",
        mask_types=("box",),
        color_correction=False,
        enhancer=(),
        frame_enhancer="none",
    )


def _photo(engine, embedder, path: Path) -> _Photo:
    from engine.imageio import load_image

    if not path.is_file():
        raise InvalidInput(
            f"the self-test photo {path} is missing; it ships with the project in "
            f"{SELFTEST_DIR} (reinstall or check out the repository again)"
        )
    image = load_image(path)
    faces = engine.detect(image, _options())
    if not faces:
        raise NoFaceFound(f"the built-in detector found no face in the self-test photo {path}")
    return _Photo(image, faces[0], embedder.embed(image, faces[0]))


def _test_one(
    engine, embedder, name: str, source: _Photo, target: _Photo, threshold: float
) -> SelftestResult:
    from engine.errors import EngineError

    try:
        swapper = engine.prepare([source.image], _options(name))
        result = swapper.process(target.image)
    except EngineError as exc:
        return SelftestResult(name, False, None, None, f"the swap failed: {exc.message}")
    if result.faces_swapped != 1:
        return SelftestResult(
            name, False, None, None, f"swapped {result.faces_swapped} faces instead of 1"
        )
    face, note = _result_face(engine, result.image, target.face)
    swapped = embedder.embed(result.image, face)
    to_source = cosine_similarity(swapped, source.embedding)
    to_target = cosine_similarity(swapped, target.embedding)
    passed = to_source >= threshold and to_source > to_target
    if passed:
        message = f"the result has the source's identity ({to_source:.3f} ≥ {threshold})"
    elif to_source <= to_target:
        message = (
            f"the result is closer to the target ({to_target:.3f}) than to the source "
            f"({to_source:.3f}): the identity was not transferred (pre-processing?)"
        )
    else:
        message = (
            f"similarity to the source {to_source:.3f} is below the threshold {threshold} "
            "(pre-processing?)"
        )
    return SelftestResult(name, passed, to_source, to_target, message + note)


def _result_face(engine, image: np.ndarray, target: Face) -> tuple[Face, str]:
    """The swapped face as detected in the result (the one overlapping the target's
    face most); the target's own landmarks when none is found there."""
    from engine.pipeline import box_iou

    faces = engine.detect(image, _options())
    best = max(faces, key=lambda face: box_iou(face.box, target.box), default=None)
    if best is not None and box_iou(best.box, target.box) >= SAME_FACE_IOU:
        return best, ""
    return target, "; no face was found in the result, so it was measured at the target's face"


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two embeddings: 1 the same direction, 0 unrelated."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


__all__ = [
    "DEFAULT_THRESHOLD",
    "SOURCE_PHOTO",
    "TARGET_PHOTO",
    "SelftestResult",
    "check_recognizer",
    "cosine_similarity",
    "run_selftest",
    "swappers_to_test",
]
