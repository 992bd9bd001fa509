"""Names of the Redis keys and channels the studio and the workers share.

All of them live under one prefix so that several studios can share a Redis
(give each its own ``--queue``; the prefix follows it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key and channel names for one deployment (one queue)."""

    queue: str = "fusion-jobs"

    @property
    def prefix(self) -> str:
        return f"fusion:{self.queue}"

    # -- pub/sub channels ---------------------------------------------------------------

    @property
    def events_channel(self) -> str:
        """Workers publish progress, stage, previews, start and finish here."""
        return f"{self.prefix}:events"

    # -- per job ------------------------------------------------------------------------

    def attempt(self, job_id: str) -> str:
        """The attempt the studio currently wants to run; older deliveries are stale."""
        return f"{self.prefix}:job:{job_id}:attempt"

    def cancel(self, job_id: str) -> str:
        """Set when the job is canceled; workers check it before and while running."""
        return f"{self.prefix}:job:{job_id}:cancel"

    def deliveries(self, task_id: str) -> str:
        """How many times a worker has started this task id (redeliveries after a crash)."""
        return f"{self.prefix}:task:{task_id}:deliveries"

    def done(self, task_id: str) -> str:
        """Set once the task's outcome is stored, so a redelivered copy never runs again."""
        return f"{self.prefix}:task:{task_id}:done"

    # -- workers ------------------------------------------------------------------------

    @property
    def workers(self) -> str:
        """Set of worker names that have announced themselves (members may have expired)."""
        return f"{self.prefix}:workers"

    def worker(self, name: str) -> str:
        """One worker's announcement (JSON); expires unless the worker keeps beating."""
        return f"{self.prefix}:worker:{name}"

    def worker_busy(self, name: str) -> str:
        """Hash task id → JSON of the slots of one worker that are running a job."""
        return f"{self.prefix}:worker:{name}:busy"


def task_id_for(job_id: str, run: int) -> str:
    """Celery task id of one run of a job (or of one part, ``<job>~<part>``): stable, so a
    resend of the same run is recognised as the same task and a new run never collides
    with an old one."""
    return f"{job_id}.r{run}"
