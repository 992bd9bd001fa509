"""The main loop of a worker process (started with ``spawn``, one per device slot).

The process imports the task modules once, then runs the jobs it is sent one
after another, keeping ``state`` (warm model sessions) between them. A reader
thread listens to the parent all the time, so a cancel request reaches a task
that is busy; when the parent goes away (its end of the pipe closes, or the
kernel's parent-death signal fires) the worker exits at once, so a killed
server never leaves workers that finish a job behind its back.

Messages to the parent are tuples: ``("ready", pid)``, ``("progress", job_id,
run, progress, preview_jpeg)`` (``progress`` is ``JobProgress.to_dict()``),
``("done", job_id, run, result, output_bytes)``, ``("error", job_id, run, code,
message, permanent)``, ``("canceled", job_id, run)``.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from engine.errors import Canceled
from engine.progress import CancelToken, JobProgress, Progress
from scheduler.cpu import limit_threads, lower_priority, pin_to_cores
from scheduler.executor import Attempt
from scheduler.jobs import JobSpec
from scheduler.progress_gate import PROGRESS_INTERVAL, ProgressGate
from scheduler.retry import error_from_exception
from scheduler.tasks import TaskContext, load_kinds

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs to know; sent once, at spawn."""

    device: str
    slot: int
    parent_pid: int
    task_modules: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    progress_interval: float = PROGRESS_INTERVAL
    preview_interval: float = 1.0
    preview_quality: int = 70
    sync_outputs: bool = True  # fsync the output here, in parallel, before reporting success
    cores: tuple[int, ...] = ()  # the cores of a numbered CPU device (empty: any core)


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


class _Channel:
    """The worker's end of the pipe; sends from several threads are serialised."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: tuple) -> None:
        with self.lock:
            try:
                self.conn.send(message)
            except (BrokenPipeError, EOFError, OSError):
                os._exit(0)  # the parent is gone: nobody wants the result


class _Reporter:
    """The progress callback a task gets: throttled, with an occasional JPEG preview."""

    def __init__(self, channel: _Channel, attempt: Attempt, settings: WorkerSettings) -> None:
        self.channel = channel
        self.attempt = attempt
        self.gate = ProgressGate(
            settings.progress_interval, settings.preview_interval, settings.preview_quality
        )

    def __call__(self, report: Progress) -> None:
        send, preview = self.gate.admit(report)
        if not send:
            return
        self.channel.send(
            (
                "progress",
                self.attempt.job_id,
                self.attempt.run,
                JobProgress.of(report).to_dict(),
                preview,
            )
        )


class _Worker:
    def __init__(self, conn: Connection, settings: WorkerSettings) -> None:
        self.channel = _Channel(conn)
        self.conn = conn
        self.settings = settings
        self.inbox: queue.Queue[Attempt | None] = queue.Queue()
        self.state: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.current: tuple[str, int] | None = None
        self.token: CancelToken | None = None

    def listen(self) -> None:
        """Reader thread: jobs go to the inbox, cancels go straight to the token."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                os._exit(0)
            kind = message[0]
            if kind == "run":
                self.inbox.put(Attempt(**message[1]))
            elif kind == "cancel":
                with self.lock:
                    if self.current == (message[1], message[2]) and self.token is not None:
                        self.token.cancel()
            elif kind == "stop":
                self.inbox.put(None)
                return

    def serve(self) -> None:
        threading.Thread(target=self.listen, name="worker-listen", daemon=True).start()
        self.channel.send(("ready", os.getpid()))
        while True:
            attempt = self.inbox.get()
            if attempt is None:
                return
            self.run(attempt)

    def run(self, attempt: Attempt) -> None:
        token = CancelToken()
        with self.lock:
            self.current = (attempt.job_id, attempt.run)
            self.token = token
        job_dir = Path(attempt.job_dir)
        ctx = TaskContext(
            job_id=attempt.job_id,
            run=attempt.run,
            attempt=attempt.attempt,
            device=attempt.device,
            spec=JobSpec.from_dict(attempt.spec),
            job_dir=job_dir,
            output=Path(attempt.output),
            workdir=job_dir / "work",
            settings=dict(self.settings.settings),
            state=self.state,
            progress=_Reporter(self.channel, attempt, self.settings),
            cancel=token,
            part=attempt.part,
        )
        try:
            result = load_kinds(self.settings.task_modules).get(attempt.kind).fn(ctx) or {}
        except Canceled:
            message: tuple = ("canceled", attempt.job_id, attempt.run)
        except Exception as exc:
            if token.canceled:
                message = ("canceled", attempt.job_id, attempt.run)
            else:
                error = error_from_exception(exc)
                message = (
                    "error",
                    attempt.job_id,
                    attempt.run,
                    error.code,
                    error.message,
                    error.permanent,
                )
        else:
            size = _sync_file(ctx.output, self.settings.sync_outputs)
            message = ("done", attempt.job_id, attempt.run, dict(result), size)
        with self.lock:
            self.current = None
            self.token = None
        self.channel.send(message)


def _sync_file(path: Path, fsync: bool) -> int | None:
    """The output's size, after an fsync when asked; ``None`` when there is no output."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None  # the dispatcher reports it
    try:
        if fsync:
            os.fsync(fd)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def worker_main(conn: Connection, settings: WorkerSettings) -> None:
    """Entry point of a worker process."""
    die_with_parent(settings.parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    lower_priority(settings.settings.get("priority", "normal"))
    pin_to_cores(settings.cores)
    limit_threads(int(settings.settings.get("threads", 0) or 0))
    load_kinds(tuple(settings.task_modules))  # import every kind before the first job
    _Worker(conn, settings).serve()
