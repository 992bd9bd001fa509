"""Task kinds for the scheduler tests, imported by worker processes after spawn.

They exercise the machinery, not the engine: a job that does nothing, one that
sleeps while reporting progress and writing its output bit by bit, one whose
worker dies, one that hangs, one that fails for good, and one that waits until the
test lets it finish (for the in-process executor of ``tests/doubles.py``).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

from engine.errors import InvalidInput, TransientError
from engine.progress import Progress
from scheduler.tasks import TaskContext, TaskKind

OPTION_KEYS = ("seconds", "steps", "crash_attempts")


def _write_result(ctx: TaskContext, extra: dict | None = None) -> dict:
    info = {"job_id": ctx.job_id, "pid": os.getpid(), "attempt": ctx.attempt, "run": ctx.run}
    info.update(extra or {})
    ctx.output.write_text(json.dumps(info))
    return info


def noop(ctx: TaskContext) -> dict:
    ctx.output.write_bytes(b"ok")
    return {}


def record(ctx: TaskContext) -> dict:
    """Writes which worker process ran it; ``state`` counts the jobs this worker ran."""
    ctx.state["jobs"] = ctx.state.get("jobs", 0) + 1
    return _write_result(ctx, {"worker_jobs": ctx.state["jobs"]})


def sleep(ctx: TaskContext) -> dict:
    """Sleeps ``seconds`` in ``steps``, reporting progress and writing output as it goes."""
    seconds = float(ctx.spec.options.get("seconds", 0.5))
    steps = int(ctx.spec.options.get("steps", 10))
    with ctx.output.open("w") as out:
        for step in range(steps):
            ctx.cancel.raise_if_canceled()
            ctx.progress(Progress(stage="sleep", done=step, total=steps, eta_seconds=1.0))
            out.write(f"step {step}\n")
            out.flush()
            time.sleep(seconds / steps)
    ctx.progress(Progress(stage="sleep", done=steps, total=steps))
    return _write_result(ctx)


def crash(ctx: TaskContext) -> dict:
    """The worker dies (SIGKILL) on its first ``crash_attempts`` attempts (default: always)."""
    crash_attempts = int(ctx.spec.options.get("crash_attempts", 1_000_000))
    ctx.progress(Progress(stage="about to crash", done=0, total=1))
    ctx.output.write_text("partial")
    if ctx.attempt <= crash_attempts:
        time.sleep(float(ctx.spec.options.get("seconds", 0.1)))
        os.kill(os.getpid(), signal.SIGKILL)
    return _write_result(ctx)


def hang(ctx: TaskContext) -> dict:
    """Never ends and ignores its cancel token (a stuck native call)."""
    ctx.output.write_text("partial")
    while True:
        time.sleep(0.05)


def bad_input(ctx: TaskContext) -> dict:
    raise InvalidInput("the source image holds no face")


def flaky(ctx: TaskContext) -> dict:
    """A transient error on the first attempts (``crash_attempts``), then success."""
    if ctx.attempt <= int(ctx.spec.options.get("crash_attempts", 1)):
        raise TransientError("the device is busy")
    return _write_result(ctx)


_gates: dict[str, threading.Event] = {}
_gates_lock = threading.Lock()


def _gate(job_id: str) -> threading.Event:
    with _gates_lock:
        return _gates.setdefault(job_id, threading.Event())


def release(job_id: str) -> None:
    """Let the ``held`` job ``job_id`` finish (from the test process: inline executor only)."""
    _gate(job_id).set()


def held(ctx: TaskContext) -> dict:
    """Reports half its progress, then waits until ``release(job_id)`` or its cancel token.

    Tests decide when it ends, so what they check never depends on how long a step takes."""
    ctx.progress(Progress(stage="held", done=1, total=2, eta_seconds=1.0))
    ctx.output.write_text("partial")
    gate = _gate(ctx.job_id)
    while not gate.wait(0.01):
        ctx.cancel.raise_if_canceled()
    return _write_result(ctx)


TASK_KINDS = (
    TaskKind("noop", noop, option_keys=OPTION_KEYS),
    TaskKind("record", record, option_keys=OPTION_KEYS),
    TaskKind("sleep", sleep, option_keys=OPTION_KEYS),
    TaskKind("crash", crash, option_keys=OPTION_KEYS),
    TaskKind("hang", hang, option_keys=OPTION_KEYS),
    TaskKind("bad_input", bad_input, option_keys=OPTION_KEYS),
    TaskKind("flaky", flaky, option_keys=OPTION_KEYS),
    TaskKind("held", held, option_keys=OPTION_KEYS),
)
