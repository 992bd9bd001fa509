"""Which failures are worth retrying, and how long to wait before the next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.errors import EngineError
from scheduler.jobs import JobError

# Codes of failures that come from the machinery rather than from the job itself.
WORKER_DIED = "worker_died"
TIME_LIMIT = "time_limit"
OUT_OF_MEMORY = "out_of_memory"
LEASE_EXPIRED = "lease_expired"
INTERNAL = "internal_error"


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

    Engine errors carry their own code and permanence. Running out of memory
    is transient. Anything unexpected is transient too (a flaky device or file
    system may pass), but it still ends after the job's maximum attempts.
    """
    if isinstance(exc, EngineError):
        return JobError(exc.code, exc.message, exc.permanent)
    if isinstance(exc, MemoryError):
        return JobError(OUT_OF_MEMORY, "the worker ran out of memory", permanent=False)
    text = str(exc).strip()
    if "out of memory" in text.lower() or "bad_alloc" in text.lower():
        return JobError(OUT_OF_MEMORY, f"the device ran out of memory: {text}", permanent=False)
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return JobError(INTERNAL, f"internal error ({detail})", permanent=False)
