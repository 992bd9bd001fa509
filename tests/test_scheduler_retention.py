"""Retention removes expired jobs and their files, and nothing else."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from scheduler.jobs import JobStatus
from scheduler.retention import RetentionPolicy
from scheduler.service import DB_NAME, Scheduler
from tests.scheduler_server import make_config, wait_for

INPUT = ("input.txt", b"0123456789")
DAY = 24 * 3600.0


def age_job(data_dir: Path, job_id: str, seconds: float) -> None:
    """Pretend the job finished ``seconds`` ago (and its history is as old)."""
    db = sqlite3.connect(data_dir / DB_NAME, timeout=30, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")  # the scheduler writes too: take the write lock up front
    db.execute("UPDATE jobs SET finished_at = finished_at - ? WHERE id = ?", (seconds, job_id))
    db.execute("UPDATE job_history SET at = at - ? WHERE job_id = ?", (seconds, job_id))
    db.execute("COMMIT")
    db.close()


async def test_retention_removes_expired_jobs_and_their_files_and_nothing_else(tmp_path: Path):
    data_dir = tmp_path / "data"
    policy = RetentionPolicy(job_seconds=DAY, history_seconds=2 * DAY, orphan_grace_seconds=3600)
    async with Scheduler(make_config(data_dir, retention=policy)) as scheduler:
        await scheduler.executor.wait_ready()
        old_ok = await scheduler.submit("alice", [], INPUT, kind="noop")
        old_failed = await scheduler.submit("alice", [], INPUT, kind="bad_input")
        recent = await scheduler.submit("alice", [], INPUT, kind="noop")
        for job in (old_ok, old_failed, recent):
            await wait_for(scheduler, job.id)
        blocker = await scheduler.submit("bob", [], INPUT, kind="hang")
        await wait_for(scheduler, blocker.id, (JobStatus.RUNNING,))
        queued = await scheduler.submit("bob", [], INPUT, kind="noop")
        for job in (old_ok, old_failed):
            age_job(data_dir, job.id, 2 * DAY)
        old_orphan = scheduler.files.job_dir("orphanOldOrphanOld")
        (old_orphan / "inputs").mkdir(parents=True)
        (old_orphan / "inputs" / "target.bin").write_bytes(b"x" * 100)
        os.utime(old_orphan, (time.time() - 2 * 3600, time.time() - 2 * 3600))
        fresh_orphan = scheduler.files.job_dir("orphanFreshOrphanFresh")
        fresh_orphan.mkdir()
        disk_before = (await scheduler.stats()).disk_bytes
        subscription = scheduler.subscribe()

        report = await scheduler.sweep()

        assert sorted(report.expired) == sorted([old_ok.id, old_failed.id])
        assert report.orphans_removed == ["orphanOldOrphanOld"]
        assert report.bytes_freed == 2 * len(INPUT[1]) + 2  # two inputs and one "ok" output
        remaining = {recent.id, blocker.id, queued.id, "orphanFreshOrphanFresh"}
        assert set(scheduler.files.job_ids()) == remaining
        for job in (old_ok, old_failed):
            assert await scheduler.store.get(job.id) is None
            assert [h.event for h in await scheduler.history(job.id)][-1] == "expired"
        assert (await scheduler.get(recent.id)).status is JobStatus.SUCCEEDED
        assert scheduler.output_path(await scheduler.get(recent.id)) is not None
        assert (await scheduler.get(queued.id)).status is JobStatus.QUEUED
        assert (await scheduler.stats()).disk_bytes == disk_before - report.bytes_freed
        deleted = {(await subscription.get(timeout=1)).job_id for _ in range(2)}
        assert deleted == {old_ok.id, old_failed.id}

        # The history of an expired job is kept for the history period, then dropped.
        later = time.time() + DAY
        report = await scheduler.sweep(now=later)
        assert report.history_rows_removed == 0 and await scheduler.history(old_ok.id)
        assert report.expired == [recent.id]  # by then the recent job has expired too
        report = await scheduler.sweep(now=time.time() + 2 * DAY + 60)
        assert report.history_rows_removed > 0 and report.expired == []
        assert await scheduler.store.history(old_ok.id) == []
        assert await scheduler.store.history(recent.id) == []
        for job in (blocker, queued):  # jobs that still exist keep all their history
            assert [h.event for h in await scheduler.history(job.id)][0] == "submitted"
