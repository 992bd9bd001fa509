"""Which failures are worth retrying, and how long to wait before the next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.errors import FusionError, OutOfMemory
from scheduler.jobs import JobError

# Codes of failures that come from the machinery rather than from the job itself.
WORKER_DIED = "worker_died"
TIME_LIMIT = "time_limit"
OUT_OF_MEMORY = OutOfMemory.code
LEASE_EXPIRED = "lease_expired"
INTERNAL = FusionError.code  # a bare FusionError is an internal error


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: ``uniform(1 - jitter, 1) * min(cap, base * 2**n)``.

    Jitter spreads the retries of jobs that failed together (a dead GPU, a
    restart) so that they do not all come back at the same instant.
    """

    base: float = 2.0
    cap: float = 300.0
    jitter: float = 0.5

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1 for the first)."""
        rng = rng or random
        ceiling = min(self.cap, self.base * 2 ** max(0, attempts - 1))
        return ceiling * rng.uniform(1.0 - self.jitter, 1.0)


def error_from_exception(exc: BaseException) -> JobError:
    """Turn an exception raised by a task into a ``JobError``.

    Every ``FusionError`` (engine, scheduler or studio) carries its own code and
    permanence. Anything else is classified first (``as_fusion_error``).
    """
    error = as_fusion_error(exc)
    return JobError(error.code, error.message, error.permanent)


def as_fusion_error(exc: BaseException) -> FusionError:
    """``exc`` itself when it is a ``FusionError``, else the one of the hierarchy it means.

    Running out of memory (Python's ``MemoryError``, or a device's "out of memory" /
    ``bad_alloc``) is ``OutOfMemory``: transient. Anything unexpected is a bare
    ``FusionError`` (``internal_error``), transient too (a flaky device or file system
    may pass), but it still ends after the job's maximum attempts.
    """
    if isinstance(exc, FusionError):
        return exc
    if isinstance(exc, MemoryError):
        return OutOfMemory("the worker ran out of memory")
    text = str(exc).strip()
    if "out of memory" in text.lower() or "bad_alloc" in text.lower():
        return OutOfMemory(f"the device ran out of memory: {text}")
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return FusionError(f"internal error ({detail})")
