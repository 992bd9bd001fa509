"""Fusion Studio scheduler: a persistent SQLite job queue with per-device workers.

Layers, as in procrastinate: ``jobs`` (the model and its life cycle), ``store``
(the SQLite connector), ``dispatcher`` (claims jobs for device slots, leases,
recovery, retries) and ``executor`` / ``worker`` (where attempts run). The
studio uses only ``Scheduler`` from ``scheduler.service``.
"""

from scheduler.errors import (
    InvalidTransition,
    JobNotFound,
    QueueFull,
    SchedulerError,
    SchedulerStopped,
)
from scheduler.events import JobEvent, Subscription
from scheduler.jobs import Job, JobError, JobSpec, JobStatus
from scheduler.service import Scheduler, SchedulerConfig, SchedulerStats

__all__ = [
    "InvalidTransition",
    "Job",
    "JobError",
    "JobEvent",
    "JobNotFound",
    "JobSpec",
    "JobStatus",
    "QueueFull",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerError",
    "SchedulerStats",
    "SchedulerStopped",
    "Subscription",
]
