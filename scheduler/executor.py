"""The executor interface: how the dispatcher runs one attempt of a job somewhere.

The dispatcher decides *what* runs *where* (it owns the per-device slots);
an executor only runs what it is given and reports back. ``LocalExecutor``
runs attempts in long-lived worker processes on this machine; a distributed
backend (Celery workers on a Redis broker) implements the same few methods.

An attempt's events end with exactly one terminal event (``succeeded``,
``failed``, ``canceled``, ``released``). Failures caused by the machinery
(a worker that died, a time limit) are terminal ``failed`` events with a
transient ``JobError``; the dispatcher decides about retries.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.progress import JobProgress
from scheduler.jobs import JobError
from scheduler.retry import TIME_LIMIT, WORKER_DIED

PROGRESS = "progress"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELED = "canceled"
RELEASED = "released"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED, RELEASED})


@dataclass(frozen=True)
class Attempt:
    """One run of a job on one device.

    ``run`` is the job's fencing token; ``output`` the partial path the run
    writes its output to; ``time_limit`` (seconds) ends the run when exceeded.
    The attempts of the parts of a split job carry ``part`` and an id of their own
    (``<job id>~<part index>``), so that each can be run and canceled on its own.
    """

    job_id: str
    run: int
    attempt: int
    device: str
    kind: str
    spec: dict[str, Any]
    job_dir: str
    output: str
    time_limit: float | None = None
    # One part of a job split by the dispatcher (a video segment), or None for a whole job.
    part: dict[str, Any] | None = None


@dataclass(frozen=True)
class ExecutorEvent:
    """Progress of an attempt (``progress``, with a JPEG ``preview`` now and then), or its end."""

    job_id: str
    run: int
    type: str
    progress: JobProgress | None = None
    preview: bytes | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: JobError | None = None
    # Size of the (already fsynced) partial output, when the executor knows it.
    output_bytes: int | None = None

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL


class Executor(abc.ABC):
    """Runs attempts on devices. One instance per scheduler."""

    @abc.abstractmethod
    async def start(self, slots: Mapping[str, int]) -> None:
        """Get ready to run up to ``slots[device]`` attempts at once on each device."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop everything; attempts still running end with a ``released`` event."""

    @abc.abstractmethod
    def run(self, attempt: Attempt) -> AsyncIterator[ExecutorEvent]:
        """Run one attempt; yields its progress and ends after its terminal event.

        The dispatcher never asks for more concurrent attempts on a device than
        that device's slots.
        """

    @abc.abstractmethod
    async def cancel(self, job_id: str, grace: float = 2.0) -> None:
        """Stop a running attempt: ask it to stop, and end it by force after ``grace`` seconds.

        The attempt's events then end with ``canceled``. Unknown ids are ignored.
        """

    def describe(self) -> dict[str, Any]:
        """A small status report for operators (workers, their process ids, …)."""
        return {}


def ending_event(attempt: Attempt, ending: str | None, death: str) -> ExecutorEvent:
    """How an attempt that a worker did not finish itself ends: stopped on purpose
    (``ending``: canceled, released, past its time limit) or its worker died
    (``death`` says how)."""
    if ending == CANCELED:
        return ExecutorEvent(attempt.job_id, attempt.run, CANCELED)
    if ending == RELEASED:
        return ExecutorEvent(attempt.job_id, attempt.run, RELEASED)
    if ending == TIME_LIMIT:
        limit = attempt.time_limit or 0.0
        message = f"the job ran longer than its time limit of {limit:g} s and was stopped"
        return ExecutorEvent(
            attempt.job_id, attempt.run, FAILED, error=JobError(TIME_LIMIT, message, False)
        )
    message = f"the worker process stopped unexpectedly ({death})"
    return ExecutorEvent(
        attempt.job_id, attempt.run, FAILED, error=JobError(WORKER_DIED, message, False)
    )
