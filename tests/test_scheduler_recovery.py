"""A server process killed with SIGKILL while jobs run: nothing is lost, nothing runs twice.

The server (``tests/scheduler_server.py``) runs in a real subprocess with real
worker processes; the test kills it with SIGKILL while it is both submitting
and running jobs, checks that its workers died with it, starts a new server
on the same data directory and waits until that one has finished everything.

The queue side of a crash (a lease that expires, the next server recovering the
job) is also checked in process, on a fake clock, without processes or sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from scheduler.jobs import JobStatus
from tests.scheduler_server import pid_alive, read_history, read_jobs, wait_for
from tests.scheduler_tasks import release

REPO = Path(__file__).resolve().parents[1]


def start_server(data_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.scheduler_server", str(data_dir), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def acknowledged(data_dir: Path) -> list[str]:
    path = data_dir / "acks.txt"
    return path.read_text().split() if path.exists() else []


def test_sigkill_of_the_server_loses_no_job_and_runs_none_twice(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server = start_server(data_dir, "--submit", "20", "--seconds", "0.8", "--gap", "0.2")
    try:
        assert server.stdout.readline().strip() == "READY"
        workers = json.loads((data_dir / "workers.json").read_text())["workers"]

        def mid_run() -> bool:
            jobs = read_jobs(data_dir).values()
            running = [j for j in jobs if j["status"] == "running" and (j["progress"] or 0) > 0]
            return len(running) >= 2 and any(j["status"] == "succeeded" for j in jobs)

        wait_until(mid_run, 30, "jobs running and one done")
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    wait_until(lambda: not any(pid_alive(pid) for pid in workers), 10, "orphan workers to exit")

    before = read_jobs(data_dir)
    acks = acknowledged(data_dir)
    assert 3 <= len(acks) < 20, "the kill should land while jobs were being submitted"
    assert set(acks) <= set(before)  # every acknowledged submit was committed
    interrupted = {i for i, j in before.items() if j["status"] == "running"}
    assert len(interrupted) >= 2

    restarted = start_server(data_dir, "--until-done")
    try:
        assert restarted.stdout.readline().strip() == "READY"
        assert restarted.stdout.readline().strip() == "DONE"
        assert restarted.wait(60) == 0
    finally:
        if restarted.poll() is None:
            restarted.kill()

    after = read_jobs(data_dir)
    assert set(after) == set(before)
    history = read_history(data_dir)
    succeeded = Counter(h["job_id"] for h in history if h["event"] == "succeeded")
    for job_id, row in after.items():
        assert row["status"] == "succeeded", (job_id, row)
        assert succeeded[job_id] == 1
        outputs = sorted(os.listdir(data_dir / "jobs" / job_id / "outputs"))
        assert outputs == ["result.bin"], outputs
        result = json.loads((data_dir / "jobs" / job_id / "outputs" / "result.bin").read_text())
        assert result["run"] == row["runs"]  # the output is the one from the run that finished
    for job_id in interrupted:
        row = after[job_id]
        assert row["attempts"] == 1 and row["runs"] == 2
        reasons = [
            h["detail"] for h in history if h["job_id"] == job_id and h["event"] == "retried"
        ]
        assert len(reasons) == 1 and "lease_expired" in reasons[0]
    # No two runs of one job ever overlapped: each start follows the previous run's end.
    for job_id in after:
        events = [h["event"] for h in history if h["job_id"] == job_id]
        starts = [i for i, e in enumerate(events) if e == "started"]
        for first, second in zip(starts, starts[1:], strict=False):
            assert "retried" in events[first:second]


async def test_a_crashed_servers_job_is_recovered_once_its_lease_expires(
    tmp_path: Path, start_inline, fake_clock
):
    data_dir = tmp_path / "shared"
    first = await start_inline(data_dir=data_dir, lease_seconds=60.0)
    job = await first.submit("alice", [], ("input.txt", b"x"), kind="held")
    await wait_for(first, job.id, (JobStatus.RUNNING,))
    await first.stop(graceful=False)  # the store is left as a crash leaves it
    assert read_jobs(data_dir)[job.id]["status"] == "running"

    fake_clock.advance(30.0)  # the lease still holds: a new server leaves the job alone
    second = await start_inline(data_dir=data_dir, lease_seconds=60.0)
    assert await second.dispatcher.recover() == []
    assert (await second.get(job.id)).status is JobStatus.RUNNING

    fake_clock.advance(31.0)  # now it has expired: recovered, charged one attempt, run again
    [recovered] = await second.dispatcher.recover()
    assert recovered.id == job.id and recovered.attempts == 1
    assert recovered.run_after > fake_clock()  # after its backoff (at most 0.2 s here)
    fake_clock.advance(0.2)
    await wait_for(second, job.id, (JobStatus.RUNNING,), predicate=lambda j: j.runs == 2)
    release(job.id)
    done = await wait_for(second, job.id)
    assert done.status is JobStatus.SUCCEEDED and (done.attempts, done.runs) == (1, 2)
    history = await second.history(job.id)
    assert [h.event for h in history] == [
        "submitted",
        "started",
        "retried",
        "started",
        "succeeded",
    ]
    assert history[2].detail["code"] == "lease_expired"
