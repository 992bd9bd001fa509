"""``LocalExecutor``: attempts run in long-lived worker processes on this machine.

One process per device slot, started with ``spawn`` (never ``fork``: a forked
copy of a process that holds threads, SQLite handles and CUDA contexts is not
safe). Messages come back over a pipe, read by the event loop without extra
threads. A worker that dies (segfault, out of memory, kill) ends its attempt
with a transient ``worker_died`` failure and is replaced. Hard cancel and time
limits kill the worker process; a soft cancel (the task's cancel token) is
tried first and keeps the worker warm when the task stops in time.

Processes must be started from a thread that lives as long as the executor
(the event loop's): Linux sends the parent-death signal when the *thread* that
spawned a worker ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import scheduler.executor as ex
from engine.progress import JobProgress
from scheduler.cpu import available_cores, device_cores
from scheduler.executor import Attempt, Executor, ExecutorEvent
from scheduler.jobs import JobError
from scheduler.progress_gate import PROGRESS_INTERVAL
from scheduler.worker import WorkerSettings, worker_main

log = logging.getLogger(__name__)

STARTING, IDLE, BUSY, DEAD = "starting", "idle", "busy", "dead"


@dataclass
class _Run:
    attempt: Attempt
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    ending: str | None = None  # why we are ending it: "canceled", "time_limit", "released"
    finished: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    def finish(self, event: ExecutorEvent) -> None:
        if self.finished:
            return
        self.finished = True
        for timer in self.timers:
            timer.cancel()
        self.events.put_nowait(event)


@dataclass
class _Worker:
    device: str
    slot: int
    number: int
    process: Any
    conn: Connection
    state: str = STARTING
    pid: int | None = None
    run: _Run | None = None
    jobs_done: int = 0
    started_at: float = field(default_factory=time.monotonic)


class LocalExecutor(Executor):
    """Worker processes on this machine, one per device slot."""

    def __init__(
        self,
        task_modules: tuple[str, ...] | list[str] = (),
        settings: Mapping[str, Any] | None = None,
        *,
        start_timeout: float = 120.0,
        progress_interval: float = PROGRESS_INTERVAL,
        preview_interval: float = 1.0,
        restart_backoff: float = 1.0,
        sync_outputs: bool = True,
    ) -> None:
        self.task_modules = tuple(task_modules)
        self.settings = dict(settings or {})
        self.start_timeout = start_timeout
        self.progress_interval = progress_interval
        self.preview_interval = preview_interval
        self.restart_backoff = restart_backoff
        self.sync_outputs = sync_outputs
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[str, list[_Worker]] = {}
        self._runs: dict[str, _Run] = {}
        self._changed = asyncio.Event()  # replaced by a fresh one at each change
        self._numbers = itertools.count(1)
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.deaths = 0
        self._devices: list[str] = []

    # -- life cycle -------------------------------------------------------------------

    async def start(self, slots: Mapping[str, int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._devices = list(slots)  # numbered CPU devices share the cores out among them
        for device, count in slots.items():
            self._workers[device] = []
            for slot in range(count):
                self._workers[device].append(self._spawn(device, slot))

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every worker has started (handy before measuring)."""

        await self._wait_until(
            lambda: all(w.state in (IDLE, BUSY) for w in self._all_workers()),
            timeout or self.start_timeout,
        )

    async def _wait_until(self, condition, timeout: float) -> None:
        """Wait until ``condition()`` holds, re-checking at every change; ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    def _all_workers(self) -> list[_Worker]:
        return [w for workers in self._workers.values() for w in workers]

    def _spawn(self, device: str, slot: int) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        settings = WorkerSettings(
            device=device,
            slot=slot,
            parent_pid=os.getpid(),
            task_modules=self.task_modules,
            settings=self.settings,
            progress_interval=self.progress_interval,
            preview_interval=self.preview_interval,
            sync_outputs=self.sync_outputs,
            cores=tuple(sorted(device_cores(device, self._devices, available_cores()))),
        )
        number = next(self._numbers)
        process = self._context.Process(
            target=worker_main,
            args=(child, settings),
            name=f"fusion-worker-{device}-{slot}-{number}",
            daemon=True,
        )
        process.start()
        child.close()
        worker = _Worker(device, slot, number, process, parent)
        loop = self._loop
        assert loop is not None
        loop.add_reader(parent.fileno(), self._on_readable, worker)
        loop.add_reader(process.sentinel, self._on_exit, worker)
        return worker

    async def stop(self) -> None:
        """End every worker. Attempts still running end with ``released``."""
        self._stopping = True
        for run in self._runs.values():
            run.ending = run.ending or "released"
        self._notify()
        for worker in self._all_workers():
            if worker.run is not None and not worker.run.finished:
                self._kill(worker)  # its job goes back to the queue; no point finishing it
            elif worker.state != DEAD:
                with contextlib.suppress(OSError):
                    worker.conn.send(("stop",))
        deadline = time.monotonic() + 2.0
        for worker in self._all_workers():
            await self._wait_exit(worker, deadline - time.monotonic())
        for worker in self._all_workers():
            if worker.state != DEAD:
                self._kill(worker)
                await self._wait_exit(worker, 5.0)
        for worker in self._all_workers():
            self._forget(worker)
        self._workers.clear()

    async def _wait_exit(self, worker: _Worker, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await self._wait_until(lambda: worker.state == DEAD, max(0.01, timeout))

    # -- running attempts -------------------------------------------------------------

    async def run(self, attempt: Attempt) -> AsyncIterator[ExecutorEvent]:
        run = _Run(attempt)
        self._runs[attempt.job_id] = run
        worker: _Worker | None = None
        try:
            try:
                worker = await self._take_worker(attempt.device, run)
            except TimeoutError:
                yield ExecutorEvent(
                    attempt.job_id,
                    attempt.run,
                    ex.FAILED,
                    error=JobError(
                        "worker_unavailable",
                        f"no worker for device {attempt.device} could start "
                        f"within {self.start_timeout:.0f} s",
                        permanent=False,
                    ),
                )
                return
            if worker is None:  # canceled or released before a worker was free
                run.finished = True
                yield self._ending_event(run)
                return
            worker.conn.send(("run", dict(vars(attempt))))
            if attempt.time_limit:
                self._later(run, attempt.time_limit, self._time_up, worker, run)
            while True:
                event = await run.events.get()
                yield event
                if event.terminal:
                    return
        finally:
            self._runs.pop(attempt.job_id, None)
            if worker is not None and not run.finished and worker.run is run:
                # The consumer went away mid-run: nobody will take the result.
                run.ending = "released"
                self._kill(worker)

    async def _take_worker(self, device: str, run: _Run) -> _Worker | None:
        """An idle worker of ``device``, now marked busy; ``None`` if the run ended meanwhile."""
        if device not in self._workers:
            raise ValueError(f"this executor has no slots for device {device!r}")

        def idle() -> _Worker | None:
            for worker in self._workers[device]:
                if worker.state == IDLE and worker.run is None:
                    return worker
            return None

        if idle() is None and run.ending is None:  # usually a worker is free: no waiting
            await self._wait_until(
                lambda: idle() is not None or run.ending is not None, self.start_timeout
            )
        if run.ending is not None:
            return None
        worker = idle()
        assert worker is not None
        worker.state = BUSY
        worker.run = run
        return worker

    async def cancel(self, job_id: str, grace: float = 2.0) -> None:
        run = self._runs.get(job_id)
        if run is None or run.finished:
            return
        if run.ending is None:
            run.ending = "canceled"
        worker = self._worker_of(run)
        if worker is None:  # still waiting for a worker
            self._notify()
            return
        with contextlib.suppress(OSError):
            worker.conn.send(("cancel", job_id, run.attempt.run))
        if grace <= 0:
            self._kill(worker)
        else:
            self._later(run, grace, self._kill_if_running, worker, run)

    def _worker_of(self, run: _Run) -> _Worker | None:
        for worker in self._all_workers():
            if worker.run is run:
                return worker
        return None

    def _later(self, run: _Run, delay: float, callback, *args) -> None:
        assert self._loop is not None
        run.timers.append(self._loop.call_later(delay, callback, *args))

    def _time_up(self, worker: _Worker, run: _Run) -> None:
        if worker.run is run and not run.finished:
            run.ending = run.ending or "time_limit"
            self._kill(worker)

    def _kill_if_running(self, worker: _Worker, run: _Run) -> None:
        if worker.run is run and not run.finished:
            self._kill(worker)

    def _kill(self, worker: _Worker) -> None:
        if worker.state == DEAD:
            return
        with contextlib.suppress(ProcessLookupError, OSError, AttributeError):
            os.kill(worker.process.pid, signal.SIGKILL)

    # -- messages and deaths ----------------------------------------------------------

    def _on_readable(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                self._handle(worker, worker.conn.recv())
        except (EOFError, OSError):
            self._remove_reader(worker)

    def _handle(self, worker: _Worker, message: tuple) -> None:
        kind = message[0]
        if kind == "ready":
            worker.pid = message[1]
            worker.state = IDLE
            self._notify()
            return
        run = worker.run
        if run is None or message[1] != run.attempt.job_id or message[2] != run.attempt.run:
            return  # a late message of a run that already ended
        job_id, run_number = message[1], message[2]
        if kind == "progress":
            _, _, _, progress, preview = message
            run.events.put_nowait(
                ExecutorEvent(
                    job_id, run_number, ex.PROGRESS, JobProgress.from_dict(progress), preview
                )
            )
            return
        if kind == "done":
            event = ExecutorEvent(
                job_id, run_number, ex.SUCCEEDED, result=message[3], output_bytes=message[4]
            )
        elif kind == "canceled":
            event = self._ending_event(run)
        else:  # "error"
            _, _, _, code, text, permanent = message
            event = ExecutorEvent(
                job_id, run_number, ex.FAILED, error=JobError(code, text, permanent)
            )
        worker.jobs_done += 1
        worker.run = None
        worker.state = IDLE
        run.finish(event)
        self._notify()

    def _ending_event(self, run: _Run, exitcode: int | None = None) -> ExecutorEvent:
        return ex.ending_event(run.attempt, run.ending, describe_exit(exitcode))

    def _on_exit(self, worker: _Worker) -> None:
        """The worker's process ended (its sentinel became readable)."""
        self._on_readable(worker)  # messages sent just before the end still count
        self._forget(worker)
        assert self._loop is not None
        self._loop.create_task(self._bury(worker))

    async def _bury(self, worker: _Worker) -> None:
        for _ in range(200):  # the exit status shows up a moment after the sentinel
            worker.process.join(0)
            if worker.process.exitcode is not None:
                break
            await asyncio.sleep(0.005)
        exitcode = worker.process.exitcode
        was_ready = worker.pid is not None
        worker.state = DEAD
        run, worker.run = worker.run, None
        if run is not None and not run.finished:
            if run.ending is None:
                self.deaths += 1
                log.warning(
                    "worker %s (pid %s) died during job %s: %s",
                    worker.process.name,
                    worker.pid,
                    run.attempt.job_id,
                    describe_exit(exitcode),
                )
            run.finish(self._ending_event(run, exitcode))
        elif not self._stopping:
            log.warning("worker %s exited: %s", worker.process.name, describe_exit(exitcode))
        if not self._stopping and worker.device in self._workers:
            delay = 0.0 if was_ready else self.restart_backoff
            assert self._loop is not None
            self._loop.call_later(delay, self._replace, worker)
        self._notify()

    def _replace(self, worker: _Worker) -> None:
        workers = self._workers.get(worker.device)
        if self._stopping or workers is None or worker not in workers:
            return
        workers[workers.index(worker)] = self._spawn(worker.device, worker.slot)

    def _remove_reader(self, worker: _Worker) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(worker.conn.fileno())

    def _forget(self, worker: _Worker) -> None:
        self._remove_reader(worker)
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(worker.process.sentinel)
        with contextlib.suppress(OSError):
            worker.conn.close()

    def _notify(self) -> None:
        """Wake everything waiting for a change (a worker ready, idle, dead; a run ended)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def describe(self) -> dict[str, Any]:
        return {
            "workers": [
                {
                    "device": w.device,
                    "slot": w.slot,
                    "pid": w.pid,
                    "state": w.state,
                    "job": w.run.attempt.job_id if w.run else None,
                    "jobs_done": w.jobs_done,
                }
                for w in self._all_workers()
            ],
            "deaths": self.deaths,
        }

    def worker_pid(self, job_id: str) -> int | None:
        """The process id of the worker running ``job_id`` (for operators and tests)."""
        run = self._runs.get(job_id)
        worker = self._worker_of(run) if run else None
        return worker.pid if worker else None


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory or killed)" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit status {exitcode}"
