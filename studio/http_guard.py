"""Refuses DNS rebinding and cross-site requests before any route sees them.

* **Local names only** on a server bound to a loopback address (open local mode
  and any other loopback server without a share tunnel): a ``Host`` that is not
  the bound address, ``localhost``, a loopback address or the ``--public-url``
  host is refused. A web page on ``evil.example`` that rebinds its name to
  127.0.0.1 reaches the server with ``Host: evil.example`` and is turned away.
* **Same origin for browser writes**: a request that changes state (any method
  but GET, HEAD and OPTIONS) and is not authenticated by an API key (so by the
  browser's cookie, a login, or open local mode) is refused when its ``Origin``
  (or, without one, its ``Referer``) names another site. The studio's own page
  is same-origin (also behind a proxy that forwards its host, as Spaces do), so
  the UI keeps working; API clients that send ``Authorization: Bearer`` are not
  browsers and are unaffected.
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

from studio.errors import error_body
from studio.identity import bearer_token

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_name(host: str) -> str:
    """The name part of a ``Host`` header or URL netloc, lower-case, without port."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.rsplit(":", 1)[0]
    return host


def is_loopback_name(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL in lower case, or None when it has none."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class HostAndOriginGuard:
    """ASGI middleware; see the module docstring."""

    def __init__(
        self,
        app,
        bound_host: str,
        check_host: bool,
        public_url: str | None = None,
    ) -> None:
        self.app = app
        self.check_host = check_host
        self.allowed_names = {host_name(bound_host)}
        self.public_origin = origin_of(public_url) if public_url else None
        if public_url:
            self.allowed_names.add(host_name(urlsplit(public_url).netloc))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host", "")
        if self.check_host and not self.local_name(host):
            await send_error(
                send,
                403,
                "forbidden_host",
                "this server answers only to its own local address; "
                "start it with --public-url to serve another name",
            )
            return
        method = scope.get("method", "GET")
        if method not in SAFE_METHODS and bearer_token(headers.get("authorization")) is None:
            origin = headers.get("origin") or (
                origin_of(headers["referer"]) if headers.get("referer") else None
            )
            # Behind a proxy (a Hugging Face Space, a reverse proxy) the page's own origin is
            # the forwarded host. A page on another site cannot set that header on a
            # cross-site request without a CORS preflight, which this server never grants.
            hosts = [host, headers.get("x-forwarded-host", "").split(",")[0]]
            if origin is not None and not any(self.same_origin(origin, h) for h in hosts if h):
                await send_error(send, 403, "forbidden", "cross-site request refused")
                return
        await self.app(scope, receive, send)

    def local_name(self, host: str) -> bool:
        name = host_name(host)
        return bool(name) and (name in self.allowed_names or is_loopback_name(name))

    def same_origin(self, origin: str, host: str) -> bool:
        origin = origin.strip().lower()
        if origin == "null":
            return False
        if self.public_origin is not None and origin == self.public_origin:
            return True
        netloc = origin.split("://", 1)[-1].rstrip("/")
        return bool(host) and netloc == host.strip().lower()


def _headers(scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name = key.decode("latin-1").lower()
        if name not in headers:  # the first of repeated headers, as servers read them
            headers[name] = value.decode("latin-1")
    return headers


async def send_error(send, status: int, code: str, message: str) -> None:
    """Answer a raw ASGI request with our JSON error object."""
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
