"""The Celery scale-out backend with real parts: a real redis-server (AOF on), real
``python app.py worker`` nodes (prefork pool), and the real scheduler (SQLite store,
dispatcher) with ``CeleryExecutor`` in place of local worker processes.

The jobs are the scheduler tests' task kinds (tests/scheduler_tasks.py): they
exercise the machinery (delivery, progress, crashes, cancel), not the engine.

The reliability tests marked ``BOTH_BROKERS`` run twice: on a Redis broker and on
a real RabbitMQ broker (``amqp://``, Redis beside it for results, progress and
announcements; tests/rabbitmq_server.py), one RabbitMQ node for the module.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from scheduler import Scheduler, SchedulerConfig
from scheduler.celery_backend import make_executor
from scheduler.celery_backend.app import CelerySettings
from scheduler.celery_backend.keys import Keys, task_id_for
from scheduler.celery_backend.registry import WorkerRegistry
from scheduler.jobs import Job, JobStatus
from scheduler.retry import RetryPolicy
from tests.rabbitmq_server import Broker, rabbitmq_broker, redis_broker
from tests.redis_server import RedisServer, WorkerProcess

pytestmark = pytest.mark.timeout(150)

HEARTBEAT_S = 0.5
WORKER_TTL_S = 2.5
TASK_MODULE = "tests.scheduler_tasks"
# The test runs on a Redis broker and on RabbitMQ (the ``broker`` fixture).
BOTH_BROKERS = pytest.mark.parametrize("broker", ["redis", "rabbitmq"], indirect=True)


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def broker(request: pytest.FixtureRequest, redis_server: RedisServer) -> Broker:
    """Redis as the broker, unless the test is parametrized with "rabbitmq"."""
    if getattr(request, "param", "redis") == "rabbitmq":
        return rabbitmq_broker(request.getfixturevalue("rabbitmq_server"), redis_server)
    return redis_broker(redis_server)


def registry_for(url: str) -> WorkerRegistry:
    return WorkerRegistry(redis.Redis.from_url(url), Keys(), WORKER_TTL_S)


def wait_announced(url: str, nodename: str, worker: WorkerProcess, timeout: float = 60) -> None:
    registry = registry_for(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if registry.is_alive(nodename):
            return
        if not worker.alive():
            raise AssertionError(f"worker exited:\n{worker.log_tail()}")
        time.sleep(0.1)
    raise AssertionError(f"worker {nodename} never announced itself:\n{worker.log_tail()}")


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(broker: Broker, data_dir: Path, tmp_path: Path) -> Iterator[StartWorker]:
    started: list[WorkerProcess] = []

    def start(devices: str = "cpu:0", slots: int = 1) -> WorkerProcess:
        worker = WorkerProcess(
            broker.url,
            data_dir,
            tmp_path / "logs",
            devices=devices,
            slots=slots,
            extra=(
                *broker.worker_args,
                "--task-module",
                TASK_MODULE,
                "--heartbeat",
                str(HEARTBEAT_S),
                "--worker-ttl",
                str(WORKER_TTL_S),
                "--job-time-limit",
                "120",
            ),
        )
        started.append(worker)
        worker.start()
        wait_announced(broker.redis_url, worker.nodename, worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def scheduler_for(broker: Broker, data_dir: Path, **config) -> Scheduler:
    executor = make_executor(
        broker.url,
        data_dir,
        **broker.executor_options,
        heartbeat_s=HEARTBEAT_S,
        worker_ttl_s=WORKER_TTL_S,
        job_time_limit_s=120,
    )
    executor.poll_interval = 0.2
    defaults = dict(
        data_dir=data_dir,
        devices={"cpu": 8},  # how many attempts this studio keeps in Celery at once
        task_modules=(TASK_MODULE,),
        retry=RetryPolicy(base=0.2, cap=1.0),
        cancel_grace_seconds=1.0,
        heartbeat_seconds=1.0,
        lease_seconds=30.0,
        recovery_seconds=5.0,
        max_attempts=3,
        synchronous="NORMAL",
    )
    defaults.update(config)
    return Scheduler(SchedulerConfig(**defaults), executor)


@pytest.fixture
async def studio(broker: Broker, data_dir: Path) -> AsyncIterator[Scheduler]:
    scheduler = scheduler_for(broker, data_dir)
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()


async def submit(scheduler: Scheduler, kind: str, **options) -> Job:
    return await scheduler.submit("tester", [], None, options, kind=kind)


async def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def wait_status(scheduler: Scheduler, job_id: str, *statuses: JobStatus, timeout=60.0) -> Job:
    async def reached():
        job = await scheduler.get(job_id)
        return job if job.status in statuses else None

    return await wait_for(reached, timeout, f"job {job_id} to become {statuses}")


async def wait_started(scheduler: Scheduler, job_id: str, timeout: float = 60.0) -> tuple[str, int]:
    executor = scheduler.executor

    async def started():
        worker, pid = executor.worker_of(job_id)
        return (worker, pid) if worker and pid else None

    return await wait_for(started, timeout, f"job {job_id} to start on a worker")


def outputs_of(data_dir: Path, job_id: str) -> list[str]:
    outputs = data_dir / "jobs" / job_id / "outputs"
    return sorted(p.name for p in outputs.iterdir()) if outputs.is_dir() else []


# -- tests ------------------------------------------------------------------------------


async def test_job_runs_on_a_worker_and_progress_comes_back(
    studio: Scheduler, start_worker: StartWorker, data_dir: Path
) -> None:
    worker = start_worker("cpu:0")
    subscription = studio.subscribe()
    job = await submit(studio, "sleep", seconds=1.0, steps=5)
    seen: list = []

    async def collect() -> None:
        async for event in subscription:
            if event.job_id == job.id:
                seen.append(event)
                if event.status is not None and event.status.finished:
                    return

    await asyncio.wait_for(collect(), 60)
    done = await studio.get(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result["pid"] in worker.pool_pids()  # ran in the worker's pool, not here
    assert outputs_of(data_dir, job.id) == ["result.bin"]
    output = json.loads((data_dir / "jobs" / job.id / "outputs" / "result.bin").read_text())
    assert output["job_id"] == job.id
    reports = [e.progress for e in seen if e.type == "progress"]
    fractions = [r.fraction for r in reports if r.stage == "sleep"]
    # Progress is throttled by the event bus, so not every step arrives; several do, in order.
    assert len(fractions) >= 2 and fractions == sorted(fractions) and 0 < fractions[-1] <= 1
    stages = {r.stage for r in reports}
    assert "sleep" in stages  # the worker's own stage reached the studio's event bus

    async def idle_worker_listed():  # the System panel's view, refreshed every heartbeat
        described = studio.executor.describe()
        workers = described["workers"]
        return described if workers and workers[0]["busy"] == 0 else None

    described = await wait_for(idle_worker_listed, 10, "the worker to be listed as idle")
    assert described["backend"] == "celery"
    assert [w["name"] for w in described["workers"]] == [worker.nodename]
    assert described["workers"][0]["devices"] == [{"device": "cpu:0", "slots": 1, "busy": 0}]


async def test_two_workers_with_different_devices_run_jobs_at_the_same_time(
    studio: Scheduler,
    start_worker: StartWorker,
    redis_server: RedisServer,
) -> None:
    first, second = start_worker("cpu:0"), start_worker("cpu:1")
    jobs = [await submit(studio, "sleep", seconds=4.0, steps=20) for _ in range(2)]
    registry = registry_for(redis_server.url)

    async def both_busy():
        workers = await asyncio.to_thread(registry.workers)
        busy = {w.name: [(slot.device, slot.job_id) for slot in w.busy] for w in workers}
        if all(len(busy.get(w.nodename, [])) == 1 for w in (first, second)):
            return busy
        return None

    busy = await wait_for(both_busy, 30, "both workers to be busy at once")
    assert busy[first.nodename][0][0] == "cpu:0"
    assert busy[second.nodename][0][0] == "cpu:1"
    assert {busy[first.nodename][0][1], busy[second.nodename][0][1]} == {j.id for j in jobs}
    finished = [await wait_status(studio, j.id, JobStatus.SUCCEEDED) for j in jobs]
    pids = {job.result["pid"] for job in finished}
    assert len(pids) == 2
    assert pids <= set(first.pool_pids()) | set(second.pool_pids())


@BOTH_BROKERS
async def test_worker_killed_mid_job_is_redelivered_and_finishes_once(
    studio: Scheduler, start_worker: StartWorker, data_dir: Path
) -> None:
    doomed = start_worker("cpu:0")
    job = await submit(studio, "sleep", seconds=3.0, steps=30)
    worker, pid = await wait_started(studio, job.id)
    assert worker == doomed.nodename
    survivor = start_worker("cpu:1")
    doomed.kill()  # SIGKILL to the node's whole process group: the machine "died"

    done = await wait_status(studio, job.id, JobStatus.SUCCEEDED, JobStatus.FAILED, timeout=60)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result["pid"] in survivor.pool_pids()
    assert done.result["run"] == 2  # the first run was lost, the second one finished
    assert done.attempts == 1  # the lost run was charged once
    assert outputs_of(data_dir, job.id) == ["result.bin"]  # one output, no partial left
    history = [entry.event for entry in await studio.history(job.id)]
    assert history.count("succeeded") == 1


async def test_pool_process_crash_is_retried_and_the_retries_are_bounded(
    broker: Broker,
    data_dir: Path,
    start_worker: StartWorker,
) -> None:
    """A pool process that dies mid-job: Celery requeues the message
    (task_reject_on_worker_lost); the redelivery becomes a charged attempt, so a job
    that always kills its worker ends as failed after max_attempts instead of looping."""
    node = start_worker("cpu:0", slots=2)
    scheduler = scheduler_for(broker, data_dir, max_attempts=2)
    await scheduler.start()
    try:
        once = await submit(scheduler, "crash", crash_attempts=1)
        always = await submit(scheduler, "crash")
        once_done = await wait_status(
            scheduler, once.id, JobStatus.SUCCEEDED, JobStatus.FAILED, timeout=90
        )
        always_done = await wait_status(
            scheduler, always.id, JobStatus.SUCCEEDED, JobStatus.FAILED, timeout=90
        )
    finally:
        await scheduler.stop()
    assert once_done.status is JobStatus.SUCCEEDED, once_done.error
    assert once_done.attempts == 1 and once_done.result["attempt"] == 2
    assert outputs_of(data_dir, once.id) == ["result.bin"]
    assert always_done.status is JobStatus.FAILED
    assert always_done.attempts == 2
    assert always_done.error is not None and always_done.error.code == "worker_died"
    assert outputs_of(data_dir, always.id) == []
    assert node.alive()  # the node survived its pool processes' deaths


@BOTH_BROKERS
async def test_broker_restart_while_jobs_are_queued_loses_no_job(
    studio: Scheduler,
    start_worker: StartWorker,
    broker: Broker,
    data_dir: Path,
) -> None:
    start_worker("cpu:0")
    jobs = [await submit(studio, "sleep", seconds=1.0, steps=5) for _ in range(4)]
    await wait_started(studio, jobs[0].id)
    depth = broker.waiting("fusion-jobs")
    assert depth >= 2  # jobs are waiting in the broker when it goes down
    # SIGKILL: no shutdown save. Redis: only the append-only file brings the queue back;
    # RabbitMQ: the durable queue and its persistent, confirmed messages.
    broker.restart(signal.SIGKILL, down_seconds=1.0)
    finished = [await wait_status(studio, j.id, JobStatus.SUCCEEDED, timeout=90) for j in jobs]
    assert all(job.status is JobStatus.SUCCEEDED for job in finished)
    for job in jobs:
        assert outputs_of(data_dir, job.id) == ["result.bin"]


async def test_a_task_the_broker_lost_is_sent_again(
    studio: Scheduler, start_worker: StartWorker, redis_server: RedisServer
) -> None:
    """Redis losing data (no AOF, a lost volume) must not strand a job in 'waiting'."""
    studio.executor.lost_check_s = 0.5
    client = redis.Redis.from_url(redis_server.url)
    job = await submit(studio, "record")
    await wait_for(lambda: asyncio.to_thread(client.llen, "fusion-jobs"), 10, "the task queued")
    client.delete("fusion-jobs")  # the message is gone
    start_worker("cpu:0")
    done = await wait_status(studio, job.id, JobStatus.SUCCEEDED, JobStatus.FAILED, timeout=30)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.attempts == 0  # the same run, sent again: nothing was charged


@BOTH_BROKERS
async def test_cancel_queued_and_running_jobs(
    studio: Scheduler,
    start_worker: StartWorker,
    broker: Broker,
    data_dir: Path,
) -> None:
    node = start_worker("cpu:0")
    client = redis.Redis.from_url(broker.redis_url)
    running = await submit(studio, "sleep", seconds=60.0, steps=600)
    queued = await submit(studio, "record")
    _, pid = await wait_started(studio, running.id)

    async def second_sent() -> bool:
        # Sent to Celery but not started: in the broker's list, or already reserved by the
        # worker (a revoke stops it in either place).
        return studio.executor.describe()["waiting"] >= 1

    await wait_for(second_sent, 30, "the second job to be sent to Celery")

    # Queued in the broker: revoked, never runs.
    canceled = await studio.cancel(queued.id)
    assert canceled.status is JobStatus.CANCELED
    # Running: the cancel flag trips the job's token; the pool process stays warm.
    await studio.cancel(running.id)
    assert (await studio.get(running.id)).status is JobStatus.CANCELED
    after = await submit(studio, "record")
    after_done = await wait_status(studio, after.id, JobStatus.SUCCEEDED)
    assert after_done.result["pid"] == pid  # same warm pool process
    keys = Keys()
    assert not client.exists(keys.deliveries(task_id_for(queued.id, 1)))  # never started
    assert outputs_of(data_dir, queued.id) == []
    assert outputs_of(data_dir, running.id) == []

    # A job that ignores its cancel token is terminated (its pool process is killed).
    stuck = await submit(studio, "hang")
    _, stuck_pid = await wait_started(studio, stuck.id)
    await studio.cancel(stuck.id)
    assert (await studio.get(stuck.id)).status is JobStatus.CANCELED
    await wait_for(
        lambda: asyncio.to_thread(lambda: stuck_pid not in node.pool_pids()),
        15,
        "the stuck pool process to be killed",
    )
    last = await submit(studio, "record")
    last_done = await wait_status(studio, last.id, JobStatus.SUCCEEDED)
    assert last_done.result["pid"] != stuck_pid  # a fresh pool process took over
    assert node.alive()


@BOTH_BROKERS
async def test_time_limit_stops_a_job_softly_and_charges_an_attempt(
    broker: Broker, data_dir: Path, start_worker: StartWorker
) -> None:
    node = start_worker("cpu:0")
    pool_before = node.pool_pids()
    scheduler = scheduler_for(broker, data_dir, max_attempts=1)
    await scheduler.start()
    try:
        job = await scheduler.submit(
            "tester", [], None, {"seconds": 30.0, "steps": 300}, kind="sleep", time_limit=2.0
        )
        done = await wait_status(scheduler, job.id, JobStatus.FAILED, JobStatus.SUCCEEDED)
        after = await submit(scheduler, "record")
        after_done = await wait_status(scheduler, after.id, JobStatus.SUCCEEDED)
    finally:
        await scheduler.stop()
    assert done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == "time_limit"
    assert "time limit of 2 s and was stopped" in done.error.message
    assert outputs_of(data_dir, job.id) == []
    # The soft limit stopped the job inside its pool process, which stays in service:
    # no process was killed and replaced (the hard limit would have done that).
    assert node.pool_pids() == pool_before
    assert after_done.result["pid"] in pool_before


def test_settings_validate_broker_and_limits() -> None:
    from engine.errors import InvalidOptions

    with pytest.raises(InvalidOptions, match="--redis"):
        CelerySettings(broker_url="amqp://guest:guest@rabbit:5672//")
    with pytest.raises(InvalidOptions, match="unsupported broker"):
        CelerySettings(broker_url="sqs://queue")
    amqp = CelerySettings(
        broker_url="amqp://guest:guest@rabbit:5672//", redis_url="redis://cache:6379/1"
    )
    assert amqp.redis_url == "redis://cache:6379/1" and not amqp.broker_is_redis
    settings = CelerySettings(broker_url="redis://r:6379/0", job_time_limit_s=3600)
    assert settings.redis_url == "redis://r:6379/0"
    assert settings.visibility_timeout_s > settings.job_time_limit_s > settings.soft_time_limit_s
