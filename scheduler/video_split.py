"""One video job over several device slots: a whole-video stage, the segments, the join.

The scheduler owns this path for every backend (``scheduler.split.SplitRun``
drives it through whatever executor runs attempts: local worker processes or
Celery workers). Three kinds of work, each a task of its own:

1. **The whole-video stage** (``run_stage``, task kind ``swap_stage``) runs once,
   before any segment: the content gate checks the sources and the video here,
   so refused content never has a frame processed. Its result travels to every
   segment (``part["stage"]``); later passes over the whole video (tracking)
   belong here too, so that their decisions do not restart at segment borders.
2. **A segment** (``run_segment``, task kind ``swap_segment``) encodes frames
   ``start_frame <= i < end_frame`` into the job's work directory and records
   it there (``engine.video.SegmentManifest``: one record file per segment,
   so segments finishing in parallel processes never overwrite each other).
   A segment already recorded under the same key is not processed again: a
   run that resumes after a crash, or one that runs the job on a single slot,
   picks up every finished segment.
3. **The join** (``join``, in the server) puts the segment files together
   without re-encoding, as ``engine.video.swap_video`` does for a whole run.

A segment's file depends only on its own frames, the options and the models,
never on which worker or device made it, so the joined output equals an
unsplit run's frame for frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidInput
from engine.options import ParsedOptions
from engine.progress import CancelToken, Progress, ProgressCallback
from scheduler.jobs import JobSpec

if TYPE_CHECKING:
    from scheduler.tasks import TaskContext

STAGE_KIND = "swap_stage"
SEGMENT_KIND = "swap_segment"


@dataclass(frozen=True)
class SegmentPlan:
    """The segments of one job's video, planned in the server."""

    target: Path
    segments: tuple[dict[str, Any], ...]
    total_frames: int
    workdir: Path  # job_dir/work: shared by every run, split or not
    spec: dict[str, Any]  # the job's stored spec

    def paths(self, files: dict[int, str]) -> list[Path]:
        return [self.workdir / files[int(segment["index"])] for segment in self.segments]


def job_options(spec: dict[str, Any]) -> ParsedOptions:
    """The typed options of a stored job (parsed at submit, trusted here)."""
    return JobSpec.from_dict(spec).engine_options


def plan(job_dir: Path, spec: dict[str, Any], min_segments: int = 2) -> SegmentPlan | None:
    """Segments of the job's video target, or None when the job should run whole
    (an image target, or a video too short to be worth splitting)."""
    from engine.video import is_video, plan_segments, probe

    target_info = spec.get("target") or {}
    if not target_info.get("name"):
        return None
    target = job_dir / "inputs" / target_info["name"]
    if not target.is_file() or not is_video(target):
        return None
    options = job_options(spec)
    segments = plan_segments(probe(target), options.output)
    if len(segments) < max(2, min_segments):
        return None
    return SegmentPlan(
        target=target,
        segments=tuple(segment.to_dict() for segment in segments),
        total_frames=sum(segment.frames for segment in segments),
        workdir=job_dir / "work",
        spec=dict(spec),
    )


# -- worker side ------------------------------------------------------------------------


def warm_engine(ctx: TaskContext):
    """The worker's ``FaceEngine`` for this device, built once and kept between jobs."""
    from engine.errors import InvalidOptions
    from engine.models.manager import ModelManager
    from engine.pipeline import FaceEngine

    models_dir = ctx.settings.get("models_dir")
    threads = int(ctx.settings.get("threads", 0))
    licences = ctx.settings.get("licences")
    budget = ctx.settings.get("model_memory_bytes")
    key = ("face_engine", ctx.device, models_dir, threads, str(licences), budget)
    engine = ctx.state.get(key)
    if engine is None:
        if models_dir is None:
            raise InvalidOptions("the worker has no models directory configured")
        manager = ModelManager(
            models_dir, licences=frozenset(licences) if licences is not None else None
        )
        engine = FaceEngine(manager, ctx.device, intra_op_threads=threads, memory_budget=budget)
        ctx.state[key] = engine
    return engine


def run_stage(ctx: TaskContext) -> dict[str, Any]:
    """The whole-video stage: the content gate over the sources and the video.

    It completes before any segment starts; when it refuses, the job fails and
    no frame is ever processed."""
    from engine.jobrun import DEFAULT_CONTENT_THRESHOLD

    if ctx.target is None:
        raise InvalidInput("a video job needs a target")
    threshold = ctx.settings.get("content_threshold", DEFAULT_CONTENT_THRESHOLD)
    gate = "off" if threshold is None else _gate(ctx, threshold)
    plan = _prepare(ctx).swapper.plan  # the whole-video analysis pass, stored for the segments
    return {"gate": gate, "tracks": len(plan.analysis.tracks) if plan is not None else 0}


def _gate(ctx: TaskContext, threshold: float) -> str:
    """The content gate over the sources and the video (refusal: the job fails)."""
    assert ctx.target is not None
    ctx.progress(Progress(stage="gate", done=0, total=None))
    gate = warm_engine(ctx).content_gate(threshold)
    if ctx.settings.get("gate_images", True):
        gate.check_inputs(
            ctx.sources,
            ctx.target,
            progress=ctx.progress,
            cancel=ctx.cancel,
            max_pixels=ctx.spec.limits.max_pixels,
        )
    else:  # the sources were gated at submit; a video's frames are gated here, always
        name = f"target ({ctx.spec.target.original if ctx.spec.target else ctx.target.name})"
        gate.check_video(ctx.target, name, progress=ctx.progress, cancel=ctx.cancel)
    return "passed"


@dataclass(frozen=True)
class _Prepared:
    """What every segment of one run needs, made once per worker and run: the source
    identity (a face detection), the probe, the plan's key."""

    swapper: Any
    processor: Any  # the swapper, watermarking each frame when outputs are stamped
    info: Any
    output_options: Any
    key: str
    active: tuple[int, int]  # the frames processed (the trim range; trim_mode=keep)


def _prepare(ctx: TaskContext) -> _Prepared:
    from engine import imageio
    from engine.jobrun import load_sources
    from engine.video import probe, read_frame
    from engine.video.segments import plan_key, plan_segments, trim_range

    assert ctx.target is not None
    job_id = ctx.job_id.split("~", 1)[0]  # a part's id is "<job id>~<part>"
    cache_key = (job_id, ctx.run, ctx.device)
    cached = ctx.state.get("split_prepared")
    if cached is not None and cached[0] == cache_key:
        return cached[1]
    options = ctx.spec.engine_options
    output_options = options.output.validate()
    limit = ctx.spec.limits.max_pixels
    sources = load_sources(ctx.sources, limit)
    reference = imageio.load_image(ctx.reference, max_pixels=limit) if ctx.reference else None
    references = [imageio.load_image(path, max_pixels=limit) for path in ctx.references]
    needs_first = options.swap.selector == "reference" or options.swap.face_map
    first = read_frame(ctx.target, 0) if needs_first else None
    swapper = warm_engine(ctx).prepare(
        sources,
        options.swap,
        reference,
        reference_target=first,
        models=ctx.spec.models,
        references=references,
    )
    from engine.video_plan import plan_video

    # The tracks and decisions of the whole video: made once (by the whole-video stage, or
    # the first segment to get here) and read from the job's work directory after that.
    swapper.plan = plan_video(
        swapper,
        ctx.target,
        output_options,
        workdir=ctx.workdir,
        progress=ctx.progress,
        cancel=ctx.cancel,
    )
    processor: Any = swapper
    data_dir = ctx.settings.get("data_dir")
    if data_dir:  # every output is marked: the frames here, metadata and C2PA after the join
        from engine.provenance.apply import prepare_stamp
        from engine.provenance.frames import WatermarkingProcessor

        processor = WatermarkingProcessor(swapper, prepare_stamp(data_dir, job_id))
    info = probe(ctx.target)
    # The key of the whole plan, as engine.video.swap_video computes it for an unsplit run.
    key = plan_key(
        ctx.target,
        plan_segments(info, output_options),
        output_options.video_codec,
        output_options,
        processor,
    )
    active = trim_range(info.timeline, output_options, ctx.target.name)
    prepared = _Prepared(swapper, processor, info, output_options, key, active)
    ctx.state["split_prepared"] = (cache_key, prepared)  # one run's at a time
    return prepared


def run_segment(ctx: TaskContext, segment_data: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Encode one segment of the job's video into ``workdir``, unless it is already there.

    A worker that runs several segments of one run prepares them once (``_prepare``):
    each segment still starts from a fresh processor state (``fork``)."""
    from engine.video import ProgressMeter, Segment, run_segments
    from engine.video.segments import SegmentManifest, SegmentRecord

    if ctx.target is None:
        raise InvalidInput("a video job needs a target")
    segment = Segment.from_dict(segment_data)
    prepared = _prepare(ctx)
    swapper, processor, info = prepared.swapper, prepared.processor, prepared.info
    output_options = prepared.output_options
    codec = output_options.video_codec
    manifest = SegmentManifest(workdir, prepared.key)
    described = {
        "index": segment.index,
        "swapper": swapper.resolved.swapper,
        "detector": swapper.resolved.detector,
        "models": swapper.models_used(),
        "frame_scale": _frame_scale(swapper),
        "tracks": swapper.plan.tracks_json() if swapper.plan is not None else [],
    }
    done = manifest.finished(segment.index)
    if done is not None:  # finished by an earlier run: not processed twice
        return {**described, **_record(done), "reused": True}
    manifest.remove_partials()
    meter = ProgressMeter(segment.frames, ctx.progress)
    meter.stage("decode", message=f"segment {segment.index}")
    outcome = run_segments(
        processor,
        ctx.target,
        [segment],
        workdir,
        codec,
        output_options,
        first_pts=int(info.timeline.pts[0]),
        active=prepared.active,
        on_frame=meter.frame,
        cancel=ctx.cancel,
    )[0]
    record = SegmentRecord(
        index=segment.index,
        file=outcome.path.name,
        frames=outcome.frames,
        frames_with_faces=outcome.frames_with_faces,
    )
    manifest.record(record)
    return {**described, **_record(record), "reused": False}


def _record(record: Any) -> dict[str, Any]:
    return {
        "file": record.file,
        "frames": record.frames,
        "frames_with_faces": record.frames_with_faces,
    }


# -- server side ------------------------------------------------------------------------


def join(
    segment_plan: SegmentPlan,
    results: list[dict[str, Any]],
    output: Path,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    provenance: tuple[Path, str] | None = None,
) -> dict[str, Any]:
    """Join the finished segments into ``output`` (the run's partial output) and
    return the job's result, as ``scheduler.swap_task.run_swap`` would.

    ``provenance`` (data dir, job id): the segments' frames were watermarked by the
    workers; the joined file gets the synthetic-media metadata and is signed last."""
    from engine.video import join_segments, output_format, probe
    from engine.video.join import can_copy_source, copy_source, output_warnings
    from engine.video.pipeline import NO_FACE_WARNING

    options = job_options(segment_plan.spec).output.validate()
    info = probe(segment_plan.target)
    by_index = {int(result["index"]): result for result in results}
    files = {index: result["file"] for index, result in by_index.items()}
    with_faces = sum(int(result["frames_with_faces"]) for result in results)
    warnings = []
    fmt = output_format(output, options)
    if with_faces == 0:
        warnings.append(NO_FACE_WARNING)
    if with_faces == 0 and can_copy_source(info, fmt, options):
        copy_source(segment_plan.target, output, options, info, progress, cancel)
    else:
        join_segments(
            segment_plan.target,
            segment_plan.paths(files),
            output,
            options,
            progress,
            cancel,
            info=info,
        )
    warnings.extend(output_warnings(info, fmt, options))
    if provenance is not None and with_faces:
        from engine.provenance.apply import finish_file, prepare_stamp

        first = by_index[min(by_index)]
        scale = int(first.get("frame_scale", 1))
        size = (info.width * scale, info.height * scale)
        finish_file(output, "video", prepare_stamp(*provenance), size)
    first = by_index[min(by_index)]
    return {
        "kind": "video",
        "faces_swapped": with_faces,
        "frames": segment_plan.total_frames,
        "swapper": first["swapper"],
        "detector": first["detector"],
        "warnings": warnings,
        "models": first.get("models", []),
        "tracks": first.get("tracks", []),
        "segments": len(results),
        "segments_reused": sum(1 for result in results if result.get("reused")),
    }


def _frame_scale(swapper) -> int:
    """The frame enhancer's scale (1 without one): the joined output's size over the input's."""
    name = swapper.resolved.frame_enhancer
    return int(swapper.engine.frame_enhancer(name).scale) if name else 1
