"""The worker side: the one Celery task, which runs an attempt exactly like a local worker.

The task looks up the job's kind in the scheduler's task registry
(``scheduler.tasks``) and calls it with a ``TaskContext``, as
``scheduler.worker`` does for local workers, so a job behaves the same on
either backend. Each pool process keeps its ``state`` (warm ``FaceEngine``
sessions) between jobs, on the device it was given at start.

Around the call, the guards that make Celery's at-least-once delivery run a
job's attempt at most once:

* **stale run**: the studio records the job's current run in Redis before it
  sends the task; a delivery for another run (superseded by a retry, released
  when the studio stopped) is dropped (``Ignore``: nothing stored, message
  acknowledged).
* **done**: a delivery of a task whose outcome is already stored (its late ack
  was lost in a broker restart) is dropped, so the stored outcome stays.
* **redelivery after a crash**: ``task_reject_on_worker_lost`` requeues the
  message of a pool process that died mid-job. The task counts deliveries per
  task id; the second delivery does not run the job again but reports a
  transient ``worker_died`` failure, which the studio's dispatcher charges as
  a failed attempt and retries as a new run up to the job's ``max_attempts``.
  A job that kills its worker every time therefore ends as ``failed``, never
  loops.
* **canceled**: the cancel flag is checked before starting and polled while
  running; the task's cancel token then stops the job at its next check.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from celery.utils.log import current_process_index

from engine.errors import Canceled
from engine.progress import CancelToken, JobProgress, Progress
from scheduler.celery_backend.app import TASK_NAME, CelerySettings
from scheduler.celery_backend.messages import (
    CANCELED,
    PREVIEW_QUALITY,
    SUCCEEDED,
    Outcome,
    TaskPayload,
    WorkerEvent,
)
from scheduler.celery_backend.registry import BusySlot, WorkerRegistry
from scheduler.celery_backend.storage import JobStorage, SharedDirectoryStorage
from scheduler.cpu import lower_priority
from scheduler.jobs import JobSpec
from scheduler.progress_gate import PROGRESS_INTERVAL, ProgressGate
from scheduler.retry import TIME_LIMIT, WORKER_DIED, error_from_exception
from scheduler.tasks import TaskContext, load_kinds
from scheduler.video_split import SEGMENT_KIND

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    """One worker node: its devices, slots, shared data directory and task settings."""

    settings: CelerySettings
    name: str
    devices: tuple[str, ...]
    slots_per_device: int
    data_dir: Path
    task_modules: tuple[str, ...] = ()
    # Passed to task functions as ``ctx.settings`` (models_dir, threads, …), as the
    # studio passes its worker settings to local workers.
    task_settings: dict[str, Any] = field(default_factory=dict)
    progress_interval: float = PROGRESS_INTERVAL
    preview_interval: float = 1.0
    cancel_poll_interval: float = 0.25

    @property
    def concurrency(self) -> int:
        return len(self.devices) * self.slots_per_device

    def device_of(self, process_index: int | None) -> str:
        """Pool process ``i`` serves device ``i // slots``; billiard reuses the index of a
        process it replaces, so a device keeps its number of slots after a crash."""
        if process_index is None:
            return self.devices[0]
        return self.devices[(process_index // self.slots_per_device) % len(self.devices)]

    def storage(self) -> JobStorage:
        return SharedDirectoryStorage(self.data_dir)


class PoolProcess:
    """What one pool process keeps between jobs. Built lazily *after* the fork, so no
    socket or model session is ever shared between processes."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.pid = os.getpid()
        self.device = config.device_of(current_process_index(base=0))
        # Timeouts: a Redis that hangs must not hang a job inside its progress callback.
        self.redis = redis.Redis.from_url(
            config.settings.redis_url,
            socket_keepalive=True,
            socket_connect_timeout=5,
            socket_timeout=10,
            health_check_interval=10,
            retry_on_timeout=True,
        )
        self.keys = config.settings.keys
        self.registry = WorkerRegistry(self.redis, self.keys, config.settings.worker_ttl_s)
        self.storage = config.storage()
        self.state: dict[str, Any] = {}
        lower_priority(config.task_settings.get("priority", "normal"))
        self.kinds = load_kinds(tuple(config.task_modules))

    def publish(self, event: WorkerEvent) -> None:
        """Live events are best effort: a Redis hiccup must never fail a job."""
        try:
            self.redis.publish(self.keys.events_channel, event.to_json())
        except redis.RedisError as exc:
            log.warning("could not publish a %s event: %s", event.type, exc)


_processes: dict[int, PoolProcess] = {}


def pool_process(config: WorkerConfig) -> PoolProcess:
    process = _processes.get(os.getpid())
    if process is None:
        process = _processes[os.getpid()] = PoolProcess(config)
    return process


def register(app: Celery, config: WorkerConfig):
    """Register the task on ``app`` for a worker with ``config``; returns the task."""

    @app.task(name=TASK_NAME, bind=True)
    def run_attempt(self, payload: dict[str, Any]) -> dict[str, Any]:
        return execute(pool_process(config), self.request.id, TaskPayload.from_dict(payload))

    return run_attempt


# -- one delivery ---------------------------------------------------------------------


def execute(process: PoolProcess, task_id: str, payload: TaskPayload) -> dict[str, Any]:
    """Run one delivery of an attempt; returns the ``Outcome`` as a dict.

    Redis calls are grouped into pipelines: with ``appendfsync always`` every
    round trip that writes costs a disk flush.
    """
    keys, client, name = process.keys, process.redis, process.config.name
    expiry = process.config.settings.result_expires_s
    pipe = client.pipeline(transaction=False)
    pipe.exists(keys.done(task_id))
    pipe.get(keys.attempt(payload.job_id))
    pipe.exists(keys.cancel(payload.job_id))
    done, current, canceled = pipe.execute()
    if done:
        raise Ignore()  # already finished once; its outcome is stored
    if current is not None and current.decode() != str(payload.run):
        raise Ignore()  # a stale run: superseded, released or canceled
    if canceled:
        return _finish(process, task_id, payload, Outcome(CANCELED, worker=name))

    slot = BusySlot(
        task_id=task_id,
        job_id=payload.job_id,
        attempt=payload.attempt,
        device=process.device,
        pid=process.pid,
        since=time.time(),
        segment=_segment_index(payload),
    )
    pipe = client.pipeline()
    pipe.incr(keys.deliveries(task_id))
    pipe.expire(keys.deliveries(task_id), expiry)
    process.registry.slot_started(name, slot, pipe)
    deliveries = pipe.execute()[0]
    if deliveries > 1:
        outcome = Outcome.failure(
            WORKER_DIED,
            f"the worker process running this job on {name} died (killed or out of memory)",
            permanent=False,
            worker=name,
        )
        return _finish(process, task_id, payload, outcome)

    process.publish(
        _event(process, "started", task_id, payload, progress=JobProgress(stage="starting"))
    )
    token = CancelToken()
    watcher = CancelWatcher(process, payload, token)
    watcher.start()
    try:
        outcome = _run(process, task_id, payload, token)
    finally:
        watcher.stop()
    return _finish(process, task_id, payload, outcome)


def _run(process: PoolProcess, task_id: str, payload: TaskPayload, token: CancelToken) -> Outcome:
    name = process.config.name
    try:
        job_dir, output = process.storage.open(payload.job_dir, payload.output)
        ctx = TaskContext(
            job_id=payload.job_id,
            run=payload.run,
            attempt=payload.attempt,
            device=process.device,
            spec=JobSpec.from_dict(payload.spec),
            job_dir=job_dir,
            output=output,
            workdir=job_dir / "work",
            settings=dict(process.config.task_settings),
            state=process.state,
            progress=ProgressPublisher(process, task_id, payload),
            cancel=token,
            part=payload.part,
        )
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        result = process.kinds.get(payload.kind).fn(ctx) or {}
        if payload.kind == SEGMENT_KIND:
            # The segment's file, for the studio's join (kept in the job's work directory).
            file_key = f"{payload.job_dir}/work/{result['file']}"
            process.storage.publish(file_key, process.storage.path_for(file_key))
            result["key"] = file_key
        elif payload.part is None:
            process.storage.publish(payload.output, output)
    except SoftTimeLimitExceeded:
        limit = payload.time_limit or process.config.settings.job_time_limit_s
        return Outcome.failure(
            TIME_LIMIT,
            f"the job ran longer than its time limit of {limit:g} s and was stopped",
            permanent=False,
            worker=name,
        )
    except Canceled:
        return Outcome(CANCELED, worker=name)
    except Exception as exc:
        if token.canceled:
            return Outcome(CANCELED, worker=name)
        error = error_from_exception(exc)
        if error.code == "internal_error":
            log.exception("job %s failed on %s", payload.job_id, name)
        return Outcome.failure(error.code, error.message, error.permanent, worker=name)
    return Outcome(SUCCEEDED, result=dict(result), worker=name)


def _finish(
    process: PoolProcess, task_id: str, payload: TaskPayload, outcome: Outcome
) -> dict[str, Any]:
    """Mark the task done (a redelivered copy is then dropped) and free its slot."""
    try:
        pipe = process.redis.pipeline()
        pipe.set(
            process.keys.done(task_id), outcome.status, ex=process.config.settings.result_expires_s
        )
        process.registry.slot_finished(process.config.name, task_id, pipe)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not mark task %s done: %s", task_id, exc)
    process.publish(_event(process, "finished", task_id, payload, message=outcome.status))
    return outcome.to_dict()


def _event(
    process: PoolProcess, type_: str, task_id: str, payload: TaskPayload, **fields: Any
) -> WorkerEvent:
    return WorkerEvent(
        type=type_,
        task_id=task_id,
        job_id=payload.job_id,
        run=payload.run,
        worker=process.config.name,
        device=process.device,
        pid=process.pid,
        segment=_segment_index(payload),
        **fields,
    )


def _segment_index(payload: TaskPayload) -> int | None:
    segment = (payload.part or {}).get("segment")
    return None if segment is None else int(segment["index"])


class ProgressPublisher:
    """The progress callback a task gets: throttled, with a small preview now and then."""

    def __init__(self, process: PoolProcess, task_id: str, payload: TaskPayload) -> None:
        self.process = process
        self.task_id = task_id
        self.payload = payload
        config = process.config
        self.gate = ProgressGate(config.progress_interval, config.preview_interval, PREVIEW_QUALITY)

    def __call__(self, report: Progress) -> None:
        send, preview = self.gate.admit(report)
        if not send:
            return
        self.process.publish(
            _event(
                self.process,
                "progress",
                self.task_id,
                self.payload,
                progress=JobProgress.of(report),
                done=report.done,
                total=report.total,
                message=report.message,
                preview_jpeg=base64.b64encode(preview).decode("ascii") if preview else None,
            )
        )


class CancelWatcher:
    """Polls the job's cancel flag (and its current run) while the job runs, and trips
    the cancel token; the job stops at its next check and its pool process stays warm.
    The studio terminates the process only when this polite stop does not happen."""

    def __init__(self, process: PoolProcess, payload: TaskPayload, token: CancelToken) -> None:
        self.process = process
        self.payload = payload
        self.token = token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fusion-cancel", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        keys, client = self.process.keys, self.process.redis
        interval = self.process.config.cancel_poll_interval
        while not self._stop.wait(interval):
            try:
                pipe = client.pipeline()
                pipe.exists(keys.cancel(self.payload.job_id))
                pipe.get(keys.attempt(self.payload.job_id))
                canceled, current = pipe.execute()
            except redis.RedisError:
                continue  # the broker is restarting: keep running, check again
            if canceled or (current is not None and current.decode() != str(self.payload.run)):
                self.token.cancel()
                return
