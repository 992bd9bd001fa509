"""The streaming core: decode → process → encode, overlapped, through bounded queues.

Three threads per run: a decoder, the processing loop (the calling thread),
and an encoder. ONNX Runtime and PyAV release the GIL in their heavy parts, so
the three overlap on different cores, and the queues (a few frames each) keep
memory independent of the video's length. Every thread checks the cancel
token on every frame; the first error or cancel stops all three and deletes
the partial segment file.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from engine.errors import Canceled, InvalidInput, InvalidOptions
from engine.frame import FrameProcessor, FrameResult, fork_at, process_at
from engine.options import OutputOptions
from engine.progress import CancelToken
from engine.video.decode import DecodedFrame, decode_range
from engine.video.encode import SegmentWriter
from engine.video.probe import frame_rate, open_input, probe, video_stream
from engine.video.segments import Segment, trim_range

QUEUE_FRAMES = 4  # frames held between two stages; bounds memory whatever the length
_POLL = 0.1  # seconds between checks of the stop flag while a queue is full or empty


@dataclass(frozen=True)
class SegmentOutcome:
    """A finished segment file and what happened in it."""

    segment: Segment
    path: Path
    frames: int
    frames_with_faces: int


@dataclass(frozen=True)
class StreamFacts:
    """What the encoder needs from the source stream's header."""

    time_base: Fraction
    rate: Fraction


FrameCallback = Callable[[np.ndarray, int], None]
SegmentCallback = Callable[[SegmentOutcome], None]


class _Stopped(Exception):
    """Raised inside a stage when another stage has failed or the run was aborted."""


_END = object()


def stream_facts(target: Path) -> StreamFacts:
    with open_input(target) as container:
        stream = video_stream(container, target.name)
        time_base = stream.time_base or Fraction(1, 1000)
        return StreamFacts(time_base=time_base, rate=frame_rate(stream))


class _Run:
    """Shared state of one decode → process → encode run."""

    def __init__(self, cancel: CancelToken | None, abort: threading.Event | None) -> None:
        self.cancel = cancel
        self.abort = abort
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def check(self) -> None:
        if self.cancel is not None and self.cancel.canceled:
            raise Canceled("the job was canceled")
        if self.stop.is_set() or (self.abort is not None and self.abort.is_set()):
            raise _Stopped()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if not isinstance(error, _Stopped):
                self.errors.append(error)
            self.stop.set()

    def put(self, channel: queue.Queue, item: object) -> None:
        while True:
            self.check()
            try:
                channel.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def get(self, channel: queue.Queue) -> object:
        while True:
            self.check()
            try:
                return channel.get(timeout=_POLL)
            except queue.Empty:
                continue

    def raise_first(self, completed: bool) -> None:
        """Raise the error that stopped the run (a cancel first), if it did not complete."""
        if self.errors:
            canceled = [e for e in self.errors if isinstance(e, Canceled)]
            raise (canceled or self.errors)[0]
        if not completed:
            raise Canceled("the run was stopped because another part of the job failed")


def run_segments(
    processor: FrameProcessor,
    target: Path,
    segments: list[Segment],
    workdir: Path,
    codec: str,
    options: OutputOptions,
    *,
    first_pts: int | None = None,
    active: tuple[int, int] | None = None,
    on_frame: FrameCallback | None = None,
    on_segment: SegmentCallback | None = None,
    cancel: CancelToken | None = None,
    abort: threading.Event | None = None,
) -> list[SegmentOutcome]:
    """Process consecutive ``segments`` with one continuous decode; one file per segment.

    ``active``: frame indices ``[first, end)`` (the trim range) given to the
    processor; the segments' other frames are encoded as they are, never
    processed (``trim_mode=keep``). None: found from ``options`` (a probe of the
    target, only for ``keep`` with a trim; otherwise every frame is processed).
    ``on_frame(image, faces)`` is called for each encoded frame and
    ``on_segment(outcome)`` as soon as each segment file is complete.
    """
    if not segments:
        return []
    for before, after in zip(segments, segments[1:], strict=False):
        if before.end_frame != after.start_frame:
            raise InvalidOptions("run_segments needs consecutive segments")
    target = Path(target)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    facts = stream_facts(target)
    if active is None:
        active = _active_range(target, options)
    run = _Run(cancel, abort)
    decoded: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
    processed: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
    outcomes: list[SegmentOutcome] = []
    completed = threading.Event()

    def decoder() -> None:
        frames = decode_range(
            target, segments[0].start_pts, segments[-1].end_pts, first_pts=first_pts
        )
        try:
            with contextlib.closing(frames):
                for frame in frames:
                    run.check()
                    run.put(decoded, frame)
            run.put(decoded, _END)
        except BaseException as error:
            run.fail(error)

    def encoder() -> None:
        sink = _SegmentSink(target, segments, workdir, codec, options, facts)
        try:
            while True:
                item = run.get(processed)
                if item is _END:
                    break
                run.check()
                number, pts, image, faces = item
                outcome = sink.write(number, pts, image, faces)
                if on_frame is not None:
                    on_frame(image, faces)
                if outcome is not None:
                    outcomes.append(outcome)
                    if on_segment is not None:
                        on_segment(outcome)
            for outcome in sink.finish():
                outcomes.append(outcome)
                if on_segment is not None:
                    on_segment(outcome)
            completed.set()
        except BaseException as error:
            sink.abort()
            run.fail(error)

    threads = [
        threading.Thread(target=decoder, name="video-decode", daemon=True),
        threading.Thread(target=encoder, name="video-encode", daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        _process_loop(processor, segments, run, decoded, processed, active)
    except BaseException as error:
        run.fail(error)
    for thread in threads:
        thread.join()
    run.raise_first(completed.is_set())
    return outcomes


def _active_range(target: Path, options: OutputOptions) -> tuple[int, int] | None:
    """The trim range where it differs from the planned segments (``trim_mode=keep``)."""
    if options.trim_mode != "keep" or (options.trim_start, options.trim_end) == (None, None):
        return None
    return trim_range(probe(target).timeline, options, target.name)


def _process_loop(
    processor: FrameProcessor,
    segments: list[Segment],
    run: _Run,
    decoded: queue.Queue,
    processed: queue.Queue,
    active: tuple[int, int] | None = None,
) -> None:
    """Give each frame of the active range to the processor, with its absolute index.

    Frames arrive in presentation order, so the k-th frame of a segment is frame
    ``start_frame + k`` of the video. A segment's processor is forked (fresh
    temporal state) at its first processed frame; frames outside ``active`` pass
    through untouched and never reach the processor.
    """
    first, end = active if active is not None else (0, segments[-1].end_frame)
    number = -1
    index = -1
    current: FrameProcessor | None = None
    while True:
        item = run.get(decoded)
        if item is _END:
            run.put(processed, _END)
            return
        assert isinstance(item, DecodedFrame)
        run.check()
        position = max(number, 0)
        while position < len(segments) and item.pts >= segments[position].end_pts:
            position += 1
        if position >= len(segments):
            continue
        if position != number:
            number = position
            index = segments[number].start_frame
            current = None
        else:
            index += 1
        if first <= index < end:
            if current is None:
                current = fork_at(processor, index)  # fresh temporal state per segment
            result = process_at(current, item.image, index)
        else:
            result = FrameResult(item.image, 0)
        run.put(processed, (number, item.pts, result.image, int(result.faces_swapped)))


class _SegmentSink:
    """The encoder side: opens, fills and closes one segment file after another."""

    def __init__(
        self,
        target: Path,
        segments: list[Segment],
        workdir: Path,
        codec: str,
        options: OutputOptions,
        facts: StreamFacts,
    ) -> None:
        self.target = target
        self.segments = segments
        self.workdir = workdir
        self.codec = codec
        self.options = options
        self.facts = facts
        self.number = -1
        self.writer: SegmentWriter | None = None
        self.pending: tuple[int, np.ndarray] | None = None
        self.faces = 0

    def write(self, number: int, pts: int, image: np.ndarray, faces: int) -> SegmentOutcome | None:
        finished = None
        if number != self.number:
            finished = self._close_current()
            self._check_no_gap(number)
            self._open(number, image)
        assert self.writer is not None
        if self.pending is not None:
            before_pts, before_image = self.pending
            self.writer.write(before_image, before_pts, pts - before_pts)
        self.pending = (pts, image)
        self.faces += faces > 0
        return finished

    def finish(self) -> list[SegmentOutcome]:
        outcome = self._close_current()
        if self.number != len(self.segments) - 1:
            missing = self.segments[max(self.number + 1, 0)]
            raise InvalidInput(
                f"{self.target.name}: the video is damaged: frames from "
                f"{missing.start_frame} on could not be decoded"
            )
        return [outcome] if outcome is not None else []

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def _open(self, number: int, image: np.ndarray) -> None:
        segment = self.segments[number]
        height, width = image.shape[:2]
        self.number = number
        self.faces = 0
        self.writer = SegmentWriter(
            self.workdir / segment.file_name,
            self.codec,
            self.options,
            width,
            height,
            self.facts.time_base,
            self.facts.rate,
            origin_pts=segment.start_pts,
        )

    def _check_no_gap(self, number: int) -> None:
        if number != self.number + 1:
            missing = self.segments[self.number + 1]
            raise InvalidInput(
                f"{self.target.name}: the video is damaged: segment {missing.index} "
                f"(frames {missing.start_frame}–{missing.end_frame - 1}) could not be decoded"
            )

    def _close_current(self) -> SegmentOutcome | None:
        if self.writer is None:
            return None
        segment = self.segments[self.number]
        if self.pending is not None:
            pts, image = self.pending
            self.writer.write(image, pts, segment.end_pts - pts)
            self.pending = None
        if self.writer.frames != segment.frames:
            raise InvalidInput(
                f"{self.target.name}: the video is damaged: segment {segment.index} "
                f"decoded {self.writer.frames} of its {segment.frames} frames"
            )
        path = self.writer.close()
        self.writer = None
        return SegmentOutcome(segment, path, segment.frames, self.faces)


def process_segment(
    processor: FrameProcessor,
    target: str | Path,
    segment: Segment,
    workdir: str | Path,
    options: OutputOptions,
    progress=None,
    cancel: CancelToken | None = None,
    active: tuple[int, int] | None = None,
) -> Path:
    """Process one segment on its own (for a scheduler that spreads segments over workers).

    Writes ``workdir/segment-NNNNN.mp4`` atomically and returns its path. The
    segment's output does not depend on which worker made it. ``progress``
    receives ``Progress(stage="swap")`` reports counted in this segment's frames.
    ``active``: the frames processed (``segments.trim_range``); None: found from
    ``options`` as ``run_segments`` does.
    """
    from engine.video.progressmeter import ProgressMeter

    codec = options.validate().video_codec
    meter = ProgressMeter(segment.frames, progress)
    meter.stage("decode")
    outcomes = run_segments(
        processor,
        Path(target),
        [segment],
        Path(workdir),
        codec,
        options,
        active=active,
        on_frame=meter.frame,
        cancel=cancel,
    )
    return outcomes[0].path
