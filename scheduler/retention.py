"""Retention: finished jobs and their files are deleted once older than a TTL.

Only finished jobs (succeeded, failed, canceled) expire, counted from when
they finished. Each expiry leaves one ``expired`` line in the job history;
the history of a job that is gone is dropped ``history_seconds`` later.
Job directories without a row (a submit that crashed between copying its
inputs and committing) are removed once they are older than ``orphan_grace``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from scheduler.events import DELETED, EventBus, JobEvent
from scheduler.files import JobFiles
from scheduler.jobs import Job
from scheduler.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    job_seconds: float = 7 * 24 * 3600.0
    history_seconds: float = 7 * 24 * 3600.0
    orphan_grace_seconds: float = 3600.0


@dataclass(frozen=True)
class SweepReport:
    expired: list[str]
    orphans_removed: list[str]
    history_rows_removed: int
    bytes_freed: int


async def sweep(
    store: Store,
    files: JobFiles,
    policy: RetentionPolicy,
    bus: EventBus | None = None,
    now: float | None = None,
) -> SweepReport:
    """Delete what has expired by ``now`` (default: the store's clock)."""
    now = store.clock() if now is None else now
    expired: list[Job] = []
    freed = 0
    while True:
        batch = await store.finished_before(now - policy.job_seconds)
        batch = [job for job in batch if job.id not in {j.id for j in expired}]
        if not batch:
            break
        for job in batch:
            try:
                await store.delete(job.id, event="expired")
            except Exception:
                log.exception("could not expire job %s", job.id)
                continue
            freed += job.input_bytes + job.output_bytes
            files.remove(job.id)
            expired.append(job)
            if bus is not None:
                bus.publish(JobEvent(job.id, job.owner, DELETED, status=job.status))
    orphans = await _remove_orphans(store, files, now - policy.orphan_grace_seconds)
    pruned = await store.prune_history(now - policy.history_seconds)
    return SweepReport([job.id for job in expired], orphans, pruned, freed)


async def _remove_orphans(store: Store, files: JobFiles, older_than: float) -> list[str]:
    on_disk = files.job_ids()
    known = await store.job_ids(on_disk)
    removed = []
    for job_id in on_disk:
        if job_id in known:
            continue
        try:
            modified = files.job_dir(job_id).stat().st_mtime
        except FileNotFoundError:
            continue
        if modified < older_than and modified < time.time() - 1.0:
            files.remove(job_id)
            removed.append(job_id)
    return removed
