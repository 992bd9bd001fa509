"""``CeleryExecutor``: the studio sends attempts to Celery workers instead of local processes.

The dispatcher, the SQLite store, leases, retries and events stay exactly as
with ``LocalExecutor``: the store is the record of every job, Celery only
carries execution. For each attempt the executor

1. records the job's current run in Redis (workers drop deliveries of other
   runs) and sends a task whose id is derived from job id and run
   (``<job>.r<run>``), so a resend of the same run is the same task. The
   parts of a video the dispatcher split (``scheduler.split``: the
   whole-video stage, then the segments) arrive here as attempts of their
   own (``<job>~<part>``) and go out as tasks like any other; a finished
   segment's file is collected into the job's work directory for the join;
2. turns what comes back into ``ExecutorEvent``s: live progress, stage and
   previews from the workers' pub/sub channel, the outcome from Celery's
   result backend (polled, and looked up at once when a worker announces the
   end). Pub/sub may drop messages (a Redis restart); the result backend does
   not, so no outcome is missed;
3. watches the workers running it: a worker whose announcement expires (the
   machine died, the whole node was SIGKILLed) ends the attempt with a
   transient ``worker_died`` failure, which the dispatcher retries as a new
   run. The orphaned message comes back only after the visibility timeout
   and is then dropped as stale;
4. checks now and then that every task it waits for still exists somewhere
   (queued, reserved, started or finished) and sends a lost one again, so a
   Redis that lost its data cannot strand a job.

Cancel: a task still waiting in the broker is revoked (workers skip revoked
ids) and the job is flagged in Redis (which also covers workers that start it
later or restarted and forgot the revoke). A running task first gets the
polite stop: the flag trips its cancel token on the worker, which stops at
the next frame, removes partial files and keeps the pool process with its
warm models. If it has not ended after ``grace`` seconds (a call stuck in
native code), it is terminated: ``revoke(terminate=True, signal=SIGKILL)``
kills the pool process running it (prefork pool). SIGKILL because the polite
request was already ignored and only SIGKILL is sure to free the GPU at once;
Celery replaces the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis

import scheduler.executor as ex
from engine.errors import EngineError
from engine.progress import JobProgress
from scheduler.celery_backend.app import TASK_NAME, CelerySettings, create_app
from scheduler.celery_backend.keys import task_id_for
from scheduler.celery_backend.messages import (
    CANCELED,
    SUCCEEDED,
    Outcome,
    TaskPayload,
    WorkerEvent,
)
from scheduler.celery_backend.registry import WorkerInfo, WorkerRegistry
from scheduler.celery_backend.storage import JobStorage, SharedDirectoryStorage
from scheduler.executor import Attempt, Executor, ExecutorEvent
from scheduler.jobs import JobError
from scheduler.retry import INTERNAL, TIME_LIMIT, WORKER_DIED

log = logging.getLogger(__name__)

BROKER_UNAVAILABLE = "broker_unavailable"
WAITING_STAGE = "waiting for a worker"
READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
TERMINATE_SIGNAL = "SIGKILL"


@dataclass
class _Part:
    """The Celery task of an attempt."""

    task_id: str
    started: bool = False
    worker: str | None = None
    pid: int | None = None
    outcome: ExecutorEvent | None = None  # SUCCEEDED / FAILED / CANCELED of this part
    terminate_at: float | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    sent_at: float = 0.0
    missing: int = 0  # consecutive checks that found its message nowhere in the broker


@dataclass
class _Flight:
    attempt: Attempt
    parts: dict[str, _Part] = field(default_factory=dict)
    output_key: str = ""
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    ending: str | None = None  # why we are ending it: "canceled" | "released"
    finished: bool = False

    @property
    def started(self) -> bool:
        return any(part.started for part in self.parts.values())

    def emit(self, event: ExecutorEvent) -> None:
        if not self.finished:
            self.events.put_nowait(event)

    def finish(self, event: ExecutorEvent) -> None:
        if self.finished:
            return
        self.finished = True
        self.events.put_nowait(event)


class CeleryExecutor(Executor):
    """Runs attempts on Celery workers (see the module docstring)."""

    def __init__(
        self,
        settings: CelerySettings,
        data_dir: Path,
        *,
        storage: JobStorage | None = None,
        poll_interval: float = 0.5,
        terminate_wait: float = 5.0,
        lost_check_s: float = 15.0,
    ) -> None:
        self.settings = settings
        self.keys = settings.keys
        self.storage = storage or SharedDirectoryStorage(Path(data_dir))
        self.poll_interval = poll_interval
        self.terminate_wait = terminate_wait
        self.lost_check_s = lost_check_s
        self.app = create_app(settings)
        self._flights: dict[str, _Flight] = {}  # by job id
        self._by_task: dict[str, tuple[_Flight, _Part]] = {}
        self._redis: aioredis.Redis | None = None
        self._registry: WorkerRegistry | None = None
        self._background: list[asyncio.Task] = []
        self._side_tasks: set[asyncio.Task] = set()
        # Sends go out one at a time, in the order the dispatcher claimed the jobs
        # (priority, owner round robin, age): the broker's queue keeps that order.
        self._send_order = asyncio.Lock()
        self._wake = asyncio.Event()
        self._healthy_since: float | None = None
        self._last_liveness = 0.0
        self._last_lost_check = time.monotonic()
        self._snapshot: dict[str, Any] = {"backend": "celery", "workers": []}
        self._workers: list[WorkerInfo] = []

    # -- life cycle -------------------------------------------------------------------

    async def start(self, slots: Mapping[str, int]) -> None:
        """``slots`` bound how many attempts the dispatcher keeps in Celery at once
        (running or waiting in the broker); the workers' own slots bound what runs."""
        self._redis = aioredis.Redis.from_url(
            self.settings.redis_url,
            socket_keepalive=True,
            socket_connect_timeout=5,
            health_check_interval=10,
        )
        sync_client = redis.Redis.from_url(
            self.settings.redis_url,
            socket_keepalive=True,
            socket_connect_timeout=5,
            socket_timeout=10,
        )
        self._registry = WorkerRegistry(sync_client, self.keys, self.settings.worker_ttl_s)
        self._healthy_since = time.monotonic()
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self._listen(), name="celery-events"),
            loop.create_task(self._monitor(), name="celery-monitor"),
        ]

    async def stop(self) -> None:
        """Running attempts end with ``released``; their remote tasks are stopped, since
        the job goes back to the queue and will run again as a new run."""
        for flight in list(self._flights.values()):
            await self._release(flight)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background = []
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._registry is not None:
            self._registry.client.close()
        await asyncio.to_thread(self.app.close)

    # -- running attempts -------------------------------------------------------------

    async def run(self, attempt: Attempt) -> AsyncIterator[ExecutorEvent]:
        flight = _Flight(attempt)
        self._flights[attempt.job_id] = flight
        try:
            try:
                await self._send(flight)
            except EngineError as exc:
                yield self._failed(attempt, JobError(exc.code, exc.message, exc.permanent))
                return
            except Exception as exc:
                log.warning("could not send job %s to the broker: %s", attempt.job_id, exc)
                error = JobError(
                    BROKER_UNAVAILABLE,
                    f"the job could not be handed to the workers' broker ({exc})",
                    permanent=False,
                )
                yield self._failed(attempt, error)
                return
            yield self._progress(attempt, 0.0, WAITING_STAGE)
            while True:
                event = await flight.events.get()
                yield event
                if event.terminal:
                    return
        finally:
            if self._flights.get(attempt.job_id) is flight:
                del self._flights[attempt.job_id]
            for task_id in flight.parts:
                self._by_task.pop(task_id, None)
            if not flight.finished:  # the consumer went away: nobody will take the result
                flight.finished = True
                with contextlib.suppress(RuntimeError):
                    task = asyncio.get_running_loop().create_task(self._stop_remote(flight))
                    self._side_tasks.add(task)
                    task.add_done_callback(self._side_tasks.discard)

    async def _send(self, flight: _Flight) -> None:
        async with self._send_order:  # waiters are served first come, first served
            await self._send_in_order(flight)

    async def _send_in_order(self, flight: _Flight) -> None:
        attempt = flight.attempt
        job_dir = Path(attempt.job_dir)
        job_dir_key, flight.output_key = self.storage.export(job_dir, Path(attempt.output))
        hard = self.settings.job_time_limit_s
        if attempt.time_limit:
            # The broker's visibility timeout was sized from the configured maximum,
            # so no job may run longer than that.
            hard = min(float(attempt.time_limit), hard)
        soft = max(hard * 0.5, hard - self.settings.soft_margin_s)
        base = TaskPayload(
            job_id=attempt.job_id,
            run=attempt.run,
            attempt=attempt.attempt,
            kind=attempt.kind,
            spec=attempt.spec,
            job_dir=job_dir_key,
            output=flight.output_key,
            time_limit=hard,
            part=attempt.part,
        )
        part = _Part(task_id_for(attempt.job_id, attempt.run))
        flight.parts[part.task_id] = part
        self._by_task[part.task_id] = (flight, part)
        client = self._client()
        expiry = self.settings.result_expires_s
        pipe = client.pipeline()
        pipe.set(self.keys.attempt(attempt.job_id), str(attempt.run), ex=expiry)
        pipe.delete(self.keys.cancel(attempt.job_id))  # a retried job starts unflagged
        await pipe.execute()
        part.payload = {"args": [base.to_dict()], "time_limit": hard, "soft_time_limit": soft}
        await self._publish(part)

    async def _publish(self, part: _Part) -> None:
        part.sent_at = time.monotonic()
        await asyncio.to_thread(
            self.app.send_task,
            TASK_NAME,
            args=part.payload["args"],
            task_id=part.task_id,
            queue=self.settings.queue,
            time_limit=part.payload["time_limit"],
            soft_time_limit=part.payload["soft_time_limit"],
        )

    async def cancel(self, job_id: str, grace: float = 2.0) -> None:
        flight = self._flights.get(job_id)
        if flight is None or flight.finished:
            return
        flight.ending = flight.ending or "canceled"
        try:
            await self._client().set(
                self.keys.cancel(job_id), "1", ex=self.settings.result_expires_s
            )
        except redis.RedisError as exc:
            log.warning("could not flag job %s as canceled: %s", job_id, exc)
        running = []
        for part in flight.parts.values():
            if part.outcome is not None:
                continue
            if part.started:
                running.append(part)
            else:
                # Still in the broker: workers skip a revoked id, and the flag covers a
                # worker that starts it later or restarted (revokes live in memory).
                await self._revoke(part.task_id, terminate=False)
                part.outcome = self._ending_event(flight)
        if not running:
            flight.finish(self._ending_event(flight))
            return
        for part in running:
            if grace <= 0:
                await self._terminate(flight, part)
            else:
                part.terminate_at = time.monotonic() + grace
        self._wake.set()

    async def _terminate(self, flight: _Flight, part: _Part) -> None:
        """Kill the pool process running a part; the attempt ends when the worker confirms
        (REVOKED) or after ``terminate_wait`` seconds, whichever comes first."""
        part.terminate_at = None
        await self._revoke(part.task_id, terminate=True)
        loop = asyncio.get_running_loop()
        loop.call_later(self.terminate_wait, self._end_unconfirmed, flight)
        self._wake.set()

    def _end_unconfirmed(self, flight: _Flight) -> None:
        if not flight.finished:
            log.warning("job %s was not confirmed terminated; ending it", flight.attempt.job_id)
            flight.finish(self._ending_event(flight))

    async def _revoke(self, task_id: str, terminate: bool) -> None:
        try:
            await asyncio.to_thread(
                self.app.control.revoke, task_id, terminate=terminate, signal=TERMINATE_SIGNAL
            )
        except Exception as exc:  # the flag in Redis still stops it
            log.warning("could not revoke task %s: %s", task_id, exc)

    async def _release(self, flight: _Flight) -> None:
        flight.ending = "released"
        await self._stop_remote(flight)
        flight.finish(self._ending_event(flight))

    async def _stop_remote(self, flight: _Flight, keep: _Part | None = None) -> None:
        """Make every copy of this run stale and stop its tasks wherever they run."""
        with contextlib.suppress(redis.RedisError, RuntimeError):
            await self._client().set(
                self.keys.attempt(flight.attempt.job_id),
                f"released:{flight.attempt.run}",
                ex=self.settings.result_expires_s,
            )
        for part in flight.parts.values():
            if part is not keep and part.outcome is None:
                await self._revoke(part.task_id, terminate=part.started)

    # -- events from workers ----------------------------------------------------------

    async def _listen(self) -> None:
        """Live events over pub/sub; reconnects for ever (a broker restart is normal)."""
        backoff = 0.2
        while True:
            pubsub = None
            try:
                pubsub = self._client().pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.keys.events_channel)
                backoff = 0.2
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._on_event(message["data"])
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                self._healthy_since = None
                log.warning("lost the workers' event channel (%s); reconnecting", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("event listener failed; restarting it")
                await asyncio.sleep(1.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

    def _on_event(self, data: bytes | str) -> None:
        try:
            event = WorkerEvent.from_json(data)
        except (ValueError, TypeError):
            return
        found = self._by_task.get(event.task_id)
        if found is None:
            return
        flight, part = found
        if flight.finished or event.run != flight.attempt.run or part.outcome is not None:
            return
        if event.type == "started":
            first = not flight.started
            self._mark_started(part, event.worker, event.pid)
            if first:
                stage = event.progress.stage if event.progress else None
                flight.emit(self._progress(flight.attempt, 0.0, stage or "starting"))
        elif event.type == "progress":
            flight.emit(self._progress_event(flight, part, event))
        elif event.type == "finished":
            self._wake.set()  # fetch the outcome now rather than at the next poll

    def _progress_event(self, flight: _Flight, part: _Part, event: WorkerEvent) -> ExecutorEvent:
        attempt = flight.attempt
        return ExecutorEvent(
            attempt.job_id,
            attempt.run,
            ex.PROGRESS,
            progress=event.progress or JobProgress(),
            preview=event.preview,
        )

    @staticmethod
    def _mark_started(part: _Part, worker: str | None, pid: int | None) -> None:
        part.started = True
        part.worker = worker or part.worker
        part.pid = pid or part.pid

    # -- outcomes, lost workers, overdue terminations ---------------------------------

    async def _monitor(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            self._wake.clear()
            try:
                await self._poll_results()
                await self._check_terminations()
                if time.monotonic() - self._last_liveness >= self.settings.heartbeat_s:
                    self._last_liveness = time.monotonic()
                    await self._check_workers()
                if time.monotonic() - self._last_lost_check >= self.lost_check_s:
                    self._last_lost_check = time.monotonic()
                    await self._check_lost_messages()
                if self._healthy_since is None:
                    self._healthy_since = time.monotonic()
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                self._healthy_since = None
                log.warning("cannot reach Redis (%s); retrying", exc)
            except Exception:
                log.exception("the Celery monitor failed; retrying")

    async def _poll_results(self) -> None:
        pending = [(f, p) for f, p in self._by_task.values() if not f.finished and not p.outcome]
        if not pending:
            return
        keys = [self.app.backend.get_key_for_task(part.task_id) for _, part in pending]
        values = await self._client().mget(keys)
        for (flight, part), value in zip(pending, values, strict=True):
            if value is None or flight.finished:
                continue
            meta = json.loads(value)
            status = meta.get("status")
            if status == "STARTED" and not part.started:
                info = meta.get("result") or {}
                first = not flight.started
                self._mark_started(part, info.get("hostname"), info.get("pid"))
                if first:
                    flight.emit(self._progress(flight.attempt, 0.0, "starting"))
            elif status in READY_STATES:
                part.outcome = self._part_outcome(flight, status, meta.get("result"))
                await self._part_ended(flight, part)

    def _part_outcome(self, flight: _Flight, status: str, result: Any) -> ExecutorEvent:
        attempt = flight.attempt
        if status == "REVOKED":
            return self._ending_event(flight)
        if status == "FAILURE":
            exc_type = result.get("exc_type", "") if isinstance(result, dict) else ""
            return self._failed(attempt, _celery_failure(exc_type, result))
        outcome = Outcome.from_dict(result)
        if outcome.status == SUCCEEDED:
            return ExecutorEvent(attempt.job_id, attempt.run, ex.SUCCEEDED, result=outcome.result)
        if outcome.status == CANCELED:
            return ExecutorEvent(attempt.job_id, attempt.run, ex.CANCELED)
        error = JobError(
            outcome.code or INTERNAL, outcome.message or "the job failed", outcome.permanent
        )
        return self._failed(attempt, error)

    async def _part_ended(self, flight: _Flight, part: _Part) -> None:
        """The task ended, and the attempt with it (its files collected on success)."""
        outcome = part.outcome
        assert outcome is not None
        if outcome.type != ex.SUCCEEDED:
            flight.finish(outcome)
            return
        if part.worker:  # which machine made it (a split job's history names it)
            outcome = dataclasses.replace(
                outcome, result={**(outcome.result or {}), "worker": part.worker}
            )
        flight.finish(await self._collected(flight, outcome))

    async def _collected(self, flight: _Flight, outcome: ExecutorEvent) -> ExecutorEvent:
        """Make what the task wrote present here: the output of a whole job, or the
        file of a segment (into the job's work directory, where the join reads it)."""
        attempt = flight.attempt
        result = outcome.result or {}
        try:
            if attempt.part is None:
                await asyncio.to_thread(
                    self.storage.collect, flight.output_key, Path(attempt.output)
                )
            elif "key" in result:
                local = Path(attempt.job_dir) / "work" / str(result["file"])
                await asyncio.to_thread(self.storage.collect, str(result["key"]), local)
        except EngineError as exc:
            return self._failed(attempt, JobError(exc.code, exc.message, permanent=False))
        return outcome

    async def _check_terminations(self) -> None:
        now = time.monotonic()
        for flight, part in list(self._by_task.values()):
            due = part.terminate_at is not None and now >= part.terminate_at
            if due and not flight.finished and part.outcome is None:
                await self._terminate(flight, part)

    async def _check_workers(self) -> None:
        assert self._registry is not None
        self._workers = await asyncio.to_thread(self._registry.workers)
        depth = await asyncio.to_thread(self.queue_depth)
        alive = {worker.name for worker in self._workers}
        self._snapshot = self._describe(depth)
        healthy_for = (
            time.monotonic() - self._healthy_since if self._healthy_since is not None else 0.0
        )
        if healthy_for < self.settings.worker_ttl_s:
            return  # announcements may have lapsed while Redis was unreachable
        for flight, part in list(self._by_task.values()):
            if flight.finished or part.outcome is not None or not part.started:
                continue
            if part.worker is None or part.worker in alive:
                continue
            await self._poll_results()  # a result stored just before the worker left counts
            if flight.finished or part.outcome is not None:
                continue
            log.warning(
                "worker %s running job %s stopped announcing itself; retrying the job",
                part.worker,
                flight.attempt.job_id,
            )
            error = JobError(
                WORKER_DIED,
                f"the worker {part.worker} running this job stopped responding "
                "(machine down, killed or out of memory)",
                permanent=False,
            )
            part.outcome = self._failed(flight.attempt, error)
            await self._stop_remote(flight)
            flight.finish(part.outcome)

    async def _check_lost_messages(self) -> None:
        """Send again a task whose message is nowhere: not waiting in the broker, not
        reserved by a worker, not started, no outcome. Only a Redis that lost data (no
        AOF, a lost volume) does that; without this check its job would wait for ever.
        Two checks in a row must agree (a message moves between list and reserved set
        in two steps); a copy that turns up anyway is dropped by the workers' guards."""
        if self._healthy_since is None:
            return
        waiting = [
            (flight, part)
            for flight, part in self._by_task.values()
            if not flight.finished
            and part.outcome is None
            and not part.started
            and time.monotonic() - part.sent_at >= self.lost_check_s
        ]
        if not waiting:
            return
        present = await asyncio.to_thread(self._broker_task_ids)
        if present is None:
            return
        keys = [self.app.backend.get_key_for_task(part.task_id) for _, part in waiting]
        metas = await self._client().mget(keys)
        for (flight, part), meta in zip(waiting, metas, strict=True):
            if part.task_id in present or meta is not None:
                part.missing = 0
                continue
            part.missing += 1
            if part.missing >= 2 and not flight.finished:
                log.warning(
                    "the broker lost task %s of job %s (Redis data loss?); sending it again",
                    part.task_id,
                    flight.attempt.job_id,
                )
                part.missing = 0
                await self._client().set(
                    self.keys.attempt(flight.attempt.job_id),
                    str(flight.attempt.run),
                    ex=self.settings.result_expires_s,
                )
                await self._publish(part)

    def _broker_task_ids(self) -> set[str] | None:
        """Ids of the tasks a Redis broker holds, waiting or reserved; None if unknown
        (RabbitMQ, or kombu internals not as expected)."""
        if not self.settings.broker_is_redis:
            return None
        try:
            with self.app.connection_for_read() as connection:
                channel = connection.default_channel
                client = channel.client
                names = [
                    channel._q_for_pri(self.settings.queue, step) for step in channel.priority_steps
                ]
                ids: set[str] = set()
                for name in names:
                    for raw in client.lrange(name, 0, -1):
                        ids.add(_message_id(json.loads(raw)))
                for raw in client.hvals(channel.unacked_key):
                    ids.add(_message_id(json.loads(raw)[0]))
                return ids
        except Exception as exc:
            log.debug("cannot list the broker's tasks: %s", exc)
            return None

    # -- operators --------------------------------------------------------------------

    def queue_depth(self) -> int | None:
        """Messages waiting in the broker queue (Redis or RabbitMQ); None if unknown."""
        try:
            with self.app.connection_for_read() as connection:
                channel = connection.default_channel
                if hasattr(channel, "_size"):  # kombu's virtual transports (Redis)
                    return int(channel._size(self.settings.queue))
                declared = channel.queue_declare(queue=self.settings.queue, passive=True)
                return int(declared.message_count)
        except Exception as exc:
            log.debug("queue depth unavailable: %s", exc)
            return None

    def workers(self) -> list[WorkerInfo]:
        """Live workers as last seen (refreshed every heartbeat)."""
        return list(self._workers)

    def describe(self) -> dict[str, Any]:
        """Workers and queue depth as of the last heartbeat; this studio's attempts now."""
        flights = [f for f in self._flights.values() if not f.finished]
        return {
            **self._snapshot,
            "waiting": sum(1 for f in flights if not f.started),
            "running": sum(1 for f in flights if f.started),
        }

    def _describe(self, depth: int | None) -> dict[str, Any]:
        return {
            "backend": "celery",
            "broker": redact_url(self.settings.broker_url),
            "queue": self.settings.queue,
            "queue_depth": depth,
            "workers": [
                {
                    "name": worker.name,
                    "host": worker.host,
                    "pid": worker.pid,
                    "seen_at": worker.seen_at,
                    "slots": worker.slots,
                    "busy": len(worker.busy),
                    "devices": [
                        {
                            "device": device,
                            "slots": worker.slots_per_device,
                            "busy": worker.busy_on(device),
                        }
                        for device in worker.devices
                    ],
                    "jobs": [slot.job_id for slot in worker.busy],
                }
                for worker in self._workers
            ],
        }

    def worker_of(self, job_id: str) -> tuple[str | None, int | None]:
        """Worker name and pool process id of a started task of ``job_id`` (for
        operators and tests)."""
        flight = self._flights.get(job_id)
        for part in flight.parts.values() if flight else ():
            if part.started:
                return part.worker, part.pid
        return None, None

    # -- helpers ----------------------------------------------------------------------

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("the Celery executor is not started")
        return self._redis

    @staticmethod
    def _progress(attempt: Attempt, fraction: float | None, stage: str) -> ExecutorEvent:
        return ExecutorEvent(
            attempt.job_id, attempt.run, ex.PROGRESS, progress=JobProgress(fraction, stage)
        )

    @staticmethod
    def _failed(attempt: Attempt, error: JobError) -> ExecutorEvent:
        return ExecutorEvent(attempt.job_id, attempt.run, ex.FAILED, error=error)

    @staticmethod
    def _ending_event(flight: _Flight) -> ExecutorEvent:
        attempt = flight.attempt
        kind = ex.RELEASED if flight.ending == "released" else ex.CANCELED
        return ExecutorEvent(attempt.job_id, attempt.run, kind)


def _celery_failure(exc_type: str, result: Any) -> JobError:
    """A Celery FAILURE comes from outside the job: map it to a transient error."""
    if exc_type == "TimeLimitExceeded":
        return JobError(
            TIME_LIMIT,
            "the job ran longer than its time limit and its worker process was killed",
            permanent=False,
        )
    if exc_type == "WorkerLostError":
        return JobError(WORKER_DIED, "the worker process running this job died", permanent=False)
    detail = ""
    if isinstance(result, dict):
        message = result.get("exc_message")
        parts = message if isinstance(message, list) else [message or ""]
        detail = " ".join(str(part) for part in parts)
    return JobError(INTERNAL, f"the worker failed ({exc_type or 'unknown'}: {detail})", False)


def _message_id(message: Any) -> str:
    """The task id in a Celery (protocol 2) message as kombu stores it in Redis."""
    if isinstance(message, dict):
        return str((message.get("headers") or {}).get("id", ""))
    return ""


def redact_url(url: str) -> str:
    """A broker URL without its password, for status pages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
