"""In-process publish/subscribe of job events, for the UI, Server-Sent Events and webhooks.

Status changes are always delivered, in order. Progress is throttled per job
by a token bucket (``rate`` reports a second on average, at most ``BURST`` in
a row): a report that comes too soon is held and the newest held report is
delivered when its turn comes, so a subscriber always ends up seeing the
latest progress. The first report of a new stage is never held. Workers
report a little below ``rate`` (``scheduler.progress_gate``), so their reports
pass at once. A subscriber that does not keep up
loses old progress reports, never status changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from engine.progress import JobProgress
from scheduler.jobs import Job, JobError, JobStatus
from scheduler.progress_gate import EVENT_RATE

STATUS = "status"
PROGRESS = "progress"
DELETED = "deleted"


@dataclass(frozen=True)
class JobEvent:
    """One thing that happened to a job. ``preview`` is a small JPEG, now and then."""

    job_id: str
    owner: str
    type: str  # "status" | "progress" | "deleted"
    status: JobStatus | None = None
    progress: JobProgress | None = None
    preview: bytes | None = None
    error: JobError | None = None
    attempts: int | None = None
    at: float = field(default_factory=time.time)

    @classmethod
    def of_job(cls, job: Job, type: str = STATUS) -> JobEvent:
        return cls(
            job_id=job.id,
            owner=job.owner,
            type=type,
            status=job.status,
            progress=job.progress_record,
            error=job.error,
            attempts=job.attempts,
        )

    def to_dict(self) -> dict:
        """JSON-safe, without the preview bytes (send those separately)."""
        progress = self.progress or JobProgress()
        return {
            "job_id": self.job_id,
            "type": self.type,
            "status": str(self.status) if self.status else None,
            "progress": progress.fraction,
            "stage": progress.stage,
            "eta_seconds": progress.eta_seconds,
            "fps": progress.fps,
            "has_preview": self.preview is not None,
            "error": None
            if self.error is None
            else {"code": self.error.code, "message": self.error.message},
            "attempts": self.attempts,
            "at": self.at,
        }


class Subscription:
    """An async iterator of events for one subscriber; close it (or use ``async with``)."""

    def __init__(
        self, bus: EventBus, job_id: str | None, owner: str | None, max_pending: int
    ) -> None:
        self._bus = bus
        self.job_id = job_id
        self.owner = owner
        self._events: deque[JobEvent] = deque()
        self._max_pending = max_pending
        self._ready = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def matches(self, event: JobEvent) -> bool:
        if self.job_id is not None and event.job_id != self.job_id:
            return False
        return self.owner is None or event.owner == self.owner

    def _put(self, event: JobEvent) -> None:
        if len(self._events) >= self._max_pending:
            for index, old in enumerate(self._events):
                if old.type == PROGRESS:
                    del self._events[index]
                    self.dropped += 1
                    break
        self._events.append(event)
        self._ready.set()

    async def get(self, timeout: float | None = None) -> JobEvent | None:
        """The next event, or ``None`` after ``timeout`` seconds or once closed."""
        while not self._events:
            if self.closed:
                return None
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        return self._events.popleft()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._ready.set()
            self._bus._remove(self)

    def __aiter__(self) -> AsyncIterator[JobEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JobEvent]:
        while True:
            event = await self.get()
            if event is None:
                return
            yield event

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


BURST = 2.0


@dataclass
class _Throttle:
    stage: str | None = None
    tokens: float = BURST
    refilled: float = field(default_factory=time.monotonic)
    held: JobEvent | None = None
    timer: asyncio.TimerHandle | None = None

    def take(self, rate: float, now: float, force: bool = False) -> bool:
        """Spend a token if there is one (refilled at ``rate`` a second up to ``BURST``);
        ``force`` spends it anyway (a held report whose wait is over)."""
        self.tokens = min(BURST, self.tokens + (now - self.refilled) * rate)
        self.refilled = now
        if self.tokens >= 1.0 or force:
            self.tokens = max(0.0, self.tokens - 1.0)
            return True
        return False

    def wait(self, rate: float) -> float:
        """Seconds until the next token."""
        return max(0.0, (1.0 - self.tokens) / rate)


class EventBus:
    """Fan-out of job events to subscribers, with per-job progress throttling."""

    def __init__(self, rate: float = EVENT_RATE, max_pending: int = 1000) -> None:
        self.rate = rate
        self.max_pending = max_pending
        self._subscribers: list[Subscription] = []
        self._throttles: dict[str, _Throttle] = {}

    def subscribe(
        self, job_id: str | None = None, owner: str | None = None, max_pending: int | None = None
    ) -> Subscription:
        subscription = Subscription(self, job_id, owner, max_pending or self.max_pending)
        self._subscribers.append(subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, event: JobEvent) -> None:
        """Deliver now (status, deletion) or throttled (progress)."""
        if event.type != PROGRESS:
            throttle = self._throttles.pop(event.job_id, None)
            if throttle is not None and throttle.timer is not None:
                throttle.timer.cancel()
            self._deliver(event)
            return
        if self.rate <= 0:
            self._deliver(event)
            return
        throttle = self._throttles.setdefault(event.job_id, _Throttle())
        stage = event.progress.stage if event.progress else None
        new_stage = stage != throttle.stage
        throttle.stage = stage
        if new_stage:  # a few per job, and people watch for them: never held
            if throttle.timer is not None:
                throttle.timer.cancel()
                throttle.timer = None
            if throttle.held is not None and event.preview is None:
                event = replace(event, preview=throttle.held.preview)
            throttle.held = None
            throttle.take(self.rate, time.monotonic(), force=True)
            self._deliver(event)
            return
        if throttle.timer is None and throttle.take(self.rate, time.monotonic()):
            self._deliver(event)
            return
        if throttle.held is not None and event.preview is None and throttle.held.preview:
            event = replace(event, preview=throttle.held.preview)  # keep a pending preview
        throttle.held = event
        if throttle.timer is None:
            loop = asyncio.get_running_loop()
            throttle.timer = loop.call_later(throttle.wait(self.rate), self._flush, event.job_id)

    def _flush(self, job_id: str) -> None:
        throttle = self._throttles.get(job_id)
        if throttle is None:
            return
        throttle.timer = None
        if throttle.held is not None:
            event, throttle.held = throttle.held, None
            throttle.take(self.rate, time.monotonic(), force=True)  # its token is due
            self._deliver(event)

    def _deliver(self, event: JobEvent) -> None:
        for subscription in list(self._subscribers):
            if subscription.matches(event):
                subscription._put(event)

    def close(self) -> None:
        for throttle in self._throttles.values():
            if throttle.timer is not None:
                throttle.timer.cancel()
        self._throttles.clear()
        for subscription in list(self._subscribers):
            subscription.close()
