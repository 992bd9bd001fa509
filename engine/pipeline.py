"""The face pipeline: detect → select → swap → enhance, per frame.

``FaceEngine`` owns the warm models of one device (one per worker slot).
``FaceEngine.prepare`` takes the concrete models the job's spec names (or, for a
job from before specs named them, resolves the options once) and returns a ``FrameSwapper``, which holds the job's state (source identity,
reference embedding, the previous frame's faces for temporal stability). Job
state lives in that object, never in the engine, so two jobs never share it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.devices import Device
from engine.errors import InvalidOptions, NoFaceFound
from engine.face_map import FaceMapping
from engine.faces import Face
from engine.frame import FrameResult
from engine.models.manager import ModelManager
from engine.models.registry import ModelSpec
from engine.models.resolve import (
    BUILTIN_DETECTOR,
    BUILTIN_SWAPPER,
    RECOGNIZER,
    ModelRef,
    ResolvedModels,
    resolve,
    resolved_from_refs,
)
from engine.options import SwapOptions, padding4
from engine.runtime import SessionCache
from engine.swappers.base import SourceIdentity

if TYPE_CHECKING:
    from engine.video_plan import VideoPlan


class FaceEngine:
    """Warm models for one device; safe to share between the jobs of one worker.

    Loaded models ("components") are kept in a least-recently-used set bounded by
    ``memory_budget`` bytes (estimated from their files' sizes): a worker loads only
    what its jobs use, and thirty catalogue models never sit in one slot at once. An
    evicted component's sessions are dropped from the session cache; a job that still
    holds it keeps using it until it ends.
    """

    def __init__(
        self,
        models: ModelManager,
        device: str | Device = "cpu",
        intra_op_threads: int = 0,
        memory_budget: int | None = None,
    ) -> None:
        self.models = models
        self.sessions = SessionCache(device, intra_op_threads)
        self.memory_budget = memory_budget
        self._components: OrderedDict[str, _Component] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def device(self) -> Device:
        return self.sessions.device

    # -- model resolution -------------------------------------------------------------

    def resolve(self, options: SwapOptions) -> ResolvedModels:
        """Turn ``auto`` choices into the best installed models, or explain what is missing
        (``engine.models.resolve.resolve``, the one resolution function). The path of a
        job whose spec records no models (one queued before specs carried them)."""
        return resolve(options, self.models)

    def resolve_refs(self, models: Sequence[ModelRef], options: SwapOptions) -> ResolvedModels:
        """The models a job spec names, each checked to be installed with its checksum;
        ``ModelUnavailable`` naming a missing one, never another model in its place."""
        return resolved_from_refs(models, options, self.models)

    # -- loaded models ------------------------------------------------------------------

    def _component(self, key: str, build, names: Sequence[str] = ()):
        """The component ``key``, built once (``build(paths)`` with the verified files of
        ``names``) and kept while the memory budget allows."""
        with self._lock:
            entry = self._components.get(key)
            if entry is not None:
                self._components.move_to_end(key)
                return entry.component
            paths = [self.models.require(name) for name in names]
            component = build(*paths)
            cost = sum(_file_size(path) for path in paths)
            self._components[key] = _Component(component, tuple(paths), cost)
            self._evict(keep=key)
            return component

    def _evict(self, keep: str) -> None:
        if self.memory_budget is None:
            return
        total = sum(entry.cost for entry in self._components.values())
        for key in list(self._components):
            if total <= self.memory_budget:
                break
            if key == keep:
                continue
            entry = self._components.pop(key)
            total -= entry.cost
            still_used = {p for e in self._components.values() for p in e.paths}
            for path in entry.paths:
                if path not in still_used:
                    self.sessions.drop(path)

    def loaded(self) -> list[str]:
        """Keys of the loaded components, least recently used first (for tests and logs)."""
        with self._lock:
            return list(self._components)

    def _spec(self, name: str) -> ModelSpec:
        return self.models.spec(name)

    def detector(self, name: str, size: int | None = None):
        def build_mtcnn():
            from engine.detectors.mtcnn import MtcnnDetector

            return MtcnnDetector(self.sessions)

        if name == BUILTIN_DETECTOR:
            return self._component("detector:mtcnn", build_mtcnn)
        spec = self._spec(name)
        if spec.family == "scrfd" and size is None:

            def build_scrfd(path):
                from engine.detectors.scrfd import ScrfdDetector

                return ScrfdDetector(self.sessions, path)

            return self._component(f"detector:{name}", build_scrfd, (name,))

        def build(path):
            from engine.detectors.build import build_detector

            return build_detector(self.sessions, spec, path, size=size)

        return self._component(f"detector:{name}:{size}", build, (name,))

    def face_detector(self, resolved: ResolvedModels, options: SwapOptions):
        """The job's detector: one model, or the union of several (``many``), repeated on
        rotated frames when ``detector_angles`` asks for it."""
        size = options.detector_size
        names = resolved.all_detectors
        detectors = [self.detector(name, size) for name in names]
        detector = detectors[0]
        if len(detectors) > 1:
            from engine.detectors.many import ManyDetector

            detector = ManyDetector(detectors)
        angles = tuple(angle for angle in options.detector_angles if angle)
        if angles:
            from engine.detectors.rotated import RotatedDetector

            detector = RotatedDetector(detector, angles)
        return detector

    def recognizer(self, name: str = RECOGNIZER):
        from engine.recognizer import ArcFaceRecognizer

        return self._component(
            f"recognizer:{name}", lambda path: ArcFaceRecognizer(self.sessions, path), (name,)
        )

    def converter(self, name: str):
        from engine.converters import Converter

        spec = self._spec(name)
        return self._component(
            f"converter:{name}", lambda path: Converter(self.sessions, spec, path), (name,)
        )

    def swapper(self, name: str, converter: str | None = None):
        if name == BUILTIN_SWAPPER:
            from engine.swappers.classic import ClassicSwapper

            return self._component("swapper:classic", ClassicSwapper)
        spec = self._spec(name)
        converter = converter or spec.converter or None

        def build(path):
            from engine.swappers.neural import NeuralSwapper

            runner = self.converter(converter) if converter else None
            return NeuralSwapper(self.sessions, spec, path, runner)

        return self._component(f"swapper:{name}", build, (name,))

    def enhancer(self, name: str):
        from engine.enhancers.face import FaceEnhancer

        spec = self._spec(name)
        return self._component(
            f"enhancer:{name}", lambda path: FaceEnhancer(self.sessions, spec, path), (name,)
        )

    def frame_enhancer(self, name: str):
        from engine.enhancers.frame import FrameEnhancer

        spec = self._spec(name)
        return self._component(
            f"frame_enhancer:{name}", lambda path: FrameEnhancer(self.sessions, spec, path), (name,)
        )

    def landmarker(self, name: str):
        from engine.landmarks.fan68 import Landmarker68

        spec = self._spec(name)
        return self._component(
            f"landmarker:{name}", lambda path: Landmarker68(self.sessions, spec, path), (name,)
        )

    def landmark_regressor(self, name: str):
        from engine.landmarks.fan_68_5 import Fan68From5

        spec = self._spec(name)
        return self._component(
            f"landmark_regressor:{name}",
            lambda path: Fan68From5(self.sessions, spec, path),
            (name,),
        )

    def occluder(self, name: str):
        from engine.masks.occlusion import Occluder

        spec = self._spec(name)
        return self._component(
            f"occluder:{name}", lambda path: Occluder(self.sessions, spec, path), (name,)
        )

    def parser(self, name: str):
        from engine.masks.region import FaceParser

        spec = self._spec(name)
        return self._component(
            f"parser:{name}", lambda path: FaceParser(self.sessions, spec, path), (name,)
        )

    def classifier(self, name: str):
        from engine.classifier import FairFace

        spec = self._spec(name)
        return self._component(
            f"classifier:{name}", lambda path: FairFace(self.sessions, spec, path), (name,)
        )

    def content_gate(self, threshold: float):
        from engine.safety.gate import ContentGate

        return self._component(
            f"gate:{threshold}", lambda: ContentGate(self.sessions, threshold=threshold)
        )

    # -- faces --------------------------------------------------------------------------

    def detect(
        self,
        image: np.ndarray,
        options: SwapOptions | None = None,
        embed: bool = False,
        *,
        resolved: ResolvedModels | None = None,
    ) -> list[Face]:
        """Faces in an image, largest first, with 68-point landmarks where a landmarker is
        installed; with ``embed`` and a recognizer, with embeddings.

        ``resolved``: the job's models (its detector and recognizer); without it the
        detector is resolved from ``options``."""
        options = options or SwapOptions()
        if resolved is None:
            resolved = self.resolve(
                replace(
                    options, selector="one", swapper="classic", enhancer=(), mask_types=("box",)
                )
            )
        faces = self.face_detector(resolved, options).detect(image, options.detector_score)
        faces = self.annotate(image, faces, resolved)
        faces = sorted(faces, key=lambda face: face.area, reverse=True)
        if embed and resolved.recognizer:
            recognizer = self.recognizer(resolved.recognizer)
            for face in faces:
                face.embedding = recognizer.embed(image, face)
        return faces

    def annotate(
        self, image: np.ndarray, faces: list[Face], resolved: ResolvedModels
    ) -> list[Face]:
        """68-point landmarks (and the 5 alignment points derived from them) and, where the
        job filters by age or gender, the classifier's answers."""
        if faces and (resolved.landmarker or resolved.landmark_regressor):
            from engine.landmarks import annotate_landmarks

            landmarker = self.landmarker(resolved.landmarker) if resolved.landmarker else None
            regressor = (
                self.landmark_regressor(resolved.landmark_regressor)
                if resolved.landmark_regressor
                else None
            )
            faces = annotate_landmarks(image, faces, landmarker, regressor)
        if faces and resolved.classifier:
            faces = self.classifier(resolved.classifier).annotate(image, faces)
        return faces

    def job_faces(
        self, image: np.ndarray, resolved: ResolvedModels, options: SwapOptions
    ) -> list[Face]:
        """The faces a job considers in one frame: its detector(s), landmarks and
        classifier (``annotate``), then its age/gender filters, in detector order. Frames of
        images, video streams, the analysis pass and the studio's track matching all find
        their faces here."""
        faces = self.face_detector(resolved, options).detect(image, options.detector_score)
        faces = self.annotate(image, faces, resolved)
        if options.face_ages is None and not options.face_genders:
            return faces
        from engine.face_order import filter_faces

        return filter_faces(faces, ages=options.face_ages, genders=options.face_genders or None)

    def source_identity(
        self,
        sources: Sequence[np.ndarray],
        options: SwapOptions,
        needs_embedding: bool,
        *,
        resolved: ResolvedModels | None = None,
    ) -> SourceIdentity:
        """The identity to paste: the largest face of each source, embeddings averaged."""
        if not sources:
            raise NoFaceFound("no source image was given")
        chosen: list[tuple[np.ndarray, Face]] = []
        for number, image in enumerate(sources, start=1):
            faces = self.detect(image, options, resolved=resolved)
            if not faces:
                raise NoFaceFound(f"no face found in source image {number}")
            chosen.append((image, faces[0]))
        embedding = None
        if needs_embedding:
            name = resolved.recognizer if resolved and resolved.recognizer else RECOGNIZER
            recognizer = self.recognizer(name)
            embeddings = [recognizer.embed(image, face) for image, face in chosen]
            embedding = np.mean(np.stack(embeddings), axis=0).astype(np.float32)
        best_image, best_face = max(chosen, key=lambda pair: pair[1].area)
        return SourceIdentity(
            image=best_image, face=best_face, embedding=embedding, sources=tuple(chosen)
        )

    def reference_embedding(
        self,
        options: SwapOptions,
        reference_image: np.ndarray | None,
        reference_target: np.ndarray | None,
        *,
        resolved: ResolvedModels | None = None,
    ) -> np.ndarray | None:
        """Embedding of the face the 'reference' selector looks for."""
        if options.selector != "reference":
            return None
        if reference_image is not None:
            faces = self.detect(reference_image, options, embed=True, resolved=resolved)
            if not faces:
                raise NoFaceFound("no face found in the reference image")
            return faces[0].embedding
        if options.reference_face_index is None or reference_target is None:
            raise InvalidOptions(
                "the 'reference' selector needs a reference image or reference_face_index "
                "(the index of a face in the target, counted left to right from 0)"
            )
        from engine.face_map import left_to_right

        faces = left_to_right(self.detect(reference_target, options, embed=True, resolved=resolved))
        if options.reference_face_index >= len(faces):
            raise InvalidOptions(
                f"reference_face_index {options.reference_face_index} is out of range: "
                f"the target has {len(faces)} face(s)"
            )
        return faces[options.reference_face_index].embedding

    def prepare(
        self,
        sources: Sequence[np.ndarray],
        options: SwapOptions,
        reference_image: np.ndarray | None = None,
        reference_target: np.ndarray | None = None,
        models: Sequence[ModelRef] | None = None,
        references: Sequence[np.ndarray] = (),
    ) -> FrameSwapper:
        """Resolve models and the source identity once; the result swaps frame after frame.

        ``models``: the models the job's spec names (resolved when it was submitted). They
        are used as they are, each checked to be installed with its checksum; a missing
        one is ``ModelUnavailable`` naming it, never a reason to run another model. None
        (a job from before specs carried models) resolves ``options`` here, as before.
        ``references``: the uploaded reference images ``face_map``'s ``reference``
        entries name; ``reference_target``: the image (or first frame) whose faces its
        ``face`` entries count.
        """
        resolved = self.resolve(options) if models is None else self.resolve_refs(models, options)
        swapper = self.swapper(resolved.swapper, resolved.converter)
        if options.face_map:
            mapping = self.face_mapping(
                sources, options, references, reference_target, swapper.needs_embedding, resolved
            )
            return FrameSwapper(self, resolved, options, None, None, mapping=mapping)
        source = self.source_identity(
            sources, options, needs_embedding=swapper.needs_embedding, resolved=resolved
        )
        reference = self.reference_embedding(
            options, reference_image, reference_target, resolved=resolved
        )
        return FrameSwapper(self, resolved, options, source, reference)

    def face_mapping(
        self,
        sources: Sequence[np.ndarray],
        options: SwapOptions,
        references: Sequence[np.ndarray],
        first_frame: np.ndarray | None,
        needs_embedding: bool,
        resolved: ResolvedModels,
    ) -> FaceMapping:
        """The identities of ``face_map``: one per distinct source set, each reference's
        largest face embedded; indices checked against what was uploaded."""
        from engine.face_map import check_indices

        entries = options.face_map
        faces = None
        if first_frame is not None and any(entry.kind == "face" for entry in entries):
            faces = len(self.detect(first_frame, options, resolved=resolved)) or None
        check_indices(entries, len(sources), len(references), faces)
        identities: dict[tuple[int, ...], SourceIdentity] = {}
        for entry in entries:
            if entry.source not in identities:
                identities[entry.source] = self.source_identity(
                    [sources[i] for i in entry.source],
                    options,
                    needs_embedding=needs_embedding,
                    resolved=resolved,
                )
        by_reference = []
        for entry in entries:
            if entry.kind != "reference":
                continue
            found = self.detect(references[entry.index], options, embed=True, resolved=resolved)
            if not found or found[0].embedding is None:
                raise NoFaceFound(f"no face found in reference image {entry.index}")
            by_reference.append((found[0].embedding, identities[entry.source]))
        return FaceMapping(
            by_face={e.index: identities[e.source] for e in entries if e.kind == "face"},
            by_track={e.index: identities[e.source] for e in entries if e.kind == "track"},
            by_reference=tuple(by_reference),
            reference_distance=options.reference_distance,
        )


def models_record(models: ModelManager, resolved: ResolvedModels) -> list[dict[str, str]]:
    """One entry per model a job ran: role, name, licence text and licence class."""
    named = [("detector", name) for name in resolved.all_detectors]
    named.append(("swapper", resolved.swapper))
    for role in (
        "recognizer",
        "converter",
        "landmarker",
        "landmark_regressor",
        "parser",
        "classifier",
        "frame_enhancer",
    ):
        name = getattr(resolved, role)
        if name:
            named.append((role, name))
    named += [("enhancer", name) for name in resolved.enhancer]
    named += [("occluder", name) for name in resolved.occluders]
    record = []
    for role, name in named:
        spec = models.registry.get(name)
        licence = spec.license if spec is not None else ""
        record.append(
            {
                "role": role,
                "name": name,
                "licence": licence,
                "licence_class": spec.licence_class if spec is not None else "unknown",
            }
        )
    return record


@dataclass(frozen=True)
class _Component:
    component: object
    paths: tuple[Path, ...]
    cost: int


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 − cosine similarity: 0 for the same direction, 2 for opposite."""
    a = a / (np.linalg.norm(a) + 1e-12)
    b = b / (np.linalg.norm(b) + 1e-12)
    return float(1.0 - np.dot(a, b))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class FrameSwapper:
    """Swaps one stream of frames for one job; implements ``engine.frame.FrameProcessor``.

    Per frame: detect (the job's detector(s), angles), landmarks, classify where the job
    filters, filter by age/gender, order (``face_order``), select, swap each face (pixel
    boost, identity weight, masks), run the enhancer chain on the swapped faces, then
    the frame enhancer on the whole frame.

    Temporal stability (video): with ``detect_every`` N > 1 detection runs on
    every N-th frame and the faces in between reuse the last detection, which
    saves time but lags behind fast motion. With ``temporal_smoothing`` α > 0
    each face's landmarks are blended with the same face's (matched by box
    overlap) in the previous frame, ``α·previous + (1−α)·current``, which
    removes landmark jitter at the cost of a little lag on fast moves.
    """

    engine: FaceEngine
    resolved: ResolvedModels
    options: SwapOptions
    source: SourceIdentity | None
    reference: np.ndarray | None = None
    notes: set[str] = field(default_factory=set)
    mapping: FaceMapping | None = None
    # A video's tracks and decisions (``engine.video_plan``): frames are then swapped as
    # the whole-video pass decided, by absolute frame index (``process_at``).
    plan: VideoPlan | None = None
    _masks: object = None
    _blend: object = None
    _previous: list[Face] = field(default_factory=list)
    _frame_index: int = 0

    def fork(self) -> FrameSwapper:
        """A fresh stream state for another lane or segment; notes are shared."""
        return FrameSwapper(
            self.engine,
            self.resolved,
            self.options,
            self.source,
            self.reference,
            self.notes,
            self.mapping,
            self.plan,
        )

    def fork_at(self, frame_index: int) -> FrameSwapper:
        """A fresh stream state whose next frame is ``frame_index`` of the video."""
        forked = self.fork()
        forked._frame_index = frame_index
        return forked

    def process_at(self, frame: np.ndarray, frame_index: int) -> FrameResult:
        """Process frame ``frame_index`` (absolute): as the video plan decided, if any."""
        self._frame_index = frame_index
        if self.plan is None:
            return self.process(frame)
        tracked = self.plan.tracked_assignments(frame_index)
        pairs = [(face, identity) for _, face, identity in tracked]
        if self.options.temporal_blend <= 0 or not pairs:
            return self._finish(frame, pairs)
        if self._blend is None:
            from engine.temporal_blend import TemporalBlend

            self._blend = TemporalBlend(self.options.temporal_blend)
        result = self._finish(frame, pairs, before_frame_enhancer=self._blend_faces(frame, tracked))
        return result

    def _blend_faces(self, original: np.ndarray, tracked):
        """The temporal blend step, run after the faces and before the frame enhancer."""

        def blend(image: np.ndarray) -> np.ndarray:
            return self._blend.apply(original, image, [(t, face) for t, face, _ in tracked])

        return blend

    def fingerprint(self) -> str:
        """What this stream's output depends on (a resumed job's segments are reused only
        under the same): options, models and every identity's source image."""
        import hashlib

        identities = [self.source] if self.source is not None else []
        if self.mapping is not None:
            identities += list(self.mapping.by_face.values())
            identities += list(self.mapping.by_track.values())
            identities += [identity for _, identity in self.mapping.by_reference]
        digest = hashlib.sha256()
        for identity in identities:
            for image, _ in identity.sources or ((identity.image, identity.face),):
                digest.update(np.ascontiguousarray(image).tobytes())
        return f"{self.options!r}|{self.resolved!r}|{digest.hexdigest()}"

    def models_used(self) -> list[dict[str, str]]:
        """The job's models with their licences, for its result record."""
        return models_record(self.engine.models, self.resolved)

    def faces(self, frame: np.ndarray) -> list[Face]:
        """Faces of this frame that will be swapped, after selection and smoothing."""
        reuse = self._previous and self._frame_index % self.options.detect_every != 0
        self._frame_index += 1
        if reuse:
            return self._previous
        faces = self._select(frame, self.engine.job_faces(frame, self.resolved, self.options))
        if self.options.temporal_smoothing > 0:
            faces = self._smooth(faces)
        self._previous = faces
        return faces

    def assignments(self, frame: np.ndarray) -> list[tuple[Face, SourceIdentity]]:
        """The faces of this frame to swap, each with the identity it receives."""
        if self.mapping is None:
            assert self.source is not None
            return [(face, self.source) for face in self.faces(frame)]
        self._frame_index += 1
        faces = self.engine.job_faces(frame, self.resolved, self.options)
        if self.mapping.by_reference and self.resolved.recognizer:
            recognizer = self.engine.recognizer(self.resolved.recognizer)
            for face in faces:
                face.embedding = recognizer.embed(frame, face)
        return self.mapping.assign(faces)

    def process(self, frame: np.ndarray) -> FrameResult:
        return self._finish(frame, self.assignments(frame))

    def _finish(
        self,
        frame: np.ndarray,
        pairs: list[tuple[Face, SourceIdentity]],
        before_frame_enhancer=None,
    ) -> FrameResult:
        result = frame
        if pairs:
            result = self._swap_faces(result, pairs)
            result = self._enhance_faces(result, [face for face, _ in pairs])
            if before_frame_enhancer is not None:
                result = before_frame_enhancer(result)
        if self.resolved.frame_enhancer:
            enhancer = self.engine.frame_enhancer(self.resolved.frame_enhancer)
            result = enhancer.enhance(result, blend=self.options.frame_enhancer_blend)
        return FrameResult(image=result, faces_swapped=len(pairs))

    def _swap_faces(
        self, frame: np.ndarray, pairs: list[tuple[Face, SourceIdentity]]
    ) -> np.ndarray:
        swapper = self.engine.swapper(self.resolved.swapper, self.resolved.converter)
        if self.resolved.swapper == BUILTIN_SWAPPER:
            for face, identity in pairs:
                frame = swapper.swap(frame, face, identity, self.options)
            return frame
        mask_builder = self._mask_builder()
        weighted = self.options.swapper_weight != 0.5 and swapper.needs_embedding
        recognizer = self.engine.recognizer(self.resolved.recognizer) if weighted else None
        for face, identity in pairs:
            target_embedding = recognizer.embed(frame, face) if recognizer is not None else None
            frame = swapper.swap(
                frame,
                face,
                identity,
                self.options,
                size=self._boost_size(swapper, face),
                target_embedding=target_embedding,
                mask_builder=mask_builder,
            )
        return frame

    def _boost_size(self, swapper, face: Face) -> int:
        choice = self.options.pixel_boost
        if choice == "native":
            return swapper.native_size
        return swapper.boost_size(face, "auto" if choice == "auto" else int(choice))

    def _mask_builder(self):
        """The swapper's mask (``mask_types`` beyond the box), or None for the plain box
        mask the swapper builds itself. Built once per stream; an empty combined mask
        leaves its face untouched and is noted in the job's result."""
        if tuple(self.options.mask_types) == ("box",):
            return None
        if self._masks is None:
            from engine.masks import MaskBuilder, MaskSettings

            settings = MaskSettings(
                types=tuple(self.options.mask_types),
                blur=self.options.mask_blur,
                padding=padding4(self.options.mask_padding),
                regions=tuple(self.options.mask_regions),
                areas=tuple(self.options.mask_areas),
            )
            occluders = [self.engine.occluder(name) for name in self.resolved.occluders]
            parser = self.engine.parser(self.resolved.parser) if self.resolved.parser else None
            self._masks = MaskBuilder(settings, occluders, parser)
        return self._noting_empty(self._masks.build)

    def _enhancer_mask_builder(self):
        """Enhancers paste through the box (no padding) and, when on, the occlusion mask."""
        if "occlusion" not in self.options.mask_types or self._mask_builder() is None:
            return None
        return self._noting_empty(self._masks.enhancer_mask)

    def _noting_empty(self, build):
        from engine.masks import is_empty

        def checked(crop, swapped, matrix, face):
            mask = build(crop, swapped, matrix, face)
            if is_empty(mask):
                self.notes.add(
                    "a face's combined mask (" + ", ".join(self.options.mask_types) + ") was "
                    "empty (the face is fully covered or outside the chosen regions), so that "
                    "face was left untouched"
                )
            return mask

        return checked

    def _enhance_faces(self, frame: np.ndarray, faces: list[Face]) -> np.ndarray:
        mask_builder = self._enhancer_mask_builder() if self.resolved.enhancer else None
        for index, name in enumerate(self.resolved.enhancer):
            enhancer = self.engine.enhancer(name)
            for face in faces:
                frame = enhancer.enhance(
                    frame,
                    face,
                    blend=self.options.blend_for(index),
                    fidelity=self.options.enhancer_fidelity,
                    mask_blur=self.options.mask_blur,
                    mask_builder=mask_builder,
                )
        return frame

    def _select(self, frame: np.ndarray, faces: list[Face]) -> list[Face]:
        if not faces:
            return []
        from engine.face_order import order_faces

        faces = order_faces(faces, self.options.face_order)
        if self.options.selector == "one":
            return faces[:1]
        if self.options.selector == "many":
            return faces
        recognizer = self.engine.recognizer(self.resolved.recognizer or RECOGNIZER)
        chosen = []
        for face in faces:
            face.embedding = recognizer.embed(frame, face)
            if cosine_distance(face.embedding, self.reference) <= self.options.reference_distance:
                chosen.append(face)
        return chosen

    def _smooth(self, faces: list[Face]) -> list[Face]:
        alpha = self.options.temporal_smoothing
        smoothed = []
        for face in faces:
            match = max(self._previous, key=lambda old: box_iou(old.box, face.box), default=None)
            if match is not None and box_iou(match.box, face.box) > 0.3:
                face = replace(
                    face,
                    box=(alpha * match.box + (1 - alpha) * face.box).astype(np.float32),
                    landmarks=(alpha * match.landmarks + (1 - alpha) * face.landmarks).astype(
                        np.float32
                    ),
                )
            smoothed.append(face)
        return smoothed
