"""Which visitor's Gradio request pays for a job's GPU calls.

ZeroGPU charges the visitor whose request (its ``X-IP-Token`` header) is in the
caller's context, so a job submitted from the web page keeps that request until
its token expires.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

VISITOR_TTL = 3600.0  # a captured request without an expiry is used for at most this long
TOKEN_MARGIN = 30.0  # a token that expires within this many seconds counts as expired


@dataclass(frozen=True)
class Visitor:
    """The Gradio request a job was submitted in, and when its ZeroGPU token expires."""

    request: Any  # gradio.Request
    token: str | None
    expires_at: float | None
    captured_at: float

    def fresh(self, now: float) -> bool:
        if self.expires_at is not None:
            return self.expires_at - TOKEN_MARGIN > now
        return now - self.captured_at < VISITOR_TTL


def token_expiry(token: str | None) -> float | None:
    """The ``exp`` of a JWT (the ``X-IP-Token`` ZeroGPU reads), or None."""
    if not token or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = data.get("exp") if isinstance(data, dict) else None
        return float(exp) if isinstance(exp, int | float) else None
    except (ValueError, TypeError):
        return None


def request_token(request: Any) -> str | None:
    headers = getattr(request, "headers", None)
    getter = getattr(headers, "get", None)
    return getter("x-ip-token") if callable(getter) else None


class Visitors:
    """Which visitor's request each web-page job belongs to (memory only, bounded)."""

    def __init__(self, size: int = 4096, clock: Callable[[], float] = time.time) -> None:
        self.size = size
        self.clock = clock
        self._items: OrderedDict[str, Visitor] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, job_id: str, request: Any) -> None:
        token = request_token(request)
        visitor = Visitor(request, token, token_expiry(token), self.clock())
        with self._lock:
            self._items[job_id] = visitor
            self._items.move_to_end(job_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, job_id: str) -> Visitor | None:
        """The job's visitor while their request can still pay for a call."""
        with self._lock:
            visitor = self._items.get(job_id)
            if visitor is not None and not visitor.fresh(self.clock()):
                del self._items[job_id]
                return None
            return visitor

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._items.pop(job_id, None)

    def __contains__(self, job_id: str) -> bool:
        return self.get(job_id) is not None


def current_gradio_request() -> Any:
    """The Gradio request of the event being handled in this context, if any."""
    try:
        from gradio.context import LocalContext
    except ImportError:
        return None
    return LocalContext.request.get(None)
