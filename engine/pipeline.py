"""The face pipeline: detect → select → swap → enhance, per frame.

``FaceEngine`` owns the warm models of one device (one per worker slot).
``FaceEngine.prepare`` takes the concrete models the job's spec names (or, for a
job from before specs named them, resolves the options once) and returns a ``FrameSwapper``, which holds the job's state (source identity,
reference embedding, the previous frame's faces for temporal stability). Job
state lives in that object, never in the engine, so two jobs never share it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from engine.devices import Device
from engine.errors import InvalidOptions, NoFaceFound
from engine.faces import Face
from engine.frame import FrameResult
from engine.models.manager import ModelManager
from engine.models.resolve import (
    RECOGNIZER,
    ModelRef,
    ResolvedModels,
    resolve,
    resolved_from_refs,
)
from engine.options import SwapOptions
from engine.runtime import SessionCache
from engine.swappers.base import SourceIdentity


class FaceEngine:
    """Warm models for one device; safe to share between the jobs of one worker."""

    def __init__(
        self, models: ModelManager, device: str | Device = "cpu", intra_op_threads: int = 0
    ) -> None:
        self.models = models
        self.sessions = SessionCache(device, intra_op_threads)
        self._components: dict[str, object] = {}
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

    def _component(self, key: str, build):
        with self._lock:
            component = self._components.get(key)
            if component is None:
                component = build()
                self._components[key] = component
            return component

    def detector(self, name: str):
        def build():
            if name == "mtcnn":
                from engine.detectors.mtcnn import MtcnnDetector

                return MtcnnDetector(self.sessions)
            from engine.detectors.scrfd import ScrfdDetector

            return ScrfdDetector(self.sessions, self.models.require(name))

        return self._component(f"detector:{name}", build)

    def recognizer(self):
        from engine.recognizer import ArcFaceRecognizer

        return self._component(
            "recognizer", lambda: ArcFaceRecognizer(self.sessions, self.models.require(RECOGNIZER))
        )

    def swapper(self, name: str):
        def build():
            if name == "classic":
                from engine.swappers.classic import ClassicSwapper

                return ClassicSwapper()
            from engine.swappers.inswapper import InSwapper

            return InSwapper(self.sessions, self.models.require(name))

        return self._component(f"swapper:{name}", build)

    def enhancer(self, name: str):
        from engine.enhancer import GfpganEnhancer

        return self._component(
            f"enhancer:{name}", lambda: GfpganEnhancer(self.sessions, self.models.require(name))
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
        """Faces in an image, largest first; with ``embed`` and a recognizer, with embeddings.

        ``resolved``: the job's models (its detector and recognizer); without it the
        detector is resolved from ``options``."""
        options = options or SwapOptions()
        if resolved is None:
            resolved = self.resolve(replace(options, selector="one", swapper="classic"))
        faces = self.detector(resolved.detector).detect(image, options.detector_score)
        faces = sorted(faces, key=lambda face: face.area, reverse=True)
        if embed and resolved.recognizer:
            recognizer = self.recognizer()
            for face in faces:
                face.embedding = recognizer.embed(image, face)
        return faces

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
            recognizer = self.recognizer()
            embeddings = [recognizer.embed(image, face) for image, face in chosen]
            embedding = np.mean(np.stack(embeddings), axis=0).astype(np.float32)
        best_image, best_face = max(chosen, key=lambda pair: pair[1].area)
        return SourceIdentity(image=best_image, face=best_face, embedding=embedding)

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
                "(the index of a face in the target, largest first)"
            )
        faces = self.detect(reference_target, options, embed=True, resolved=resolved)
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
    ) -> FrameSwapper:
        """Resolve models and the source identity once; the result swaps frame after frame.

        ``models``: the models the job's spec names (resolved when it was submitted). They
        are used as they are, each checked to be installed with its checksum; a missing
        one is ``ModelUnavailable`` naming it, never a reason to run another model. None
        (a job from before specs carried models) resolves ``options`` here, as before.
        """
        resolved = self.resolve(options) if models is None else self.resolve_refs(models, options)
        swapper = self.swapper(resolved.swapper)
        source = self.source_identity(
            sources, options, needs_embedding=swapper.needs_embedding, resolved=resolved
        )
        reference = self.reference_embedding(
            options, reference_image, reference_target, resolved=resolved
        )
        return FrameSwapper(self, resolved, options, source, reference)


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
    source: SourceIdentity
    reference: np.ndarray | None = None
    _previous: list[Face] = field(default_factory=list)
    _frame_index: int = 0

    def fork(self) -> FrameSwapper:
        return FrameSwapper(self.engine, self.resolved, self.options, self.source, self.reference)

    def faces(self, frame: np.ndarray) -> list[Face]:
        """Faces of this frame that will be swapped, after selection and smoothing."""
        reuse = self._previous and self._frame_index % self.options.detect_every != 0
        self._frame_index += 1
        if reuse:
            return self._previous
        detector = self.engine.detector(self.resolved.detector)
        faces = sorted(
            detector.detect(frame, self.options.detector_score),
            key=lambda face: face.area,
            reverse=True,
        )
        faces = self._select(frame, faces)
        if self.options.temporal_smoothing > 0:
            faces = self._smooth(faces)
        self._previous = faces
        return faces

    def process(self, frame: np.ndarray) -> FrameResult:
        faces = self.faces(frame)
        if not faces:
            return FrameResult(image=frame, faces_swapped=0)
        swapper = self.engine.swapper(self.resolved.swapper)
        result = frame
        for face in faces:
            result = swapper.swap(result, face, self.source, self.options)
        if self.resolved.enhancer != "none":
            enhancer = self.engine.enhancer(self.resolved.enhancer)
            for face in faces:
                result = enhancer.enhance(result, face, self.options.enhancer_blend)
        return FrameResult(image=result, faces_swapped=len(faces))

    def _select(self, frame: np.ndarray, faces: list[Face]) -> list[Face]:
        if not faces:
            return []
        if self.options.selector == "one":
            return faces[:1]
        if self.options.selector == "many":
            return faces
        recognizer = self.engine.recognizer()
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
