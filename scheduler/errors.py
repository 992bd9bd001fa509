"""Errors the scheduler raises, each with a stable ``code`` the studio maps to HTTP.

They mirror ``engine.errors.EngineError`` (``code``, ``message``) so that the
presentation layer can render every error the same way; bad submissions reuse
the engine's own ``InvalidInput`` and ``InvalidOptions``.
"""

from __future__ import annotations


class SchedulerError(Exception):
    """Base class of the scheduler's deliberate errors."""

    code = "scheduler_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class QueueFull(SchedulerError):
    """Too many queued jobs, globally or for one owner (HTTP 429)."""

    code = "queue_full"


class JobNotFound(SchedulerError):
    """No such job, or it belongs to someone else (HTTP 404: the two look the same)."""

    code = "not_found"


class InvalidTransition(SchedulerError):
    """A status change the job life cycle does not allow (HTTP 409)."""

    code = "invalid_transition"


class SchedulerStopped(SchedulerError):
    """The scheduler is not running (not started yet, or stopping)."""

    code = "unavailable"
