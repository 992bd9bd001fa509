"""``ZeroGPUExecutor``: where a job's attempts run on ZeroGPU.

The store, dispatcher, leases and recovery stay the scheduler's own; only the
place of the work differs. A web-page job's GPU work runs in ``@spaces.GPU``
calls charged to its visitor (a video as segments, as many per call as fit, then
joined here); work without a visitor runs on the CPU or on the Space's quota.
See docs/spaces.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import scheduler.executor as ex
from engine.progress import JobProgress
from scheduler.executor import Attempt, Executor, ExecutorEvent
from scheduler.jobs import JobError
from scheduler.progress_gate import PROGRESS_INTERVAL
from scheduler.retry import INTERNAL, TIME_LIMIT, error_from_exception
from scheduler.zerogpu.decorator import (
    _point_children_at_their_gpu,
    _report_startup,
    decorate,
    load_decorator,
)
from scheduler.zerogpu.settings import ENV_DURATION, ZeroGPUSettings
from scheduler.zerogpu.visitors import Visitor, Visitors

log = logging.getLogger("scheduler.zerogpu")

# Error codes of this backend (transient ones are retried by the dispatcher).
ABORTED = "zerogpu_aborted"  # the platform ended a call (past its duration, or it died)
REFUSED = "zerogpu_refused"  # no GPU for this call: quota, illegal duration, none free
EXPIRED = "zerogpu_token_expired"  # the visitor's token expired before the job was done

CPU_WARNING = (
    "ran on the CPU: this Space runs on ZeroGPU, which lends its GPU only to jobs "
    "submitted from its web page (FUSION_ZEROGPU_UNATTENDED=cpu)"
)
FRAME_STAGES = ("decode", "swap")  # a segment's stages whose progress counts frames
SEGMENTS_SHARE = 0.98  # of a video's progress bar; the join fills the rest
STOP_GRACE = 3.0  # seconds a call gets to stop when the server stops


@dataclass
class _Run:
    attempt: Attempt
    stop: threading.Event = field(default_factory=threading.Event)
    ending: str | None = None  # why we end it: "canceled", "released", "time_limit"
    grace_until: float | None = None  # loop time after which a stopping call is abandoned
    items: asyncio.Queue | None = None  # the current call's items
    on_cpu: bool = False
    calls: int = 0
    charged_to: str | None = None  # "visitor" or "space"
    device: str | None = None  # the device the calls used (``call_device`` in the call)
    pids: list[int] = field(default_factory=list)


class _CallFailed(Exception):
    def __init__(self, error: JobError, progressed: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.progressed = progressed


class ZeroGPUExecutor(Executor):
    """Attempts run in ``@spaces.GPU`` calls (or, without a visitor, on the CPU)."""

    def __init__(
        self,
        task_modules: tuple[str, ...] | list[str] = (),
        settings: Mapping[str, Any] | None = None,
        zerogpu: ZeroGPUSettings | None = None,
        *,
        progress_interval: float = PROGRESS_INTERVAL,
        preview_interval: float = 1.0,
    ) -> None:
        self.task_modules = tuple(task_modules)
        self.settings = dict(settings or {})
        self.zerogpu = zerogpu or ZeroGPUSettings.from_env()
        self.progress_interval = progress_interval
        self.preview_interval = preview_interval
        self.visitors = Visitors()
        decorator, self.decorator_name = load_decorator(self.zerogpu.decorator)
        _point_children_at_their_gpu()
        self._call = decorate(decorator)
        self._runs: dict[str, _Run] = {}
        self._cpu: Executor | None = None
        self._cpu_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.calls = 0
        self.aborted_calls = 0

    # -- life cycle -------------------------------------------------------------------

    async def start(self, slots: Mapping[str, int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        await asyncio.to_thread(_report_startup)
        log.info(
            "ZeroGPU backend: %s; %g s per call; unattended work on the %s",
            self.decorator_name,
            self.zerogpu.duration,
            "CPU" if self.zerogpu.unattended == "cpu" else "GPU (charged to the Space)",
        )

    async def stop(self) -> None:
        """Stop every call (each gets ``STOP_GRACE`` seconds); attempts end ``released``."""
        self._stopping = True
        for run in list(self._runs.values()):
            if run.on_cpu:
                run.ending = run.ending or "released"  # if its CPU worker is still starting
            else:
                self._end(run, "released", STOP_GRACE)
        if self._cpu is not None:
            await self._cpu.stop()
            self._cpu = None

    async def _cpu_executor(self) -> Executor | None:
        """The local worker process(es) that run unattended work, started on first use;
        None once the executor is stopping."""
        async with self._cpu_lock:
            if self._cpu is None and not self._stopping:
                from scheduler.local_executor import LocalExecutor

                cpu = LocalExecutor(
                    self.task_modules,
                    self.settings,
                    progress_interval=self.progress_interval,
                    preview_interval=self.preview_interval,
                )
                await cpu.start({"cpu": self.zerogpu.cpu_slots})
                if self._stopping:  # stop() came while the worker was starting
                    await cpu.stop()
                    return None
                self._cpu = cpu
            return self._cpu

    # -- running attempts -------------------------------------------------------------

    async def run(self, attempt: Attempt) -> AsyncIterator[ExecutorEvent]:
        run = _Run(attempt)
        self._runs[attempt.job_id] = run
        finished = False
        timer: asyncio.TimerHandle | None = None
        try:
            if self._stopping:
                finished = True
                yield self._event(run, ex.RELEASED)
                return
            visitor = self.visitors.get(attempt.job_id)
            if visitor is None and self.zerogpu.unattended == "cpu":
                run.on_cpu = True
                async for event in self._run_on_cpu(run):
                    finished = event.terminal
                    yield event
                return
            # Without a token in the visitor's request, ZeroGPU charges the Space.
            run.charged_to = "visitor" if visitor is not None and visitor.token else "space"
            if attempt.time_limit:
                assert self._loop is not None
                timer = self._loop.call_later(attempt.time_limit, self._end, run, "time_limit", 2.0)
            async for event in self._run_on_gpu(run, visitor):
                finished = event.terminal
                yield event
        finally:
            if timer is not None:
                timer.cancel()
            self._runs.pop(attempt.job_id, None)
            if not finished:  # the consumer went away: nobody takes the result
                run.stop.set()

    async def _run_on_cpu(self, run: _Run) -> AsyncIterator[ExecutorEvent]:
        cpu = await self._cpu_executor()
        if cpu is None or run.ending is not None:  # stopped or canceled meanwhile
            run.ending = run.ending or "released"
            yield self._ending_event(run)
            return
        attempt = dataclasses.replace(run.attempt, device="cpu")
        async for event in cpu.run(attempt):
            if event.type == ex.SUCCEEDED:
                result = dict(event.result)
                result["warnings"] = [*(result.get("warnings") or []), CPU_WARNING]
                result.update(device="cpu", gpu_calls=0, charged_to=None)
                event = dataclasses.replace(event, result=result)
            yield event

    async def _run_on_gpu(self, run: _Run, visitor: Visitor | None) -> AsyncIterator[ExecutorEvent]:
        attempt = run.attempt
        try:
            plan = await asyncio.to_thread(_plan, attempt)
        except Exception:  # the call reports bad inputs in the usual way
            plan = None
        try:
            if plan is None:
                async for event in self._whole(run, visitor):
                    yield event
            else:
                async for event in self._segments(run, visitor, plan):
                    yield event
        except _CallFailed as failure:
            if failure.error.code == EXPIRED:
                self.visitors.forget(attempt.job_id)
            if run.ending is not None:
                yield self._ending_event(run)
            else:
                yield self._event(run, ex.FAILED, error=failure.error)

    async def _whole(self, run: _Run, visitor: Visitor | None) -> AsyncIterator[ExecutorEvent]:
        call = self._call_dict(run.attempt, "whole")
        end: dict[str, Any] | None = None
        async for item in self._make_call(run, call, visitor):
            if item["type"] == "progress":
                yield self._progress(run, _report(item), item.get("preview"))
            elif item["type"] in ("done", "error", "canceled"):
                end = item
        if run.ending is not None:
            yield self._ending_event(run)
        elif end is None:
            raise _CallFailed(JobError(INTERNAL, "the GPU call ended without a result", False))
        elif end["type"] == "done":
            yield self._event(
                run,
                ex.SUCCEEDED,
                result=self._result(run, end["result"]),
                output_bytes=end.get("output_bytes"),
            )
        else:
            yield self._end_item_event(run, end)

    async def _segments(
        self, run: _Run, visitor: Visitor | None, plan: Any
    ) -> AsyncIterator[ExecutorEvent]:
        """A video: calls encode segments until none is left; then the join, here."""
        attempt = run.attempt
        total = max(1, int(plan.total_frames)) / SEGMENTS_SHARE
        results: dict[int, dict[str, Any]] = {}
        finished = 0  # frames of finished segments
        per_frame: float | None = None
        started = time.monotonic()
        while len(results) < len(plan.segments):
            pending = [s for s in plan.segments if int(s["index"]) not in results]
            await asyncio.to_thread(_remove_partial_segments, plan.workdir)
            call = self._call_dict(
                attempt,
                "segments",
                segments=pending,
                workdir=str(plan.workdir),
                seconds_per_frame=per_frame,
            )
            end: dict[str, Any] | None = None
            before = len(results)
            try:
                async for item in self._make_call(run, call, visitor):
                    kind = item["type"]
                    if kind == "progress":
                        stage = _report(item).stage
                        done, fraction = finished, None
                        if stage in FRAME_STAGES and item.get("total"):
                            done = finished + int(item.get("done") or 0)
                            fraction = done / total
                        report = JobProgress(fraction, stage)
                        yield self._progress(run, report, item.get("preview"), (started, done))
                    elif kind == "segment":
                        result = item["result"]
                        results[int(result["index"])] = result
                        finished += int(item["frames"])
                        per_frame = float(item["seconds"]) / max(1, int(item["frames"]))
                        report = JobProgress(finished / total, "swap")
                        yield self._progress(run, report, rate=(started, finished))
                    elif kind in ("done", "paused", "error", "canceled"):
                        end = item
            except _CallFailed as failure:
                if failure.error.code == ABORTED and failure.progressed and run.ending is None:
                    log.warning(
                        "job %s: a ZeroGPU call was cut short after %d of %d segments; "
                        "the next call goes on from there",
                        attempt.job_id,
                        len(results),
                        len(plan.segments),
                    )
                    continue
                raise
            if run.ending is not None:
                yield self._ending_event(run)
                return
            if end is None:
                raise _CallFailed(JobError(INTERNAL, "the GPU call ended without a result", False))
            if end["type"] in ("error", "canceled"):
                yield self._end_item_event(run, end)
                return
            if len(results) == before:  # never loop on calls that do nothing
                raise _CallFailed(JobError(INTERNAL, "a GPU call encoded no segment", False))
        async for event in self._join(run, plan, results):
            yield event

    async def _join(
        self, run: _Run, plan: Any, results: dict[int, dict[str, Any]]
    ) -> AsyncIterator[ExecutorEvent]:
        """Join the segments into the run's output in a thread here (no GPU needed)."""
        from engine.progress import CancelToken
        from scheduler.video_split import join

        attempt = run.attempt
        assert self._loop is not None
        loop = self._loop
        token = CancelToken()
        items: asyncio.Queue = asyncio.Queue()
        run.items = items
        data_dir = self.settings.get("data_dir") or Path(attempt.job_dir).parents[1]

        def progress(_report: Any) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(items.put_nowait, {"type": "progress"})

        def work() -> dict[str, Any]:
            try:
                return join(
                    plan,
                    [results[index] for index in sorted(results)],
                    Path(attempt.output),
                    progress,
                    token,
                    (Path(data_dir), attempt.job_id),
                )
            finally:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(items.put_nowait, {"type": "closed"})

        task = asyncio.ensure_future(asyncio.to_thread(work))
        yield self._progress(run, JobProgress(SEGMENTS_SHARE, "join"))
        while not task.done():
            item = await self._next(run, items)
            if run.ending is not None:
                token.cancel()
            if item is None:  # stopping, and the join did not stop within the grace
                yield self._ending_event(run)
                return
            if item["type"] == "closed":
                break
        try:
            result = await task
        except Exception as exc:
            if run.ending is not None or token.canceled:
                yield self._ending_event(run)
            else:
                yield self._event(run, ex.FAILED, error=error_from_exception(exc))
            return
        if run.ending is not None:
            yield self._ending_event(run)
            return
        yield self._event(run, ex.SUCCEEDED, result=self._result(run, result))

    # -- one call ---------------------------------------------------------------------

    def _call_dict(self, attempt: Attempt, mode: str, **extra: Any) -> dict[str, Any]:
        call = {
            "mode": mode,
            "attempt": dict(vars(attempt)),
            "settings": dict(self.settings),
            "task_modules": list(self.task_modules),
            "device": self.zerogpu.device,
            "duration": self.zerogpu.duration,
            "margin": min(self.zerogpu.margin, self.zerogpu.duration / 4),
            "segments_per_call": self.zerogpu.segments_per_call,
            "server_pid": os.getpid(),
            "progress_interval": self.progress_interval,
            "preview_interval": self.preview_interval,
        }
        call.update(extra)
        return call

    async def _make_call(
        self, run: _Run, call: dict[str, Any], visitor: Visitor | None
    ) -> AsyncIterator[dict[str, Any]]:
        """One decorated call, iterated in a thread of its own (whose context carries the
        visitor's Gradio request); yields its items. Raises ``_CallFailed`` when the call
        itself fails (refused, cut short, arguments not picklable)."""
        if run.ending is not None:
            return
        if visitor is not None and not visitor.fresh(time.time()):
            error = JobError(EXPIRED, "the submitting visitor's ZeroGPU token expired", False)
            raise _CallFailed(error)
        assert self._loop is not None
        loop = self._loop
        items: asyncio.Queue = asyncio.Queue()
        run.items = items
        run.calls += 1
        self.calls += 1
        request = visitor.request if visitor is not None else None

        def post(item: dict[str, Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens
                loop.call_soon_threadsafe(items.put_nowait, item)

        def iterate() -> None:
            try:
                if request is not None:
                    from gradio.context import LocalContext

                    LocalContext.request.set(request)
                generator = self._call(call)
                try:
                    for item in generator:
                        post(item)
                        if run.stop.is_set():
                            break
                finally:
                    generator.close()
            except BaseException as exc:
                post({"type": "raised", "error": exc})
            finally:
                post({"type": "closed"})

        thread = threading.Thread(
            target=iterate, name=f"zerogpu-call-{run.attempt.job_id}", daemon=True
        )
        thread.start()
        progressed = False
        while True:
            item = await self._next(run, items)
            if item is None:  # stopping, and the call did not stop within its grace
                log.warning("job %s: a ZeroGPU call did not stop in time", run.attempt.job_id)
                return
            kind = item["type"]
            if kind == "closed":
                return
            if kind in ("wake", "heartbeat"):
                continue
            if kind == "started":
                run.pids.append(int(item["pid"]))
                run.device = str(item["device"])
                log.info(
                    "job %s: GPU call %d in process %s on %s (CUDA_VISIBLE_DEVICES=%s)",
                    run.attempt.job_id,
                    run.calls,
                    item["pid"],
                    item["device"],
                    item.get("visible_devices"),
                    extra={"job_id": run.attempt.job_id},
                )
                continue
            if kind == "raised":
                self.aborted_calls += 1
                raise _CallFailed(self._call_error(item["error"], visitor), progressed)
            if kind == "segment":
                progressed = True
            yield item

    async def _next(self, run: _Run, items: asyncio.Queue) -> dict[str, Any] | None:
        while True:
            if run.grace_until is None:
                return await items.get()
            assert self._loop is not None
            left = run.grace_until - self._loop.time()
            if left <= 0:
                return None
            try:
                return await asyncio.wait_for(items.get(), left)
            except TimeoutError:
                return None

    def _call_error(self, exc: BaseException, visitor: Visitor | None) -> JobError:
        """A failed call (``spaces`` raises ``gr.Error`` with a message for people)."""
        text = str(getattr(exc, "message", "") or exc).strip()
        duration = self.zerogpu.duration
        if "GPU task aborted" in text:
            return JobError(
                ABORTED,
                f"a ZeroGPU call was stopped before it finished (it ran past its {duration:g} s, "
                "or its process died); a video segment that does not fit in one call needs "
                f"a shorter segment_seconds or a longer {ENV_DURATION}",
                permanent=False,
            )
        if "Expired ZeroGPU proxy token" in text:
            return JobError(
                EXPIRED,
                "the ZeroGPU token of the visitor who submitted the job expired; "
                "the job goes on without it",
                permanent=False,
            )
        try:
            import gradio

            refused = isinstance(exc, gradio.Error)
        except ImportError:
            refused = False
        if refused:
            who = "the visitor who submitted it" if visitor is not None else "this Space"
            return JobError(REFUSED, f"ZeroGPU gave no GPU to {who}: {text}", permanent=True)
        detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return JobError(INTERNAL, f"the ZeroGPU call failed ({detail})", permanent=False)

    # -- requests ---------------------------------------------------------------------

    async def cancel(self, job_id: str, grace: float = 2.0) -> None:
        run = self._runs.get(job_id)
        if run is None:
            return
        if run.on_cpu:
            run.ending = run.ending or "canceled"
            if self._cpu is not None:
                await self._cpu.cancel(job_id, grace)
            return
        self._end(run, "canceled", max(grace, 0.1))

    def _end(self, run: _Run, reason: str, grace: float) -> None:
        """Stop a run's call: it closes at its next item; after ``grace`` it is abandoned."""
        if run.ending is None:
            run.ending = reason
        run.stop.set()
        assert self._loop is not None
        until = self._loop.time() + grace
        run.grace_until = until if run.grace_until is None else min(run.grace_until, until)
        if run.items is not None:
            run.items.put_nowait({"type": "wake"})

    # -- events -----------------------------------------------------------------------

    def _event(self, run: _Run, kind: str, **values: Any) -> ExecutorEvent:
        return ExecutorEvent(run.attempt.job_id, run.attempt.run, kind, **values)

    def _ending_event(self, run: _Run) -> ExecutorEvent:
        if run.ending == "released":
            return self._event(run, ex.RELEASED)
        if run.ending == "time_limit":
            limit = run.attempt.time_limit or 0
            error = JobError(
                TIME_LIMIT,
                f"the job ran longer than its time limit of {limit:g} s and was stopped",
                permanent=False,
            )
            return self._event(run, ex.FAILED, error=error)
        return self._event(run, ex.CANCELED)

    def _end_item_event(self, run: _Run, end: dict[str, Any]) -> ExecutorEvent:
        if end["type"] == "canceled":
            return self._ending_event(run) if run.ending else self._event(run, ex.CANCELED)
        error = JobError(str(end["code"]), str(end["message"]), bool(end["permanent"]))
        return self._event(run, ex.FAILED, error=error)

    def _progress(
        self,
        run: _Run,
        report: JobProgress,
        preview: bytes | None = None,
        rate: tuple[float, int] | None = None,
    ) -> ExecutorEvent:
        """A progress event; ``rate`` (start time, frames done) gives a video's fps and
        ETA over all of its calls, in place of the report's."""
        if rate is not None:
            elapsed, done = time.monotonic() - rate[0], rate[1]
            fraction = report.fraction
            fps = done / elapsed if elapsed > 0 and done else None
            eta = (1.0 - fraction) * elapsed / fraction if fraction and elapsed > 0 else None
            report = dataclasses.replace(report, eta_seconds=eta, fps=fps)
        return self._event(run, ex.PROGRESS, progress=report, preview=preview)

    def _result(self, run: _Run, result: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **result,
            "device": run.device or self.zerogpu.device,
            "gpu_calls": run.calls,
            "charged_to": run.charged_to,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "zerogpu",
            "decorator": self.decorator_name,
            "duration": self.zerogpu.duration,
            "unattended": self.zerogpu.unattended,
            "calls": self.calls,
            "aborted_calls": self.aborted_calls,
            "running": [
                {
                    "job": run.attempt.job_id,
                    "calls": run.calls,
                    "where": "cpu" if run.on_cpu else "gpu",
                    "charged_to": run.charged_to,
                }
                for run in self._runs.values()
            ],
            "cpu": self._cpu.describe() if self._cpu is not None else None,
        }


def _plan(attempt: Attempt) -> Any | None:
    """The segment plan of a swap job's video (in ``work/zerogpu``), or None: run whole."""
    if attempt.kind != "swap":
        return None
    from scheduler.video_split import plan

    segment_plan = plan(Path(attempt.job_dir), attempt.spec)
    if segment_plan is None:
        return None
    return dataclasses.replace(segment_plan, workdir=Path(attempt.job_dir) / "work" / "zerogpu")


def _remove_partial_segments(workdir: Path) -> None:
    """Files of a segment whose call was cut short (the encoder writes under a dot name)."""
    if workdir.is_dir():
        for partial in workdir.glob(".segment-*"):
            partial.unlink(missing_ok=True)


def _report(item: Mapping[str, Any]) -> JobProgress:
    """The progress record a call's ``progress`` item carries."""
    return JobProgress.from_dict(item.get("progress") or {})
