"""The production task kind ``swap``: one face-swap job through ``engine.jobrun.run_job``.

Submissions are checked here before anything is stored (the options were
parsed already, by the scheduler, for every kind): at least one source, every
source an image within the pixel limit, a target that is an image or a video
PyAV can open. The worker keeps one ``FaceEngine`` per device warm in its state
between jobs. A long video split over several slots runs as the kinds
``swap_stage`` and ``swap_segment`` (``scheduler.video_split``).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import scheduler.video_split as video_split
from engine import imageio
from engine.errors import InvalidInput, InvalidOptions
from engine.models.resolve import ModelRef, resolve_for_spec
from engine.options import ParsedOptions
from scheduler.jobs import InputLimits
from scheduler.tasks import Submission, TaskContext, TaskKind, Upload

IMAGE_OUTPUT = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".png", "tiff": ".png"}


def image_format(upload: Upload, what: str, limits: InputLimits) -> str:
    """The sniffed format of an image upload, after checking its header and pixel count."""
    name = f"{what} ({upload.original})" if upload.original else what
    if upload.size == 0:
        raise InvalidInput(f"{name}: the file is empty (0 bytes)")
    if upload.path is not None:
        try:
            header = imageio.read_header(upload.path, max_pixels=limits.max_pixels)
        except InvalidInput as exc:
            raise InvalidInput(f"{what}: {exc.message}") from None
        return header.format
    return imageio.header_from_bytes(upload.data or b"", name, limits.max_pixels).format


def check_video(upload: Upload) -> None:
    """A target that is not an image must be a video PyAV can open, with a video stream."""
    import av

    name = f"target ({upload.original})" if upload.original else "target"
    source: Any = str(upload.path) if upload.path is not None else io.BytesIO(upload.data or b"")
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.video:
                raise InvalidInput(f"{name}: the file has no video stream")
            if container.format.name.startswith("image2") or container.format.name.endswith(
                "_pipe"
            ):
                raise ValueError("an image demuxer, not a video")
            # FFmpeg opens almost anything; decoding one frame shows the file really is a video.
            next(container.decode(video=0))
    except InvalidInput:
        raise
    except Exception:
        raise InvalidInput(
            f"{name}: not an image or a video that can be read "
            "(expected JPEG, PNG, WebP, BMP, TIFF, or a video such as MP4, WebM, MOV, MKV)"
        ) from None


def validate_swap(submission: Submission) -> None:
    limits = submission.limits
    if not submission.sources:
        raise InvalidInput("at least one source image is required")
    if len(submission.sources) > limits.max_sources:
        raise InvalidInput(f"at most {limits.max_sources} source images are allowed")
    for number, source in enumerate(submission.sources, start=1):
        image_format(source, f"source {number}", limits)
    if submission.target is None:
        raise InvalidInput("a target image or video is required")
    if submission.target.size == 0:
        raise InvalidInput(f"target ({submission.target.original}): the file is empty (0 bytes)")
    if imageio.sniff_image_format(submission.target.head) in (None, "gif"):
        check_video(submission.target)
    else:
        image_format(submission.target, "target", limits)
    references = submission.references or (
        [submission.reference] if submission.reference is not None else []
    )
    if len(references) > limits.max_sources:
        raise InvalidInput(f"at most {limits.max_sources} reference images are allowed")
    for number, reference in enumerate(references):
        image_format(reference, f"reference {number}", limits)
    options = submission.options
    check_face_map(options, len(submission.sources), len(references))
    if (
        options.get("selector") == "reference"
        and submission.reference is None
        and options.get("reference_face_index") is None
    ):
        raise InvalidOptions(
            "selector 'reference' needs a reference image or a reference_face_index"
        )


def check_face_map(options: dict[str, Any], sources: int, references: int) -> None:
    """``face_map`` names only sources and references that were uploaded (its face and
    track indices are checked against the target when the job starts)."""
    from engine.face_map import check_indices
    from engine.options import parse_face_map

    entries = parse_face_map(options.get("face_map") or [])
    check_indices(entries, sources, references, None)


def swap_output_name(submission: Submission) -> str:
    assert submission.target is not None
    sniffed = imageio.sniff_image_format(submission.target.head)
    if sniffed in IMAGE_OUTPUT:
        return "result" + IMAGE_OUTPUT[sniffed]
    default = "gif" if sniffed == "gif" else "mp4"  # a GIF stays a GIF unless asked otherwise
    container = submission.options.get("container") or default
    return f"result.{container}"


def run_swap(ctx: TaskContext) -> dict[str, Any]:
    """Settings used: ``models_dir``, ``threads``, ``content_threshold`` (None: the gate ran
    at submit) and ``data_dir`` (where the provenance keys live; every output is stamped)."""
    from engine.jobrun import DEFAULT_CONTENT_THRESHOLD, JobRequest, run_job
    from engine.provenance.apply import prepare_stamp

    assert ctx.target is not None
    ctx.workdir.mkdir(parents=True, exist_ok=True)  # finished video segments live here
    data_dir = ctx.settings.get("data_dir")
    request = JobRequest(
        sources=ctx.sources,
        target=ctx.target,
        output=ctx.output,
        options=ctx.spec.engine_options,
        models=ctx.spec.models,
        reference=ctx.reference,
        references=ctx.references,
        workdir=ctx.workdir,
        content_threshold=ctx.settings.get("content_threshold", DEFAULT_CONTENT_THRESHOLD),
        stamp=prepare_stamp(data_dir, ctx.job_id) if data_dir else None,
        gate_images=bool(ctx.settings.get("gate_images", True)),
        max_pixels=ctx.spec.limits.max_pixels,
    )
    result = run_job(video_split.warm_engine(ctx), request, ctx.progress, ctx.cancel)
    return {
        "kind": result.kind,
        "faces_swapped": result.faces_swapped,
        "frames": result.frames,
        "swapper": result.swapper,
        "detector": result.detector,
        "warnings": list(result.warnings),
        "models": list(result.models),
        "tracks": list(result.tracks),
    }


def swap_models(options: ParsedOptions, settings: Mapping[str, Any]) -> tuple[ModelRef, ...]:
    """The models a swap job runs with, resolved at submit against the workers' models
    directory (without one, ``auto`` is the catalogue's preferred model)."""
    return resolve_for_spec(options, settings.get("models_dir"), settings.get("licences"))


def run_swap_stage(ctx: TaskContext) -> dict[str, Any]:
    """The whole-video stage of a split job (the content gate), before any segment."""
    return video_split.run_stage(ctx)


def run_swap_segment(ctx: TaskContext) -> dict[str, Any]:
    """One segment of a video job the dispatcher split over several device slots."""
    if ctx.part is None:
        raise InvalidOptions("swap_segment runs only as a part of a split job")
    return video_split.run_segment(ctx, ctx.part["segment"], ctx.workdir)


TASK_KINDS = (
    TaskKind(
        "swap", run_swap, validate=validate_swap, output_name=swap_output_name, models=swap_models
    ),
    TaskKind(video_split.STAGE_KIND, run_swap_stage),
    TaskKind(video_split.SEGMENT_KIND, run_swap_segment),
)
