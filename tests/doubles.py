"""Test doubles for the scheduler: a fake clock, an in-process executor, a fast store.

``InlineExecutor`` implements ``scheduler.executor.Executor`` by running each
attempt's task function in a thread of the test process instead of in a
spawned worker process, so that tests of the queue logic (ordering, retries,
leases, cancel, limits) run in milliseconds. What it does not model is the
process machinery itself (a worker that dies, a killed process, CPU priority,
warm processes): the tests of those keep the real ``LocalExecutor``.

``FakeClock`` stands in for ``time.time`` where the product accepts a clock
(``Store(clock=...)``, which the dispatcher and retention read too): advancing
it makes backoffs run out and leases expire without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import Canceled
from engine.progress import JobProgress
from scheduler import executor as ex
from scheduler.executor import Attempt, Executor, ExecutorEvent
from scheduler.jobs import JobSpec
from scheduler.progress_gate import PROGRESS_INTERVAL, ProgressGate
from scheduler.retry import error_from_exception
from scheduler.service import Scheduler, SchedulerConfig
from scheduler.store import Store
from scheduler.tasks import TaskContext


def task_function(kind: str, modules: tuple[str, ...]) -> Callable[[TaskContext], Any]:
    """The function of task kind ``kind``, declared by the built-in modules or ``modules``."""
    from scheduler import tasks

    if hasattr(tasks, "load_kinds"):  # kinds declared in TASK_KINDS tuples
        return tasks.load_kinds(tuple(modules)).get(kind).fn
    tasks.load_task_modules(modules)  # kinds registered by @task on import
    return tasks.get_task(kind).fn


class FakeClock:
    """A clock that moves only when told: ``clock()`` is the time, ``advance(s)`` moves it.

    ``on_advance(callback)`` runs ``callback()`` after every move (a dispatcher's
    ``notify``, so that jobs whose backoff ran out are claimed at once).
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else float(start)
        self._listeners: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self.now += seconds
        for listener in list(self._listeners):
            listener()
        return self.now

    def on_advance(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)


def fast_store(path: Path | str, clock: Callable[[], float] = time.time) -> Store:
    """The real SQLite store, without the fsyncs (a test has no power cut to survive).

    ``:memory:`` does not fit: the store opens a writer and a reader connection,
    which must see the same database, so a temporary file it is."""
    return Store(path, synchronous="NORMAL", clock=clock)


class _Killed(BaseException):
    """Raised inside a task thread to end it by force (the thread's ``SIGKILL``)."""


def _raise_in_thread(thread: threading.Thread, exc: type[BaseException]) -> None:
    """Ask Python to raise ``exc`` in ``thread`` at its next bytecode (a sleeping task
    gets it when it wakes; only a thread stuck in native code would not)."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(exc)
        )


@dataclass
class _Run:
    attempt: Attempt
    token: Any
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    thread: threading.Thread | None = None
    ending: str | None = None  # why we end it: "canceled", "time_limit", "released", "died"
    finished: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    slot: dict[str, Any] | None = None

    def finish(self, event: ExecutorEvent) -> None:
        if self.finished:
            return
        self.finished = True
        for timer in self.timers:
            timer.cancel()
        self.events.put_nowait(event)


class InlineExecutor(Executor):
    """Runs attempts in threads of this process, one thread per attempt.

    It keeps the contract of ``LocalExecutor``: a task's result, its error
    (permanent or not), a cancel that the task honours or, after ``grace``
    seconds, ends it by force, time limits, and ``released`` for what still
    runs at ``stop``. Each device slot keeps a ``state`` dict between jobs, as
    a warm worker does. ``die(job_id)`` ends an attempt as a dead worker would.
    """

    def __init__(
        self,
        task_modules: tuple[str, ...] | list[str] = (),
        settings: Mapping[str, Any] | None = None,
        *,
        progress_interval: float = PROGRESS_INTERVAL,
        preview_interval: float = 1.0,
    ) -> None:
        self.task_modules = tuple(task_modules)
        self.settings = dict(settings or {})
        self.progress_interval = progress_interval
        self.preview_interval = preview_interval
        self._slots: dict[str, list[dict[str, Any]]] = {}
        self._free: dict[str, list[dict[str, Any]]] = {}
        self._runs: dict[str, _Run] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started: list[Attempt] = []  # every attempt it was given, in order
        self.deaths = 0

    # -- life cycle -------------------------------------------------------------------

    async def start(self, slots: Mapping[str, int]) -> None:
        self._loop = asyncio.get_running_loop()
        for device, count in slots.items():
            states = [{"device": device, "slot": n, "state": {}} for n in range(count)]
            self._slots[device] = states
            self._free[device] = list(states)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Nothing to wait for (kept so that tests can treat both executors alike)."""

    async def stop(self) -> None:
        for run in list(self._runs.values()):
            if not run.finished:
                run.ending = run.ending or "released"
                self._end(run)
        await self._join_all(5.0)

    async def _join_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for run in list(self._runs.values()):
            thread = run.thread
            while thread is not None and thread.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.005)

    # -- running attempts -------------------------------------------------------------

    async def run(self, attempt: Attempt) -> AsyncIterator[ExecutorEvent]:
        from engine.progress import CancelToken

        if attempt.device not in self._slots:
            raise ValueError(f"this executor has no slots for device {attempt.device!r}")
        loop = asyncio.get_running_loop()
        run = _Run(attempt, CancelToken())
        self._runs[attempt.job_id] = run
        self.started.append(attempt)
        free = self._free[attempt.device]
        assert free, f"the dispatcher asked for more than the slots of {attempt.device}"
        run.slot = free.pop(0)
        run.thread = threading.Thread(
            target=self._work,
            args=(run, loop),
            name=f"inline-{attempt.job_id}-{attempt.run}",
            daemon=True,
        )
        try:
            run.thread.start()
            if attempt.time_limit:
                run.timers.append(loop.call_later(attempt.time_limit, self._time_up, run))
            while True:
                event = await run.events.get()
                yield event
                if event.terminal:
                    return
        finally:
            if not run.finished:  # the consumer went away mid-run: nobody takes the result
                run.ending = run.ending or "released"
                self._end(run)
            self._runs.pop(attempt.job_id, None)
            if run.slot is not None:
                self._free[attempt.device].append(run.slot)
                run.slot = None

    def _work(self, run: _Run, loop: asyncio.AbstractEventLoop) -> None:
        """The thread: what ``scheduler.worker`` does in a worker process."""
        attempt = run.attempt
        job_dir = Path(attempt.job_dir)
        gate = ProgressGate(self.progress_interval, self.preview_interval)

        def progress(report) -> None:
            send, preview = gate.admit(report)
            if send:
                event = ExecutorEvent(
                    attempt.job_id,
                    attempt.run,
                    ex.PROGRESS,
                    JobProgress.of(report),
                    preview,
                )
                loop.call_soon_threadsafe(self._progress, run, event)

        assert run.slot is not None
        ctx = TaskContext(
            job_id=attempt.job_id,
            run=attempt.run,
            attempt=attempt.attempt,
            device=attempt.device,
            spec=JobSpec.from_dict(attempt.spec),
            job_dir=job_dir,
            output=Path(attempt.output),
            workdir=job_dir / "work",
            settings=dict(self.settings),
            state=run.slot["state"],
            progress=progress,
            cancel=run.token,
            part=attempt.part,
        )
        try:
            result = task_function(attempt.kind, self.task_modules)(ctx) or {}
        except _Killed:
            return  # whoever killed it reports the end
        except Canceled:
            event = ExecutorEvent(attempt.job_id, attempt.run, ex.CANCELED)
        except Exception as exc:
            if run.token.canceled:
                event = ExecutorEvent(attempt.job_id, attempt.run, ex.CANCELED)
            else:
                error = error_from_exception(exc)
                event = ExecutorEvent(attempt.job_id, attempt.run, ex.FAILED, error=error)
        else:
            event = ExecutorEvent(
                attempt.job_id,
                attempt.run,
                ex.SUCCEEDED,
                result=dict(result),
                output_bytes=_size(ctx.output),
            )
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
            loop.call_soon_threadsafe(self._done, run, event)

    def _progress(self, run: _Run, event: ExecutorEvent) -> None:
        if not run.finished and run.ending is None:
            run.events.put_nowait(event)

    def _done(self, run: _Run, event: ExecutorEvent) -> None:
        if run.ending is None:
            run.finish(event)
        elif event.type == ex.CANCELED or not run.finished:
            run.finish(self._ending_event(run))

    async def cancel(self, job_id: str, grace: float = 2.0) -> None:
        run = self._runs.get(job_id)
        if run is None or run.finished:
            return
        run.ending = run.ending or "canceled"
        run.token.cancel()
        if grace <= 0:
            self._end(run)
        else:
            assert self._loop is not None
            run.timers.append(self._loop.call_later(grace, self._end, run))

    def die(self, job_id: str) -> None:
        """End the attempt of ``job_id`` as if its worker process had been killed."""
        run = self._runs[job_id]
        run.ending = run.ending or "died"
        self.deaths += 1
        self._end(run)

    def _time_up(self, run: _Run) -> None:
        if not run.finished:
            run.ending = run.ending or "time_limit"
            self._end(run)

    def _end(self, run: _Run) -> None:
        """Stop the task's thread by force; the run ends once the thread has."""
        if run.finished or run.thread is None:
            return
        _raise_in_thread(run.thread, _Killed)
        assert self._loop is not None
        self._loop.create_task(self._bury(run))

    async def _bury(self, run: _Run) -> None:
        thread = run.thread
        while thread is not None and thread.is_alive():
            await asyncio.sleep(0.002)
        run.finish(self._ending_event(run))

    def _ending_event(self, run: _Run) -> ExecutorEvent:
        return ex.ending_event(
            run.attempt, run.ending, "killed by SIGKILL (out of memory or killed)"
        )

    def describe(self) -> dict[str, Any]:
        busy = {id(run.slot): run.attempt.job_id for run in self._runs.values() if run.slot}
        return {
            "workers": [
                {
                    "device": slot["device"],
                    "slot": slot["slot"],
                    "pid": os.getpid(),
                    "state": "busy" if id(slot) in busy else "idle",
                    "job": busy.get(id(slot)),
                }
                for states in self._slots.values()
                for slot in states
            ],
            "deaths": self.deaths,
        }

    def running(self) -> set[str]:
        """The ids of the attempts running now."""
        return {job_id for job_id, run in self._runs.items() if not run.finished}


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def inline_scheduler(
    config: SchedulerConfig, clock: FakeClock | None = None, **executor_options: Any
) -> Scheduler:
    """A ``Scheduler`` on the real store and files, with an ``InlineExecutor`` and,
    when given, ``clock`` as the store's clock (advancing it wakes the dispatcher)."""
    config = dataclasses.replace(config, synchronous="NORMAL", durable_files=False)
    executor = InlineExecutor(config.task_modules, config.worker_settings, **executor_options)
    scheduler = Scheduler(config, executor=executor)
    if clock is not None:
        scheduler.store.clock = clock
        clock.on_advance(lambda: scheduler.dispatcher.notify() if scheduler.dispatcher else None)
    return scheduler
