"""Worker processes that die, hang, or are canceled; time limits.

Real worker processes (the ``scheduler`` fixture of tests/conftest.py), since
what these tests check is the ``LocalExecutor``'s handling of processes; the
queue logic around them runs on the in-process doubles (``start_inline``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from engine.errors import InvalidInput, NoFaceFound, TransientError
from scheduler.jobs import JobStatus
from scheduler.retry import RetryPolicy, error_from_exception
from scheduler.service import Scheduler
from tests.scheduler_server import make_config, pid_alive, wait_for
from tests.scheduler_tasks import release

INPUT = ("input.txt", b"some input")


def worker_pids(scheduler: Scheduler) -> list[int]:
    return [w["pid"] for w in scheduler.executor.describe()["workers"] if w["pid"]]


async def worker_of(scheduler: Scheduler, job_id: str) -> int:
    """The process id of the worker that runs ``job_id``."""
    for _ in range(500):
        pid = scheduler.executor.worker_pid(job_id)
        if pid is not None:
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} has no worker")


async def running_pid(scheduler: Scheduler, job_id: str) -> int:
    """Wait until the job has reported progress; the pid of its worker."""
    await wait_for(
        scheduler, job_id, (JobStatus.RUNNING,), predicate=lambda j: (j.progress or 0) > 0
    )
    return await worker_of(scheduler, job_id)


def leftovers(scheduler: Scheduler, job_id: str) -> list[str]:
    outputs = scheduler.files.outputs_dir(job_id)
    return sorted(os.listdir(outputs)) if outputs.is_dir() else []


async def test_a_killed_worker_is_replaced_and_its_job_retried(scheduler: Scheduler):
    job = await scheduler.submit("alice", [], INPUT, {"seconds": 2.0, "steps": 40}, kind="sleep")
    victim = await running_pid(scheduler, job.id)
    os.kill(victim, signal.SIGKILL)
    done = await wait_for(scheduler, job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.attempts == 1 and done.runs == 2
    result = json.loads(scheduler.output_path(done).read_text())
    assert result["pid"] != victim and result["attempt"] == 2
    assert leftovers(scheduler, job.id) == ["result.bin"]
    retried = [h for h in await scheduler.history(job.id) if h.event == "retried"]
    assert retried[0].detail["code"] == "worker_died"
    assert "killed by SIGKILL" in retried[0].detail["reason"]
    assert not pid_alive(victim)


async def test_a_job_whose_worker_always_dies_fails_after_its_maximum_attempts(
    scheduler: Scheduler,
):
    job = await scheduler.submit("alice", [], INPUT, kind="crash", max_attempts=3)
    done = await wait_for(scheduler, job.id)
    assert done.status is JobStatus.FAILED
    assert done.attempts == 3 and done.runs == 3
    assert done.error.code == "worker_died"
    assert done.error.message == (
        "the worker process stopped unexpectedly (killed by SIGKILL (out of memory or killed)) "
        "(gave up after 3 attempts)"
    )
    assert leftovers(scheduler, job.id) == []
    events = [h.event for h in await scheduler.history(job.id)]
    assert events == ["submitted", "started", "retried", "started", "retried", "started", "failed"]
    # The pool is whole again: the next job runs.
    after = await scheduler.submit("alice", [], INPUT, kind="noop")
    assert (await wait_for(scheduler, after.id)).status is JobStatus.SUCCEEDED


async def test_a_dead_workers_job_comes_back_after_its_backoff(start_inline, fake_clock):
    """The queue side of a worker death (the real death: the tests above): the attempt
    is charged and the job waits out its backoff on the store's clock, then runs again."""
    scheduler = await start_inline(retry=RetryPolicy(base=30.0, cap=30.0, jitter=0.0))
    job = await scheduler.submit("alice", [], INPUT, kind="held")
    while job.id not in scheduler.executor.running():
        await asyncio.sleep(0.005)
    scheduler.executor.die(job.id)
    queued = await wait_for(
        scheduler, job.id, (JobStatus.QUEUED,), predicate=lambda j: j.attempts == 1
    )
    assert queued.error.code == "worker_died" and queued.run_after == fake_clock() + 30.0
    assert leftovers(scheduler, job.id) == []
    fake_clock.advance(29.0)
    assert await scheduler.store.claim("cpu", 1, 60) == []  # not due yet
    fake_clock.advance(1.0)
    await wait_for(scheduler, job.id, (JobStatus.RUNNING,), predicate=lambda j: j.runs == 2)
    release(job.id)
    done = await wait_for(scheduler, job.id)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 1 and done.runs == 2
    events = [h.event for h in await scheduler.history(job.id)]
    assert events == ["submitted", "started", "retried", "started", "succeeded"]


async def test_cancel_a_queued_job(start_inline):
    scheduler = await start_inline()
    blocker = await scheduler.submit("alice", [], INPUT, kind="held")
    job = await scheduler.submit("alice", [], INPUT, kind="noop")
    canceled = await scheduler.cancel(job.id, owner="alice")
    assert canceled.status is JobStatus.CANCELED and canceled.runs == 0
    release(blocker.id)
    assert (await wait_for(scheduler, blocker.id)).status is JobStatus.SUCCEEDED
    assert (await scheduler.get(job.id)).status is JobStatus.CANCELED
    assert [h.event for h in await scheduler.history(job.id)] == ["submitted", "canceled"]


async def test_cancel_a_running_job_stops_it_and_leaves_no_partial_output(scheduler: Scheduler):
    job = await scheduler.submit("alice", [], INPUT, {"seconds": 30, "steps": 300}, kind="sleep")
    pid = await running_pid(scheduler, job.id)
    assert leftovers(scheduler, job.id) == [f".r1.{job.spec.output}"]  # it is writing
    await scheduler.cancel(job.id)  # returns once the attempt has ended
    assert job.id not in scheduler.dispatcher.running_ids()
    canceled = await scheduler.get(job.id)
    assert canceled.status is JobStatus.CANCELED and canceled.output_name is None
    assert leftovers(scheduler, job.id) == []
    assert not scheduler.files.work_dir(job.id).exists()
    assert pid_alive(pid)  # the task stopped on its cancel token: the worker stays warm
    assert scheduler.executor.describe()["workers"][0]["state"] == "idle"


async def test_cancel_of_a_job_that_ignores_it_ends_the_worker(scheduler: Scheduler):
    job = await scheduler.submit("alice", [], INPUT, kind="hang")
    await wait_for(scheduler, job.id, (JobStatus.RUNNING,))
    pid = await worker_of(scheduler, job.id)
    await scheduler.cancel(job.id)  # returns once the worker has been ended after the grace
    assert job.id not in scheduler.dispatcher.running_ids()
    assert (await scheduler.get(job.id)).status is JobStatus.CANCELED
    assert leftovers(scheduler, job.id) == []
    assert not pid_alive(pid)
    after = await scheduler.submit("alice", [], INPUT, kind="noop")
    assert (await wait_for(scheduler, after.id)).status is JobStatus.SUCCEEDED


async def test_a_time_limit_ends_a_stuck_job(tmp_path: Path):
    config = make_config(tmp_path / "data", retry=RetryPolicy(base=0.05, cap=0.1))
    async with Scheduler(config) as scheduler:
        await scheduler.executor.wait_ready()
        job = await scheduler.submit(
            "alice", [], INPUT, kind="hang", time_limit=0.5, max_attempts=2
        )
        done = await wait_for(scheduler, job.id, timeout=20)
        assert done.status is JobStatus.FAILED and done.attempts == 2
        assert done.error.code == "time_limit"
        assert "longer than its time limit of 0.5 s" in done.error.message
        assert leftovers(scheduler, job.id) == []
        quick = await scheduler.submit("alice", [], INPUT, kind="noop", time_limit=5)
        assert (await wait_for(scheduler, quick.id)).status is JobStatus.SUCCEEDED


def test_errors_are_classified_for_retry():
    assert error_from_exception(InvalidInput("bad file")).permanent
    assert error_from_exception(NoFaceFound("no face in the source")).code == "no_face"
    assert not error_from_exception(TransientError("busy")).permanent
    oom = error_from_exception(MemoryError())
    assert (oom.code, oom.permanent) == ("out_of_memory", False)
    cuda = error_from_exception(RuntimeError("CUDA error: out of memory"))
    assert (cuda.code, cuda.permanent) == ("out_of_memory", False)
    other = error_from_exception(ValueError("boom"))
    assert (other.code, other.permanent, other.message) == (
        "internal_error",
        False,
        "internal error (ValueError: boom)",
    )


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    import random

    policy = RetryPolicy(base=1.0, cap=10.0, jitter=0.5)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(1, 7)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(10.0, 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(policy.delay(3, rng), 6) for _ in range(20)}) > 1


@pytest.mark.parametrize("priority", ["idle", "low", "normal"])
async def test_workers_run_at_the_configured_cpu_priority(tmp_path: Path, priority: str):
    """Jobs yield the CPU to the server: SCHED_IDLE, or nice 10, or unchanged."""
    config = make_config(tmp_path / "data", worker_settings={"priority": priority})
    scheduler = Scheduler(config)
    await scheduler.start()
    try:
        await scheduler.executor.wait_ready()
        (pid,) = worker_pids(scheduler)
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        nice = os.getpriority(os.PRIO_PROCESS, pid)
        if priority == "idle":
            assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        else:
            assert os.sched_getscheduler(pid) == os.SCHED_OTHER
            assert nice == (min(19, ours + 10) if priority == "low" else ours)
        job = await scheduler.submit("alice", [], INPUT, {"seconds": 0.1}, kind="sleep")
        assert (await wait_for(scheduler, job.id)).status is JobStatus.SUCCEEDED
    finally:
        await scheduler.stop()
