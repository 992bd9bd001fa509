"""Server-Sent Events: one job's progress, or all of one owner's jobs (the Queue view).

A stream starts with a snapshot, so a client that (re)connects never misses
the state it should be showing, then forwards the scheduler's events:
a status change as a full ``job`` object, progress as a small ``progress``
object. Comment lines keep idle connections open through proxies, and every
stream ends promptly when the server shuts down, so shutdown never waits on
open browsers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from scheduler.events import DELETED, PROGRESS, JobEvent, Subscription

KEEPALIVE_SECONDS = 15.0
POLL_SECONDS = 0.5
RETRY_MS = 1500

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


def format_event(event: str, data: Any, event_id: str | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    lines.extend(f"data: {line}" for line in payload.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()


class EventStream:
    """Turns a subscription into SSE bytes.

    ``snapshot`` yields the opening events; ``render`` turns one scheduler
    event into zero or more (name, data) pairs (it may look the job up);
    ``finished`` says when a single-job stream is done.
    """

    def __init__(
        self,
        subscription: Subscription,
        shutdown: asyncio.Event,
        snapshot: Callable[[], Awaitable[list[tuple[str, Any]]]],
        render: Callable[[JobEvent], Awaitable[list[tuple[str, Any]]]],
        finished: Callable[[str, Any], bool] = lambda _name, _data: False,
    ) -> None:
        self.subscription = subscription
        self.shutdown = shutdown
        self.snapshot = snapshot
        self.render = render
        self.finished = finished
        self.counter = 0

    def _next_id(self) -> str:
        self.counter += 1
        return str(self.counter)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            for name, data in await self.snapshot():
                yield format_event(name, data, self._next_id())
                if self.finished(name, data):
                    return
            last_sent = time.monotonic()
            while not self.shutdown.is_set():
                event = await self.subscription.get(timeout=POLL_SECONDS)
                if event is None:
                    if self.subscription.closed:
                        return
                    if time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
                        last_sent = time.monotonic()
                        yield b": keep-alive\n\n"
                    continue
                for name, data in await self.render(event):
                    last_sent = time.monotonic()
                    yield format_event(name, data, self._next_id())
                    if self.finished(name, data):
                        return
            yield format_event("shutdown", {"reconnect": True}, self._next_id())
        finally:
            self.subscription.close()


def is_progress(event: JobEvent) -> bool:
    return event.type == PROGRESS


def is_deleted(event: JobEvent) -> bool:
    return event.type == DELETED
