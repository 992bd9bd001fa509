"""Errors the scheduler raises: ``FusionError``s (``engine.errors``) like the engine's.

Each class declares its ``code``, ``permanent`` and ``http_status``, so the studio
renders them without a table of its own; bad submissions reuse the engine's own
``InvalidInput`` and ``InvalidOptions``.
"""

from __future__ import annotations

from engine.errors import FusionError


class SchedulerError(FusionError):
    """Base class of the scheduler's deliberate errors (a bare one is an internal error)."""

    code = "scheduler_error"
    permanent = False
    http_status = 500


class QueueFull(SchedulerError):
    """Too many queued jobs, globally or for one owner (HTTP 429; try again later)."""

    code = "queue_full"
    permanent = False
    http_status = 429
    retry_after = 5


class JobNotFound(SchedulerError):
    """No such job, or it belongs to someone else (HTTP 404: the two look the same)."""

    code = "not_found"
    permanent = True
    http_status = 404


class InvalidTransition(SchedulerError):
    """A status change the job life cycle does not allow (HTTP 409)."""

    code = "invalid_transition"
    permanent = True
    http_status = 409


class SchedulerStopped(SchedulerError):
    """The scheduler is not running (not started yet, or stopping): HTTP 503, try again."""

    code = "unavailable"
    permanent = False
    http_status = 503
    retry_after = 5
