"""One job, start to finish: the single call a worker (or the CLI) makes into the engine.

A target that holds no face is not an error: the output is a copy of the input
and the result carries a warning, because a video or photo where the person is
absent for a moment is normal. A *source* without a face is an error
(``NoFaceFound``): there is no identity to paste.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import imageio
from engine.errors import InvalidInput, InvalidOptions
from engine.models.resolve import ModelRef
from engine.options import ParsedOptions, parse_options
from engine.pipeline import FaceEngine, FrameSwapper
from engine.progress import CancelToken, Progress, ProgressCallback, ignore_progress
from engine.provenance.apply import ProvenanceStamp, finish_file, watermark_frame
from engine.provenance.frames import WatermarkingProcessor
from engine.video_plan import plan_video

PREVIEW_WIDTH = 256
DEFAULT_CONTENT_THRESHOLD = 0.8


@dataclass
class JobRequest:
    """Paths and options of one job.

    ``options``: either options parsed already (a job spec's ``engine_options``), used
    as they are and never validated again, or the flat mapping of the API/CLI, parsed
    here (``parse_options``) because nothing upstream did.
    ``models``: the models the job's spec names (resolved at submit); the engine runs
    exactly those or fails with ``ModelUnavailable``. None only for a job whose spec
    records no models (one queued before specs carried them, or the CLI): then ``auto``
    is resolved here against the installed models, as before.
    """

    sources: list[Path]
    target: Path
    output: Path
    options: dict | ParsedOptions = field(default_factory=dict)
    models: tuple[ModelRef, ...] | None = None
    reference: Path | None = None
    # Reference images that face_map's ``reference`` entries name, in upload order.
    references: list[Path] = field(default_factory=list)
    workdir: Path | None = None
    extra_option_keys: tuple[str, ...] = ()
    # The operator's content-gate threshold; None only where a gate already ran at submit.
    content_threshold: float | None = DEFAULT_CONTENT_THRESHOLD
    # Marks every output as synthetic (watermark, metadata, C2PA); None only in engine tests.
    stamp: ProvenanceStamp | None = None
    # False where the sources and an image target were already gated at submit (the
    # studio does); a video target's sampled frames are always gated here.
    gate_images: bool = True
    # The pixel limit the inputs were accepted under (the operator's, for studio jobs).
    max_pixels: int = imageio.DEFAULT_MAX_PIXELS


@dataclass
class JobResult:
    output: Path
    kind: str  # "image" | "video"
    faces_swapped: int
    frames: int
    swapper: str
    detector: str
    warnings: list[str] = field(default_factory=list)
    models: list[dict[str, str]] = field(default_factory=list)
    tracks: list[dict] = field(default_factory=list)  # a video's face tracks and decisions


def parsed_options(request: JobRequest) -> ParsedOptions:
    """The request's typed options: trusted as they are when already parsed."""
    if isinstance(request.options, ParsedOptions):
        return request.options
    return parse_options(request.options, extra_keys=request.extra_option_keys)


def target_kind(path: Path) -> str:
    """``image`` or ``video``, decided by the file's content rather than its name."""
    if not path.is_file():
        raise InvalidInput(f"{path.name}: file not found")
    with path.open("rb") as handle:
        head = handle.read(16)
    if not head:
        raise InvalidInput(f"{path.name}: the file is empty (0 bytes)")
    sniffed = imageio.sniff_image_format(head)
    if sniffed and sniffed != "gif":
        return "image"
    return "video"


def load_sources(
    paths: Sequence[Path], max_pixels: int = imageio.DEFAULT_MAX_PIXELS
) -> list[np.ndarray]:
    if not paths:
        raise InvalidInput("at least one source image is required")
    images = []
    for number, path in enumerate(paths, start=1):
        try:
            images.append(imageio.load_image(path, max_pixels=max_pixels))
        except InvalidInput as exc:
            raise InvalidInput(f"source {number}: {exc.message}") from None
    return images


def run_job(
    engines: FaceEngine | Sequence[FaceEngine],
    request: JobRequest,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> JobResult:
    """Validate everything up front, then swap an image or a video target.

    Several engines (one per device) let a video's segments run in parallel.
    """
    engines = [engines] if isinstance(engines, FaceEngine) else list(engines)
    progress = progress or ignore_progress
    cancel = cancel or CancelToken()
    options = parsed_options(request)
    # A missing model fails now, before any work (the spec's models, or the options').
    if request.models is not None:
        engines[0].resolve_refs(request.models, options.swap)
    else:
        engines[0].resolve(options.swap)
    kind = target_kind(request.target)
    imageio.check_output_dir(request.output)
    if kind == "image":
        _check_image_output(request.output)
    sources = load_sources(request.sources, request.max_pixels)
    if request.content_threshold is not None:
        progress(Progress(stage="gate", done=0, total=None))
        gate = engines[0].content_gate(request.content_threshold)
        if request.gate_images:
            gate.check_inputs(
                request.sources,
                request.target,
                progress=progress,
                cancel=cancel,
                max_pixels=request.max_pixels,
            )
        elif kind == "video":
            name = f"target ({request.target.name})"
            gate.check_video(request.target, name, progress=progress, cancel=cancel)
    reference_image = (
        imageio.load_image(request.reference, max_pixels=request.max_pixels)
        if request.reference
        else None
    )
    references = [
        imageio.load_image(path, max_pixels=request.max_pixels) for path in request.references
    ]
    progress(Progress(stage="prepare", done=0, total=None))
    if kind == "image":
        return _run_image(
            engines[0], request, options, sources, reference_image, references, progress, cancel
        )
    return _run_video(
        engines, request, options, sources, reference_image, references, progress, cancel
    )


def _check_image_output(output: Path) -> None:
    if output.suffix.lower() not in imageio.OUTPUT_EXTENSIONS:
        raise InvalidOptions(
            f"{output.name}: an image target needs an image output "
            f"({', '.join(sorted(imageio.OUTPUT_EXTENSIONS))})"
        )


def _run_image(
    engine: FaceEngine,
    request: JobRequest,
    options: ParsedOptions,
    sources: list[np.ndarray],
    reference_image: np.ndarray | None,
    references: list[np.ndarray],
    progress: ProgressCallback,
    cancel: CancelToken,
) -> JobResult:
    target = imageio.load_image(request.target, max_pixels=request.max_pixels)
    cancel.raise_if_canceled()
    started = time.monotonic()
    swapper = engine.prepare(
        sources,
        options.swap,
        reference_image,
        reference_target=target,
        models=request.models,
        references=references,
    )
    cancel.raise_if_canceled()
    progress(Progress(stage="swap", done=0, total=1))
    result = swapper.process(target)
    cancel.raise_if_canceled()
    warnings = sorted(swapper.notes)
    if result.faces_swapped == 0:
        warnings.append(
            "no face found in the target; the output is an unchanged copy "
            "(not marked as synthetic, since nothing was changed)"
        )
    progress(Progress(stage="encode", done=1, total=1, preview=preview_of(result.image)))
    image = result.image
    stamp = request.stamp if result.faces_swapped else None
    if stamp is not None:
        try:
            image = watermark_frame(image, stamp)
        except InvalidInput as exc:  # too small to carry the mark; metadata and C2PA still apply
            warnings.append(f"no invisible watermark: {exc.message}")
    imageio.save_image(image, request.output, quality=options.output.quality)
    if stamp is not None:
        finish_file(request.output, "image", stamp, (image.shape[1], image.shape[0]))
    elapsed = time.monotonic() - started
    progress(Progress(stage="done", done=1, total=1, fps=1 / elapsed if elapsed else None))
    return JobResult(
        output=request.output,
        kind="image",
        faces_swapped=result.faces_swapped,
        frames=1,
        swapper=swapper.resolved.swapper,
        detector=swapper.resolved.detector,
        warnings=warnings,
        models=swapper.models_used(),
    )


def _run_video(
    engines: list[FaceEngine],
    request: JobRequest,
    options: ParsedOptions,
    sources: list[np.ndarray],
    reference_image: np.ndarray | None,
    references: list[np.ndarray],
    progress: ProgressCallback,
    cancel: CancelToken,
) -> JobResult:
    from engine import video

    info = video.probe(request.target)
    needs_first = options.swap.selector == "reference" or options.swap.face_map
    first = video.read_frame(request.target, 0) if needs_first else None
    processors: list[FrameSwapper] = [
        engine.prepare(
            sources,
            options.swap,
            reference_image,
            reference_target=first,
            models=request.models,
            references=references,
        )
        for engine in engines
    ]
    plan = plan_video(
        processors[0],
        request.target,
        options.output,
        workdir=request.workdir,
        progress=progress,
        cancel=cancel,
    )
    for processor in processors:
        processor.plan = plan
    lanes: list = list(processors)
    if request.stamp is not None:
        lanes = [WatermarkingProcessor(processor, request.stamp) for processor in processors]
    result = video.swap_video(
        lanes,
        request.target,
        request.output,
        options.output,
        progress=progress,
        cancel=cancel,
        workdir=request.workdir,
    )
    warnings = list(result.warnings) + sorted(processors[0].notes)
    if request.stamp is not None and result.frames_with_faces:
        progress(
            Progress(
                stage="mux",
                done=result.frames,
                total=result.frames,
                message="marking the output as synthetic",
            )
        )
        finish_file(result.output, "video", request.stamp, output_size(processors[0], info))
    elif request.stamp is not None:
        warnings.append("the output is not marked as synthetic, since no frame was changed")
    return JobResult(
        output=result.output,
        kind="video",
        faces_swapped=result.frames_with_faces,
        frames=result.frames or info.frames,
        swapper=processors[0].resolved.swapper,
        detector=processors[0].resolved.detector,
        warnings=warnings,
        models=processors[0].models_used(),
        tracks=plan.tracks_json(),
    )


def output_size(processor: FrameSwapper, info) -> tuple[int, int]:
    """The output frame size: the input's, times the frame enhancer's scale."""
    name = processor.resolved.frame_enhancer
    if not name:
        return info.width, info.height
    return processor.engine.frame_enhancer(name).output_size(info.width, info.height)


def preview_of(image: np.ndarray, width: int = PREVIEW_WIDTH) -> np.ndarray:
    """A small copy of a frame for progress previews."""
    import cv2

    height, current = image.shape[:2]
    if current <= width:
        return image.copy()
    scale = width / current
    return cv2.resize(image, (width, max(1, int(height * scale))), interpolation=cv2.INTER_AREA)
