"""Job callbacks: Standard Webhooks signatures, a persistent outbox, and an SSRF guard.

* Signing follows https://www.standardwebhooks.com: headers ``webhook-id``,
  ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
  ``"{id}.{timestamp}.{body}"``, keyed with the base64 part of the owner's
  ``whsec_…`` secret. The id stays the same across retries so receivers can
  drop duplicates (delivery is at least once).
* The outbox is a table in the studio database: a delivery survives a restart
  and is retried with exponential backoff and jitter until it succeeds or runs
  out of attempts.
* A callback URL may only reach the public internet: its host is resolved
  once, every address is checked (no private, loopback, link-local, shared,
  multicast, reserved or cloud-metadata address), and the request connects to
  the checked address itself, with the original ``Host`` and TLS server name,
  so DNS cannot be switched between the check and the connection. Redirects
  are never followed. ``--webhook-allow`` names hosts or networks that are
  allowed anyway (for local testing).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from engine.errors import InvalidOptions
from studio.config import WebhookSettings
from studio.db import StudioDB

log = logging.getLogger("studio.webhooks")

USER_AGENT = "fusion-studio-webhooks/1"
RESOLVE_TIMEOUT = 3.0
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- signing --------------------------------------------------------------------------


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (its base64 part, decoded)."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one delivery attempt."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict:
    timestamp = int(now if now is not None else time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


# -- the SSRF guard ---------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """A checked callback URL and the address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: IpAddress

    @property
    def connect_url(self) -> str:
        """The URL with its host replaced by the checked address."""
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        path = parts.path or "/"
        return urlunsplit((parts.scheme, f"{host}:{self.port}", path, parts.query, ""))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def refusal(address: IpAddress) -> str | None:
    """Why an address may not be called back, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified or address.is_reserved or not address.is_global:
        return "a reserved or non-public address"
    return None


class WebhookGuard:
    """Checks callback URLs; ``allow`` lists hosts or CIDR networks exempt from the rules."""

    def __init__(self, allow: tuple[str, ...] = ()) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[str] = set()
        for entry in allow:
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry)

    def allowed(self, host: str, address: IpAddress) -> bool:
        return host.lower() in self.hosts or any(address in net for net in self.networks)

    async def check(self, url: str) -> Destination:
        """Resolve once and check every address; raises ``InvalidOptions`` naming the problem."""
        scheme, host, port = parse_callback_url(url)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = await resolve(host, port)
        for address in addresses:
            reason = None if self.allowed(host, address) else refusal(address)
            if reason:
                raise InvalidOptions(
                    f"callback_url host {host!r} resolves to {address}, {reason}; "
                    "callbacks may only go to public internet addresses"
                )
        return Destination(url=url, scheme=scheme, host=host, port=port, address=addresses[0])


def parse_callback_url(url: str) -> tuple[str, str, int]:
    if not isinstance(url, str) or len(url) > 2048:
        raise InvalidOptions("callback_url must be a URL string of at most 2048 characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidOptions(f"callback_url is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidOptions("callback_url must start with http:// or https://")
    if parts.username or parts.password:
        raise InvalidOptions("callback_url must not carry a user name or password")
    if not parts.hostname:
        raise InvalidOptions("callback_url has no host")
    if parts.fragment:
        raise InvalidOptions("callback_url must not have a #fragment")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[IpAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
        )
    except (TimeoutError, OSError) as exc:
        raise InvalidOptions(f"callback_url host {host!r} cannot be resolved ({exc})") from None
    addresses: list[IpAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise InvalidOptions(f"callback_url host {host!r} has no address")
    return addresses


# -- the outbox -------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    id: str
    job_id: str
    owner: str
    url: str
    event_type: str
    payload: str
    attempts: int


class Outbox:
    """Pending deliveries in the studio database."""

    def __init__(self, db: StudioDB) -> None:
        self.db = db

    def enqueue(
        self, job_id: str, owner: str, url: str, event_type: str, payload: dict, dedupe_key: str
    ) -> str | None:
        """Add a delivery; returns its id, or None when the same event was queued before."""
        msg_id = "msg_" + secrets.token_urlsafe(18)
        changed = self.db.execute(
            "INSERT OR IGNORE INTO webhook_outbox(id, job_id, owner, url, event_type, dedupe_key,"
            " payload, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                msg_id,
                job_id,
                owner,
                url,
                event_type,
                dedupe_key,
                json.dumps(payload, separators=(",", ":")),
                time.time(),
                time.time(),
            ),
        )
        return msg_id if changed else None

    def due(self, now: float, limit: int = 20) -> list[Delivery]:
        rows = self.db.query(
            "SELECT id, job_id, owner, url, event_type, payload, attempts FROM webhook_outbox "
            "WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (now, limit),
        )
        return [Delivery(*row) for row in rows]

    def next_due(self) -> float | None:
        rows = self.db.query(
            "SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE status = 'pending'"
        )
        return rows[0][0] if rows else None

    def record(
        self,
        msg_id: str,
        status: str,
        attempts: int,
        next_at: float,
        error: str | None,
        http_status: int | None,
    ) -> None:
        self.db.execute(
            "UPDATE webhook_outbox SET status = ?, attempts = ?, next_attempt_at = ?, "
            "last_error = ?, last_status = ?, delivered_at = CASE WHEN ? = 'delivered' "
            "THEN ? ELSE delivered_at END WHERE id = ?",
            (status, attempts, next_at, error, http_status, status, time.time(), msg_id),
        )

    def for_job(self, job_id: str) -> list[dict]:
        rows = self.db.query(
            "SELECT id, event_type, status, attempts, last_status, last_error, created_at, "
            "delivered_at FROM webhook_outbox WHERE job_id = ? ORDER BY created_at",
            (job_id,),
        )
        keys = ("id", "event_type", "status", "attempts", "last_status", "last_error")
        return [dict(zip((*keys, "created_at", "delivered_at"), row, strict=True)) for row in rows]

    def purge(self, before: float) -> int:
        return self.db.execute(
            "DELETE FROM webhook_outbox WHERE status != 'pending' AND created_at < ?", (before,)
        )


# -- delivery -------------------------------------------------------------------------


class WebhookWorker:
    """Delivers due outbox rows in the background; ``wake()`` after enqueueing."""

    def __init__(
        self,
        outbox: Outbox,
        guard: WebhookGuard,
        secret_for: Callable[[str], str],
        settings: WebhookSettings,
        on_result: Callable[[str, str], None] | None = None,
        concurrency: int = 4,
    ) -> None:
        self.outbox = outbox
        self.guard = guard
        self.secret_for = secret_for
        self.settings = settings
        self.on_result = on_result or (lambda _job, _outcome: None)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: set[str] = set()
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # a proxy would connect to the name, not the checked address
            timeout=self.settings.timeout_seconds,
            headers={"user-agent": USER_AGENT},
        )
        self._task = asyncio.create_task(self._run(), name="webhook-worker")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        pending: set[asyncio.Task] = set()
        while True:
            try:
                now = time.time()
                for delivery in await asyncio.to_thread(self.outbox.due, now):
                    if delivery.id in self._inflight:
                        continue
                    self._inflight.add(delivery.id)
                    task = asyncio.create_task(self._deliver(delivery))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                next_due = await asyncio.to_thread(self.outbox.next_due)
                wait = 5.0 if next_due is None else min(5.0, max(0.05, next_due - time.time()))
            except Exception:
                log.exception("webhook outbox poll failed")
                wait = 5.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _deliver(self, delivery: Delivery) -> None:
        extra = {"job_id": delivery.job_id, "webhook_id": delivery.id}
        try:
            async with self._slots:
                error, http_status = await self._attempt(delivery)
            attempts = delivery.attempts + 1
            if error is None:
                status, next_at, outcome = "delivered", time.time(), "delivered"
                log.info(
                    "webhook %s delivered (HTTP %s, attempt %d)",
                    delivery.event_type,
                    http_status,
                    attempts,
                    extra=extra,
                )
            elif attempts >= self.settings.max_attempts or http_status == 410:
                status, next_at, outcome = "failed", time.time(), "failed"
                log.warning(
                    "webhook %s gave up after %d attempts: %s",
                    delivery.event_type,
                    attempts,
                    error,
                    extra=extra,
                )
            else:
                delay = self.backoff(attempts)
                status, next_at, outcome = "pending", time.time() + delay, "retry"
                log.info(
                    "webhook %s attempt %d failed (%s); retry in %.1f s",
                    delivery.event_type,
                    attempts,
                    error,
                    delay,
                    extra=extra,
                )
            await asyncio.to_thread(
                self.outbox.record, delivery.id, status, attempts, next_at, error, http_status
            )
            self.on_result(delivery.job_id, outcome)
        finally:
            self._inflight.discard(delivery.id)
            self._wake.set()

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with ±20 % jitter, capped."""
        base = self.settings.retry_base_seconds * 2 ** (attempts - 1)
        return min(self.settings.retry_max_seconds, base) * random.uniform(0.8, 1.2)

    async def _attempt(self, delivery: Delivery) -> tuple[str | None, int | None]:
        """One POST; returns (error or None, HTTP status)."""
        assert self._client is not None
        try:
            destination = await self.guard.check(delivery.url)
        except InvalidOptions as exc:
            return exc.message, None
        body = delivery.payload.encode()
        headers = {
            "host": destination.host_header,
            "content-type": "application/json",
            **signed_headers(self.secret_for(delivery.owner), delivery.id, body),
        }
        extensions = {}
        if destination.scheme == "https":
            extensions["sni_hostname"] = destination.host
        try:
            response = await self._client.post(
                destination.connect_url, content=body, headers=headers, extensions=extensions
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", None
        if 200 <= response.status_code < 300:
            return None, response.status_code
        if 300 <= response.status_code < 400:
            return f"HTTP {response.status_code} redirect (redirects are not followed)", (
                response.status_code
            )
        return f"HTTP {response.status_code}", response.status_code
