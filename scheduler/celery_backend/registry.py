"""Worker announcements: which workers are alive, their devices and their busy slots.

Each worker keeps one JSON key in Redis (``Keys.worker(name)``) that expires
unless refreshed, so a machine that dies simply disappears after
``worker_ttl_s``. The pool process running a job writes its slot into the
worker's busy hash when the job starts and removes it when it ends; the
heartbeat drops entries of jobs the worker no longer runs (a pool process
killed mid-job cannot clean up after itself).

The studio reads these keys for its System panel and to notice that a worker
running one of its jobs has gone (the job is then retried as a new attempt).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import redis

from scheduler.celery_backend.keys import Keys

log = logging.getLogger(__name__)


@dataclass
class BusySlot:
    """One running job on a worker."""

    task_id: str
    job_id: str
    attempt: int
    device: str
    pid: int
    since: float
    segment: int | None = None


@dataclass
class WorkerInfo:
    """What a worker announces about itself."""

    name: str
    host: str
    pid: int
    devices: list[str]
    slots_per_device: int
    started_at: float
    seen_at: float = 0.0
    busy: list[BusySlot] = field(default_factory=list)

    @property
    def slots(self) -> int:
        return len(self.devices) * self.slots_per_device

    def busy_on(self, device: str) -> int:
        return sum(1 for slot in self.busy if slot.device == device)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerInfo:
        data = json.loads(text)
        data["busy"] = [BusySlot(**slot) for slot in data.get("busy", [])]
        return cls(**data)


def default_worker_name(devices: Iterable[str]) -> str:
    """``host-pid`` is unique per process; devices make it readable in the System panel."""
    joined = "+".join(device.replace(":", "") for device in devices)
    return f"{socket.gethostname()}-{os.getpid()}-{joined}"


class WorkerRegistry:
    """Reads and writes announcements in the coordination Redis."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl_s: float) -> None:
        self.client = client
        self.keys = keys
        self.ttl_ms = int(ttl_s * 1000)

    # -- worker side ----------------------------------------------------------------

    def announce(self, info: WorkerInfo) -> None:
        info.seen_at = time.time()
        info.busy = self.busy_slots(info.name)
        pipe = self.client.pipeline()
        pipe.set(self.keys.worker(info.name), info.to_json(), px=self.ttl_ms)
        pipe.sadd(self.keys.workers, info.name)
        pipe.pexpire(self.keys.worker_busy(info.name), self.ttl_ms)
        pipe.execute()

    def withdraw(self, name: str) -> None:
        """A worker that stops cleanly leaves at once instead of timing out."""
        pipe = self.client.pipeline()
        pipe.delete(self.keys.worker(name), self.keys.worker_busy(name))
        pipe.srem(self.keys.workers, name)
        pipe.execute()

    def slot_started(self, worker: str, slot: BusySlot, pipe=None) -> None:
        """Record a busy slot (added to ``pipe`` when given, to save a round trip)."""
        target = pipe if pipe is not None else self.client.pipeline()
        target.hset(self.keys.worker_busy(worker), slot.task_id, json.dumps(asdict(slot)))
        target.pexpire(self.keys.worker_busy(worker), self.ttl_ms)
        if pipe is None:
            target.execute()

    def slot_finished(self, worker: str, task_id: str, pipe=None) -> None:
        (pipe if pipe is not None else self.client).hdel(self.keys.worker_busy(worker), task_id)

    def prune_busy(self, worker: str, running_task_ids: set[str], grace_s: float) -> None:
        """Drop busy entries of tasks the worker's main process no longer runs.

        Entries younger than ``grace_s`` stay: a pool process may record its slot a
        moment before the main process has registered the task as active.
        """
        now = time.time()
        raw = self.client.hgetall(self.keys.worker_busy(worker))
        stale = [
            task_id
            for task_id, value in raw.items()
            if _text(task_id) not in running_task_ids
            and json.loads(value).get("since", 0) < now - grace_s
        ]
        if stale:
            self.client.hdel(self.keys.worker_busy(worker), *stale)

    def busy_slots(self, worker: str) -> list[BusySlot]:
        raw = self.client.hgetall(self.keys.worker_busy(worker))
        return [BusySlot(**json.loads(value)) for value in raw.values()]

    # -- studio side ----------------------------------------------------------------

    def workers(self) -> list[WorkerInfo]:
        """Live workers, sorted by name; forgets names whose announcement expired."""
        names = sorted(_text(name) for name in self.client.smembers(self.keys.workers))
        if not names:
            return []
        values = self.client.mget([self.keys.worker(name) for name in names])
        alive: list[WorkerInfo] = []
        gone: list[str] = []
        for name, value in zip(names, values, strict=True):
            if value is None:
                gone.append(name)
                continue
            info = WorkerInfo.from_json(value)
            info.busy = self.busy_slots(name)
            alive.append(info)
        if gone:
            self.client.srem(self.keys.workers, *gone)
        return alive

    def is_alive(self, name: str) -> bool:
        return bool(self.client.exists(self.keys.worker(name)))


class Heartbeat:
    """A daemon thread in the worker's main process that keeps its announcement fresh.

    ``running_task_ids`` returns the task ids the worker runs now (from Celery's
    worker state), to clean up slots of pool processes that died mid-job.
    """

    def __init__(
        self,
        registry: WorkerRegistry,
        info: WorkerInfo,
        interval_s: float,
        running_task_ids: Callable[[], set[str]] | None = None,
    ) -> None:
        self.registry = registry
        self.info = info
        self.interval_s = interval_s
        self.running_task_ids = running_task_ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fusion-heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self, withdraw: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s * 2)
        if withdraw:
            try:
                self.registry.withdraw(self.info.name)
            except redis.RedisError as exc:
                log.warning("could not withdraw worker announcement: %s", exc)

    def beat(self) -> None:
        if self.running_task_ids is not None:
            self.registry.prune_busy(
                self.info.name, self.running_task_ids(), grace_s=2 * self.interval_s
            )
        self.registry.announce(self.info)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except redis.RedisError as exc:  # broker restart: keep trying
                log.warning("heartbeat failed (will retry): %s", exc)
            except Exception:  # never let the heartbeat thread die silently
                log.exception("heartbeat failed")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
