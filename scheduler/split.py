"""One video job over several device slots at once: a stage, segments in parallel, a join.

This is the one split path of the scheduler, for every executor (local worker
processes, Celery workers). The dispatcher holds one slot for the job. When the
job's video is long enough to be cut into segments (``scheduler.video_split``):

1. the whole-video stage (``<job id>~stage``, task kind ``swap_stage``) runs on
   the job's own slot: the content gate completes here before any segment
   starts, and a refusal fails the job with no frame processed;
2. each segment runs as an attempt of its own (``<job id>~<index>``, task kind
   ``swap_segment``), given the stage's result: on the job's own slot, and on
   any other slot, of any device, that is free at that moment. Borrowed slots
   go back as soon as their segment ends, so queued jobs are not kept out for
   longer than one segment. A segment an earlier run finished is reused, not
   processed again;
3. the dispatcher joins the segments without re-encoding; the job then succeeds
   like any other (its output is published under the job's run number).

Each part's end is written to the job's history (``stage``, ``segment``: the
device it ran on, its frames, whether it was reused). If a part fails, the
others are stopped and the job's attempt fails with that part's error; the
usual retry rules apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import scheduler.executor as ex
import scheduler.video_split as video_split
from engine.progress import CancelToken, JobProgress, Progress
from scheduler.executor import Attempt, Executor, ExecutorEvent
from scheduler.jobs import JobError
from scheduler.retry import INTERNAL, error_from_exception

log = logging.getLogger(__name__)

FRAME_STAGES = ("decode", "swap")  # a segment's stages whose progress counts frames
ProgressSink = Callable[[ExecutorEvent], None]
HistoryNote = Callable[[str, dict[str, Any]], Awaitable[None]]


def plan_video(attempt: Attempt) -> video_split.SegmentPlan | None:
    """The segment plan of a swap job's video, or None when it should run whole."""
    if attempt.kind != "swap":
        return None
    return video_split.plan(Path(attempt.job_dir), attempt.spec)


async def _no_note(event: str, detail: dict[str, Any]) -> None:
    return None


class SplitRun:
    """Runs the segments of one attempt and joins them; ``run()`` returns the outcome."""

    def __init__(
        self,
        attempt: Attempt,
        plan: video_split.SegmentPlan,
        executor: Executor,
        borrow: Callable[[], Awaitable[str | None]],
        give_back: Callable[[str], None],
        on_progress: ProgressSink,
        note: HistoryNote = _no_note,
    ) -> None:
        self.attempt = attempt
        self.plan = plan
        self.executor = executor
        self.borrow = borrow
        self.give_back = give_back
        self.on_progress = on_progress
        self.note = note
        self.stage: dict[str, Any] | None = None  # the whole-video stage's result
        self.cancel_token = CancelToken()
        self.stopping = False  # the server is stopping: start no more segments
        self.part_ids: set[str] = set()
        self.devices: list[str] = []  # where each segment ran, for the result
        self.workers: set[str] = set()  # the remote workers that made segments, if any
        self._done_frames: dict[int, float] = {}
        self._started = time.monotonic()

    @property
    def total_frames(self) -> int:
        return max(1, int(self.plan.total_frames))

    async def cancel(self, grace: float) -> None:
        """Stop every running segment (and the join)."""
        self.cancel_token.cancel()
        await asyncio.gather(
            *(self.executor.cancel(part_id, grace) for part_id in list(self.part_ids)),
            return_exceptions=True,
        )

    async def run(self) -> ExecutorEvent:
        stage = await self._run_stage()
        if self.cancel_token.canceled:
            return self._as_job_event(ExecutorEvent("", 0, ex.CANCELED))
        if stage.type != ex.SUCCEEDED:
            return self._as_job_event(stage)
        self.stage = dict(stage.result or {})
        pending = list(self.plan.segments)
        running: dict[asyncio.Task, tuple[dict, str, bool]] = {}
        results: list[dict] = []
        failure: ExecutorEvent | None = None
        own_slot_free = True
        try:
            while (pending or running) and failure is None and not self.cancel_token.canceled:
                while pending and not self.stopping:
                    if own_slot_free:
                        device, borrowed, own_slot_free = self.attempt.device, False, False
                    else:
                        device = await self.borrow()
                        if device is None:
                            break
                        borrowed = True
                    segment = pending.pop(0)
                    task = asyncio.get_running_loop().create_task(self._segment(segment, device))
                    running[task] = (segment, device, borrowed)
                if not running:  # stopping before any segment started
                    failure = ExecutorEvent("", 0, ex.RELEASED)
                    break
                done, _ = await asyncio.wait(
                    running, timeout=0.2 if pending else None, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    segment, device, borrowed = running.pop(task)
                    if borrowed:
                        self.give_back(device)
                    else:
                        own_slot_free = True
                    outcome = task.result()
                    if outcome.type == ex.SUCCEEDED:
                        results.append(outcome.result)
                        self.devices.append(device)
                    elif failure is None:
                        failure = outcome
        finally:
            if running:
                await self.cancel(0)
                for task, (_, device, borrowed) in running.items():
                    with contextlib.suppress(Exception):
                        await task
                    if borrowed:
                        self.give_back(device)
        if failure is not None or self.cancel_token.canceled:
            return self._as_job_event(failure or ExecutorEvent("", 0, ex.CANCELED))
        return await self._join(results)

    async def _run_stage(self) -> ExecutorEvent:
        """The whole-video stage on the job's own slot; no segment starts before it ends."""
        if self.stopping:
            return ExecutorEvent("", 0, ex.RELEASED)
        part = self._part("stage", video_split.STAGE_KIND, self.attempt.device, {"stage": True})
        outcome = await self._run_part(part, lambda event: self._forward(event))
        detail = {"device": part.device, "outcome": outcome.type}
        if outcome.type == ex.SUCCEEDED:
            detail.update(outcome.result or {})
        elif outcome.error is not None:
            detail["error"] = outcome.error.code
        await self.note("stage", detail)
        return outcome

    async def _segment(self, segment: dict, device: str) -> ExecutorEvent:
        index = int(segment["index"])
        payload = {"segment": segment, "stage": self.stage}
        part = self._part(str(index), video_split.SEGMENT_KIND, device, payload)
        frames = int(segment.get("end_frame", 0)) - int(segment.get("start_frame", 0))

        def on_event(event: ExecutorEvent) -> None:
            # Only frame stages count: other stages report their own fractions.
            report = event.progress or JobProgress()
            if report.fraction is not None and report.stage in FRAME_STAGES:
                done = report.fraction * max(frames, 0)
                self._done_frames[index] = max(self._done_frames.get(index, 0.0), done)
                self._report("swap", event.preview)

        outcome = await self._run_part(part, on_event)
        if outcome.type == ex.SUCCEEDED:
            self._done_frames[index] = max(frames, 0)
            self._report("swap", None)
            result = outcome.result or {}
            detail = {
                "index": index,
                "device": device,
                "frames": int(result.get("frames", frames)),
                "reused": bool(result.get("reused")),
            }
            if result.get("worker"):  # a remote worker (Celery) names itself
                detail["worker"] = result["worker"]
                self.workers.add(str(result["worker"]))
            await self.note("segment", detail)
        return outcome

    def _part(self, name: str, kind: str, device: str, payload: dict[str, Any]) -> Attempt:
        return dataclasses.replace(
            self.attempt,
            job_id=f"{self.attempt.job_id}~{name}",
            device=device,
            kind=kind,
            output=str(Path(self.attempt.output).with_name(f".part-{name}")),
            part=payload,
        )

    async def _run_part(
        self, part: Attempt, on_event: Callable[[ExecutorEvent], None]
    ) -> ExecutorEvent:
        self.part_ids.add(part.job_id)
        outcome: ExecutorEvent | None = None
        try:
            async for event in self.executor.run(part):
                if event.type == ex.PROGRESS:
                    on_event(event)
                else:
                    outcome = event
        finally:
            self.part_ids.discard(part.job_id)
        return outcome or ExecutorEvent(
            part.job_id, part.run, ex.FAILED, error=JobError(INTERNAL, "a part ended silently")
        )

    def _forward(self, event: ExecutorEvent) -> None:
        """The stage's progress, as the job's: its stage name, at 0 frames done (the
        job's fraction counts frames, and must never go back)."""
        progress = dataclasses.replace(
            event.progress or JobProgress(), fraction=0.0, eta_seconds=None
        )
        job_event = dataclasses.replace(event, progress=progress, preview=None)
        self.on_progress(self._as_job_event(job_event))

    def _report(self, stage: str, preview: bytes | None, fraction: float | None = None) -> None:
        done = sum(self._done_frames.values())
        if fraction is None:
            fraction = min(0.98, done / self.total_frames)  # the join is the last 2 %
        elapsed = time.monotonic() - self._started
        fps = done / elapsed if elapsed > 0 and done else None
        eta = (self.total_frames - done) / fps if fps else None
        self.on_progress(
            ExecutorEvent(
                self.attempt.job_id,
                self.attempt.run,
                ex.PROGRESS,
                progress=JobProgress(fraction, stage, eta, fps),
                preview=preview,
            )
        )

    async def _join(self, results: list[dict]) -> ExecutorEvent:
        loop = asyncio.get_running_loop()

        def progress(report: Progress) -> None:
            loop.call_soon_threadsafe(self._report, "join", None, 0.99)

        try:
            result = await asyncio.to_thread(
                video_split.join,
                self.plan,
                sorted(results, key=lambda r: int(r["index"])),
                Path(self.attempt.output),
                progress,
                self.cancel_token,
                # DATA_DIR/jobs/<id>: the data dir holds the installation's signing keys
                (Path(self.attempt.job_dir).parents[1], self.attempt.job_id),
            )
        except Exception as exc:
            if self.cancel_token.canceled:
                return ExecutorEvent(self.attempt.job_id, self.attempt.run, ex.CANCELED)
            return ExecutorEvent(
                self.attempt.job_id, self.attempt.run, ex.FAILED, error=error_from_exception(exc)
            )
        result = {**result, "devices": sorted(set(self.devices))}
        if self.workers:
            result["workers"] = sorted(self.workers)
        return ExecutorEvent(self.attempt.job_id, self.attempt.run, ex.SUCCEEDED, result=result)

    def _as_job_event(self, outcome: ExecutorEvent) -> ExecutorEvent:
        return dataclasses.replace(outcome, job_id=self.attempt.job_id, run=self.attempt.run)
