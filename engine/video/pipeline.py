"""``swap_video``: a whole video job, from the target file to the finished output.

probe → plan segments → process the segments (one streaming run per
processor; with several processors, one per device, segments run in
parallel) → join the segments without re-encoding and mux the audio.

Every run goes through segments, even with one processor, so that a job's
output does not depend on how many devices made it, and a job with a work
directory can resume from its last finished segment after a crash. Without a
work directory the segments live in a temporary directory next to the output
and are deleted at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av

from engine.errors import Canceled, InvalidOptions
from engine.frame import FrameProcessor
from engine.options import OutputOptions
from engine.progress import CancelToken, ProgressCallback
from engine.video.join import (
    can_copy_source,
    check_output,
    copy_source,
    join_segments,
    output_warnings,
)
from engine.video.probe import VideoInfo, probe
from engine.video.progressmeter import ProgressMeter
from engine.video.segments import (
    Segment,
    SegmentManifest,
    SegmentRecord,
    contiguous_runs,
    plan_key,
    plan_segments,
    trim_range,
)
from engine.video.stream import SegmentOutcome, run_segments

NO_FACE_WARNING = "no face found in any frame of the video; the output shows it unchanged"


@dataclass
class VideoResult:
    """What a finished video job produced."""

    output: Path
    frames: int
    frames_with_faces: int
    duration: float
    warnings: list[str] = field(default_factory=list)
    resumed_segments: int = 0


def swap_video(
    processors: Sequence[FrameProcessor],
    target: str | Path,
    output: str | Path,
    options: OutputOptions,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    workdir: str | Path | None = None,
) -> VideoResult:
    """Swap faces in every frame of ``target`` and write ``output``.

    ``processors``: one per device; each segment is processed by one of them,
    starting from ``processor.fork()`` (or ``fork_at``, see ``engine.frame``).
    ``options.trim_mode``: ``cut`` outputs the trim range only; ``keep`` outputs the
    whole clip, with the frames outside the trim range never processed.
    ``workdir``: where finished segments are kept and recorded (a record file per
    segment) so a later call resumes; partial files are removed on cancel or error,
    finished segments are kept there.
    """
    processors = list(processors)
    if not processors:
        raise InvalidOptions("swap_video needs at least one frame processor")
    target, output = Path(target), Path(output)
    options = options.validate()
    cancel = cancel or CancelToken()
    fmt = check_output(output, target, options)
    meter = ProgressMeter(None, progress)
    meter.stage("decode", message="reading the video")
    info = probe(target)
    segments = plan_segments(info, options)  # over the output range
    active = trim_range(info.timeline, options, target.name)  # the frames processed
    cancel.raise_if_canceled()

    own_workdir = workdir is None
    if own_workdir:
        work = Path(tempfile.mkdtemp(prefix=f".{output.stem}.segments-", dir=output.parent))
    else:
        work = Path(workdir)
    try:
        manifest = SegmentManifest(
            work, plan_key(target, segments, fmt.codec, options, processors[0])
        )
        manifest.remove_partials()
        done = {s.index: manifest.finished(s.index) for s in segments}
        finished = {i: r for i, r in done.items() if r is not None}
        pending = [s for s in segments if s.index not in finished]
        total = sum(s.frames for s in segments)
        meter = ProgressMeter(total, progress, already=sum(r.frames for r in finished.values()))
        meter.stage("decode", message=_start_message(len(segments), len(finished)))

        def record(outcome: SegmentOutcome) -> None:
            manifest.record(
                SegmentRecord(
                    index=outcome.segment.index,
                    file=outcome.path.name,
                    frames=outcome.frames,
                    frames_with_faces=outcome.frames_with_faces,
                )
            )

        _run_pending(
            processors,
            target,
            pending,
            info,
            work,
            fmt.codec,
            options,
            meter,
            record,
            cancel,
            active,
        )
        meter.stage("encode", message="all segments encoded")
        records = manifest.records
        frames_with_faces = sum(records[s.index].frames_with_faces for s in segments)
        warnings = []
        if frames_with_faces == 0:
            warnings.append(NO_FACE_WARNING)
        paths = [work / records[s.index].file for s in segments]
        copied = False
        if frames_with_faces == 0 and can_copy_source(info, fmt, options):
            # Nothing changed: the source's own packets are the exact original frames.
            with contextlib.suppress(av.error.FFmpegError):
                copy_source(target, output, options, info, progress, cancel)
                copied = True
        if not copied:
            join_segments(target, paths, output, options, progress, cancel, info=info)
        warnings.extend(output_warnings(info, fmt, options))
    finally:
        if own_workdir:
            shutil.rmtree(work, ignore_errors=True)
    meter.stage("done", done=total, total=total)
    return VideoResult(
        output=output,
        frames=total,
        frames_with_faces=frames_with_faces,
        duration=_range_seconds(info, segments),
        warnings=warnings,
        resumed_segments=len(finished),
    )


def _start_message(count: int, finished: int) -> str:
    if finished:
        return f"resuming: {finished} of {count} segments already done"
    return f"{count} segment(s) to process"


def _range_seconds(info: VideoInfo, segments: list[Segment]) -> float:
    timeline = info.timeline
    return float((segments[-1].end_pts - segments[0].start_pts) * timeline.time_base)


def _run_pending(
    processors: list[FrameProcessor],
    target: Path,
    pending: list[Segment],
    info: VideoInfo,
    workdir: Path,
    codec: str,
    options: OutputOptions,
    meter: ProgressMeter,
    record,
    cancel: CancelToken,
    active: tuple[int, int],
) -> None:
    """One processor: consecutive segments share a decoder. Several: a shared work list."""
    first_pts = int(info.timeline.pts[0])
    common = dict(
        first_pts=first_pts, active=active, on_frame=meter.frame, on_segment=record, cancel=cancel
    )
    if len(processors) == 1 or len(pending) <= 1:
        for run in contiguous_runs(pending):
            run_segments(processors[0], target, run, workdir, codec, options, **common)
        return
    work = list(pending)
    lock = threading.Lock()
    abort = threading.Event()
    errors: list[BaseException] = []

    def worker(processor: FrameProcessor) -> None:
        while not abort.is_set():
            with lock:
                if not work:
                    return
                segment = work.pop(0)
            try:
                run_segments(
                    processor, target, [segment], workdir, codec, options, abort=abort, **common
                )
            except BaseException as error:
                errors.append(error)
                abort.set()
                return

    threads = [
        threading.Thread(target=worker, args=(p,), name=f"video-worker-{i}", daemon=True)
        for i, p in enumerate(processors)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        real = [e for e in errors if not isinstance(e, Canceled)] or errors
        if cancel.canceled:
            cancel.raise_if_canceled()
        raise real[0]
