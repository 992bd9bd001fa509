"""A scheduler server in its own process, for the crash tests, and helpers shared by
the scheduler tests.

    python -m tests.scheduler_server DATA_DIR [--submit N] [--seconds S] [--until-done]

It starts a ``Scheduler`` with the test task kinds on ``DATA_DIR``, writes its
workers' process ids to ``DATA_DIR/workers.json``, submits ``N`` sleep jobs
(appending each acknowledged job id to ``DATA_DIR/acks.txt``, fsynced, only
after ``submit`` returned), and with ``--until-done`` exits 0 once no job is
queued or running. Without it, it runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from scheduler.jobs import JobStatus
from scheduler.retention import RetentionPolicy
from scheduler.retry import RetryPolicy
from scheduler.service import DB_NAME, Scheduler, SchedulerConfig

TASKS = ("tests.scheduler_tasks",)


def make_config(data_dir: Path, **overrides: Any) -> SchedulerConfig:
    """Short leases, fast retries and the test task kinds."""
    settings: dict[str, Any] = {
        "data_dir": Path(data_dir),
        "devices": {"cpu": 1},
        "task_modules": TASKS,
        "retry": RetryPolicy(base=0.05, cap=0.2),
        "lease_seconds": 2.0,
        "heartbeat_seconds": 0.3,
        "recovery_seconds": 0.3,
        "cancel_grace_seconds": 1.0,
        "default_time_limit": 60.0,
        "retention": RetentionPolicy(job_seconds=3600, history_seconds=7200),
    }
    settings.update(overrides)
    return SchedulerConfig(**settings)


async def wait_for(
    scheduler: Scheduler,
    job_id: str,
    statuses: tuple[JobStatus, ...] = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED),
    timeout: float = 30.0,
    predicate=None,
):
    """Poll until the job has one of ``statuses`` (and ``predicate(job)`` holds)."""
    deadline = time.monotonic() + timeout
    while True:
        job = await scheduler.store.get(job_id)
        if job is not None and job.status in statuses and (predicate is None or predicate(job)):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not reach {statuses} in {timeout}s: {job}")
        await asyncio.sleep(0.02)


def read_jobs(data_dir: Path) -> dict[str, dict]:
    """The job rows, read straight from the SQLite file (no scheduler needed)."""
    db = sqlite3.connect(Path(data_dir) / DB_NAME)
    db.row_factory = sqlite3.Row
    try:
        return {row["id"]: dict(row) for row in db.execute("SELECT * FROM jobs")}
    finally:
        db.close()


def read_history(data_dir: Path) -> list[dict]:
    db = sqlite3.connect(Path(data_dir) / DB_NAME)
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute("SELECT * FROM job_history ORDER BY id")]
    finally:
        db.close()


async def serve(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    config = make_config(
        data_dir,
        devices={"cpu": args.slots},
        lease_seconds=args.lease,
        heartbeat_seconds=args.lease / 5,
        recovery_seconds=args.lease / 5,
        progress_persist_seconds=0.2,  # tests read progress straight from the SQLite file
    )
    scheduler = Scheduler(config)
    await scheduler.start()
    await scheduler.executor.wait_ready()
    pids = [w["pid"] for w in scheduler.executor.describe()["workers"]]
    (data_dir / "workers.json").write_text(json.dumps({"server": os.getpid(), "workers": pids}))
    print("READY", flush=True)
    with (data_dir / "acks.txt").open("a") as acks:
        for number in range(args.submit):
            job = await scheduler.submit(
                "owner-" + str(number % 3),
                [],
                ("input.txt", f"job {number}".encode()),
                {"seconds": args.seconds, "steps": 10},
                kind="sleep",
            )
            acks.write(job.id + "\n")
            acks.flush()
            os.fsync(acks.fileno())
            await asyncio.sleep(args.gap)
    while True:
        counts = await scheduler.store.counts()
        if args.until_done and counts["queued"] == 0 and counts["running"] == 0:
            break
        await asyncio.sleep(0.05)
    await scheduler.stop()
    print("DONE", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("--submit", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0.6)
    parser.add_argument("--gap", type=float, default=0.05)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--lease", type=float, default=1.5)
    parser.add_argument("--until-done", action="store_true")
    return asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is not alive
        return handle.read().split(")")[-1].split()[0] != "Z"
