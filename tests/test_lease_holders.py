"""A restarted server takes over at once the jobs of a crashed server on the same host.

The leases are signed by their holder (host, pid, process start time): a holder
that is certainly gone does not need its lease to run out; a live one, or one on
another host, does.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from scheduler.holders import _start_time, certainly_gone, this_holder
from scheduler.jobs import Job, JobSpec, JobStatus
from tests.doubles import fast_store


def holder_of(process: subprocess.Popen) -> str:
    return f"{socket.gethostname()}:{process.pid}:{_start_time(process.pid)}"


def test_a_holder_is_gone_only_when_its_process_on_this_host_is():
    process = subprocess.Popen(["sleep", "30"])
    try:
        holder = holder_of(process)
        assert not certainly_gone(holder)
        assert not certainly_gone(this_holder())
        # The same pid started at another time is another process: the holder is gone.
        assert certainly_gone(holder.rsplit(":", 1)[0] + ":1")
    finally:
        process.kill()
        process.wait()
    assert certainly_gone(holder)
    assert not certainly_gone(f"another-host:{process.pid}:1")  # cannot be checked
    assert not certainly_gone("")  # leases from before holders were recorded


async def running_job(tmp_path: Path, holder: str) -> str:
    store = fast_store(tmp_path / "db.sqlite3")
    store.instance = holder
    await store.open()
    now = time.time()
    job = Job(
        id="job-1",
        owner="alice",
        spec=JobSpec(kind="noop"),
        status=JobStatus.QUEUED,
        created_at=now,
        updated_at=now,
    )
    await store.insert(job)
    [claimed] = await store.claim("cpu", 1, lease_seconds=3600)
    await store.close()
    return claimed.id


async def recovered(tmp_path: Path) -> list[Job]:
    store = fast_store(tmp_path / "db.sqlite3")
    store.instance = this_holder()
    await store.open()
    try:
        return await store.recover_expired(lambda attempts: 0.0, exclude=set())
    finally:
        await store.close()


async def test_the_job_of_a_dead_holder_is_recovered_before_its_lease_ends(tmp_path):
    process = subprocess.Popen(["sleep", "30"])
    holder = holder_of(process)
    job_id = await running_job(tmp_path, holder)
    assert await recovered(tmp_path) == []  # its holder is alive: the lease stands
    process.kill()
    process.wait()
    [job] = await recovered(tmp_path)
    assert job.id == job_id and job.status is JobStatus.QUEUED and job.attempts == 1
    assert job.error is not None and job.error.code == "lease_expired"


async def test_a_holder_on_another_host_keeps_its_lease(tmp_path):
    await running_job(tmp_path, "another-host:1:1")
    assert await recovered(tmp_path) == []
