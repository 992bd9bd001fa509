"""One video over several workers: the studio plans segments, workers encode them in
parallel, the studio joins them without re-encoding.

The split uses the engine's public segment API (``plan_segments``,
``run_segments``, ``join_segments``): a segment's file depends only on its own
frames and the options, never on which worker or device made it, so the
joined output matches a single-worker run frame for frame.

What each side does mirrors ``engine.jobrun.run_job`` for a video target
(check the inputs, the content gate, ``FaceEngine.prepare``, the segment
stream, then the join with the no-face copy and the odd-size warning):
anything added there for videos must be added here too. The content gate runs
in the task of segment 0; when it refuses, the studio stops the other
segments and nothing is joined, so no output exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InvalidInput
from engine.options import ParsedOptions, parse_options
from engine.progress import CancelToken, ProgressCallback
from scheduler.tasks import SCHEDULER_OPTION_KEYS, TaskContext

SEGMENT_DIR = "segments"


@dataclass
class SegmentPlan:
    """The segments of one run's video, planned on the studio."""

    target: Path
    segments: list[dict[str, Any]]
    total_frames: int
    workdir: Path  # the run's segment files: job_dir/work/segments-r<run>
    options: dict[str, Any] = field(default_factory=dict)

    def paths(self, files: dict[int, str]) -> list[Path]:
        return [self.workdir / files[int(segment["index"])] for segment in self.segments]


def parse(options: dict[str, Any], extra_keys: tuple[str, ...] = ()) -> ParsedOptions:
    return parse_options(options, extra_keys=(*SCHEDULER_OPTION_KEYS, *extra_keys))


def plan(
    job_dir: Path, run: int, spec: dict[str, Any], min_segments: int = 2
) -> SegmentPlan | None:
    """Segments of the job's video target, or None when the job should run whole
    (an image target, or a video too short to be worth splitting)."""
    from engine.video import is_video, plan_segments, probe

    target_info = spec.get("target") or {}
    if not target_info.get("name"):
        return None
    target = job_dir / "inputs" / target_info["name"]
    if not target.is_file() or not is_video(target):
        return None
    options = parse(spec.get("options") or {})
    info = probe(target)
    segments = plan_segments(info, options.output)
    if len(segments) < max(2, min_segments):
        return None
    return SegmentPlan(
        target=target,
        segments=[segment.to_dict() for segment in segments],
        total_frames=sum(segment.frames for segment in segments),
        workdir=job_dir / "work" / f"{SEGMENT_DIR}-r{run}",
        options=dict(spec.get("options") or {}),
    )


# -- worker side ------------------------------------------------------------------------


def run_segment(ctx: TaskContext, segment_data: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Encode one segment of the job's video into ``workdir`` (a pool process calls this)."""
    from engine import imageio
    from engine.jobrun import DEFAULT_CONTENT_THRESHOLD, load_sources
    from engine.progress import Progress
    from engine.video import ProgressMeter, Segment, probe, read_frame, run_segments
    from scheduler.swap_task import warm_engine

    if ctx.target is None:
        raise InvalidInput("a video job needs a target")
    segment = Segment.from_dict(segment_data)
    options = parse(ctx.spec.options)
    output_options = options.output.validate()
    engine = warm_engine(ctx)
    sources = load_sources(ctx.sources, ctx.spec.limits.max_pixels)
    if segment.index == 0:
        threshold = ctx.settings.get("content_threshold", DEFAULT_CONTENT_THRESHOLD)
        if threshold is not None:
            ctx.progress(Progress(stage="gate", done=0, total=None))
            gate = engine.content_gate(threshold)
            gate.check_inputs(ctx.sources, ctx.target, progress=ctx.progress, cancel=ctx.cancel)
    limit = ctx.spec.limits.max_pixels
    reference = imageio.load_image(ctx.reference, max_pixels=limit) if ctx.reference else None
    first = read_frame(ctx.target, 0) if options.swap.selector == "reference" else None
    processor = engine.prepare(sources, options.swap, reference, reference_target=first)
    data_dir = ctx.settings.get("data_dir")
    if data_dir:  # every output is marked: the frames here, metadata and C2PA after the join
        from engine.provenance.apply import prepare_stamp
        from engine.provenance.frames import WatermarkingProcessor

        job_id = ctx.job_id.split("~", 1)[0]  # a part's id is "<job id>~<segment index>"
        processor = WatermarkingProcessor(processor, prepare_stamp(data_dir, job_id))
    info = probe(ctx.target)
    workdir.mkdir(parents=True, exist_ok=True)
    meter = ProgressMeter(segment.frames, ctx.progress)
    meter.stage("decode", message=f"segment {segment.index}")
    outcome = run_segments(
        processor,
        ctx.target,
        [segment],
        workdir,
        output_options.video_codec,
        output_options,
        first_pts=int(info.timeline.pts[0]),
        on_frame=meter.frame,
        cancel=ctx.cancel,
    )[0]
    return {
        "index": segment.index,
        "file": outcome.path.name,
        "frames": outcome.frames,
        "frames_with_faces": outcome.frames_with_faces,
        "swapper": getattr(processor, "inner", processor).resolved.swapper,
        "detector": getattr(processor, "inner", processor).resolved.detector,
    }


# -- studio side ------------------------------------------------------------------------


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
    from engine.video.join import can_copy_source, copy_source
    from engine.video.pipeline import NO_FACE_WARNING

    options = parse(segment_plan.options).output.validate()
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
    if info.width % 2 or info.height % 2:
        warnings.append(
            f"the video is {info.width}x{info.height}; the output was padded by one pixel "
            "to even dimensions, as H.264/HEVC/VP9 4:2:0 video requires"
        )
    if provenance is not None and with_faces:
        from engine.provenance.apply import finish_file, prepare_stamp

        finish_file(output, "video", prepare_stamp(*provenance), (info.width, info.height))
    first = by_index[min(by_index)]
    return {
        "kind": "video",
        "faces_swapped": with_faces,
        "frames": segment_plan.total_frames,
        "swapper": first["swapper"],
        "detector": first["detector"],
        "warnings": warnings,
        "segments": len(results),
    }
