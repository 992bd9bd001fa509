"""One video job over several device slots at once: segments in parallel, then a join.

The dispatcher holds one slot for the job. When the job's video is long enough
to be cut into segments (the engine's ``plan_segments``, through
``scheduler.celery_backend.segments``), each segment runs as an attempt of its
own (``<job id>~<index>``, task kind ``swap_segment``): on the job's own slot,
and on any other slot, of any device, that is free at that moment. Borrowed
slots go back as soon as their segment ends, so queued jobs are not kept out
for longer than one segment. When every segment is done the dispatcher joins
them without re-encoding; the job then succeeds like any other (its output is
published under the job's run number).

If a segment fails, the others are stopped and the job's attempt fails with
that segment's error; the usual retry rules apply.
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

from engine.progress import CancelToken, Progress
from scheduler import executor as ex
from scheduler.executor import Attempt, Executor, ExecutorEvent
from scheduler.jobs import JobError
from scheduler.retry import INTERNAL, error_from_exception

log = logging.getLogger(__name__)

SEGMENT_KIND = "swap_segment"
FRAME_STAGES = ("decode", "swap")  # a segment's stages whose progress counts frames
ProgressSink = Callable[[ExecutorEvent], None]


def plan_video(attempt: Attempt) -> Any | None:
    """The segment plan of a swap job's video, or None when it should run whole."""
    if attempt.kind != "swap":
        return None
    from scheduler.celery_backend.segments import plan

    return plan(Path(attempt.job_dir), attempt.run, attempt.spec)


class SplitRun:
    """Runs the segments of one attempt and joins them; ``run()`` returns the outcome."""

    def __init__(
        self,
        attempt: Attempt,
        plan: Any,
        executor: Executor,
        borrow: Callable[[], Awaitable[str | None]],
        give_back: Callable[[str], None],
        on_progress: ProgressSink,
    ) -> None:
        self.attempt = attempt
        self.plan = plan
        self.executor = executor
        self.borrow = borrow
        self.give_back = give_back
        self.on_progress = on_progress
        self.cancel_token = CancelToken()
        self.stopping = False  # the server is stopping: start no more segments
        self.part_ids: set[str] = set()
        self.devices: list[str] = []  # where each segment ran, for the result
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

    async def _segment(self, segment: dict, device: str) -> ExecutorEvent:
        index = int(segment["index"])
        part = dataclasses.replace(
            self.attempt,
            job_id=f"{self.attempt.job_id}~{index}",
            device=device,
            kind=SEGMENT_KIND,
            output=str(Path(self.attempt.output).with_name(f".part{index}")),
            part={"segment": segment, "workdir": str(self.plan.workdir)},
        )
        self.part_ids.add(part.job_id)
        frames = int(segment.get("end_frame", 0)) - int(segment.get("start_frame", 0))
        outcome: ExecutorEvent | None = None
        try:
            async for event in self.executor.run(part):
                if event.type == ex.PROGRESS:
                    # Only frame stages count: segment 0's content check reports its own
                    # fraction (of sampled frames), which is not frames done.
                    if event.progress is not None and event.stage in FRAME_STAGES:
                        done = event.progress * max(frames, 0)
                        self._done_frames[index] = max(self._done_frames.get(index, 0.0), done)
                        self._report("swap", event.preview)
                else:
                    outcome = event
        finally:
            self.part_ids.discard(part.job_id)
        if outcome is not None and outcome.type == ex.SUCCEEDED:
            self._done_frames[index] = max(frames, 0)
            self._report("swap", None)
        return outcome or ExecutorEvent(
            part.job_id, part.run, ex.FAILED, error=JobError(INTERNAL, "a segment ended silently")
        )

    def _report(self, stage: str, preview: bytes | None, fraction: float | None = None) -> None:
        done = sum(self._done_frames.values())
        if fraction is None:
            fraction = min(1.0, done / self.total_frames)
        elapsed = time.monotonic() - self._started
        fps = done / elapsed if elapsed > 0 and done else None
        eta = (self.total_frames - done) / fps if fps else None
        self.on_progress(
            ExecutorEvent(
                self.attempt.job_id,
                self.attempt.run,
                ex.PROGRESS,
                progress=fraction,
                stage=stage,
                eta_seconds=eta,
                fps=fps,
                preview=preview,
            )
        )

    async def _join(self, results: list[dict]) -> ExecutorEvent:
        from scheduler.celery_backend.segments import join

        loop = asyncio.get_running_loop()

        def progress(report: Progress) -> None:
            loop.call_soon_threadsafe(self._report, "join", None, 0.99)

        try:
            result = await asyncio.to_thread(
                join,
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
        return ExecutorEvent(self.attempt.job_id, self.attempt.run, ex.SUCCEEDED, result=result)

    def _as_job_event(self, outcome: ExecutorEvent) -> ExecutorEvent:
        return dataclasses.replace(outcome, job_id=self.attempt.job_id, run=self.attempt.run)
