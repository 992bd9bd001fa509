"""Every error answer, whichever part of the server made it, carries our error object.

The REST API answers its own errors as ``{"error": {"code", "message"}}``
(``studio.errors``). Other parts of the one ASGI app do not: Gradio, mounted at
``/``, has its own exception handlers (``{"detail": …}`` JSON, or a plain-text
``Internal Server Error``), and so do Starlette's routing and static files.
This pure-ASGI middleware rewrites such 4xx/5xx answers into our error object,
keeping the status and the headers (``Allow``, ``Retry-After``,
``WWW-Authenticate``, cookies) and fixing ``Content-Length``.

It never touches successful answers, streams (``text/event-stream``), files, or
an error body that already has our shape. Outside ``/api/`` the original
``detail`` is kept next to ``error`` when it is a string or an object, because
Gradio's own browser client reads it (a validation message, a login prompt).
"""

from __future__ import annotations

import json
from typing import Any

from studio.errors import error_body, http_code, http_phrase, validation_message

MAX_REWRITE_BYTES = 64 * 1024
_REWRITTEN_TYPES = ("application/json", "text/plain")


class ErrorShapeMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") == "HEAD":  # HEAD: no body to shape
            await self.app(scope, receive, send)
            return
        api = scope.get("path", "").startswith("/api/")
        start: dict | None = None
        chunks: list[bytes] = []
        size = 0
        passing = False  # True once this response is sent on unchanged

        async def flush() -> None:
            nonlocal passing
            passing = True
            if start is not None:
                await send(start)
            if chunks:
                await send(
                    {"type": "http.response.body", "body": b"".join(chunks), "more_body": True}
                )
                chunks.clear()

        async def shaped_send(message) -> None:
            nonlocal start, size
            if passing:
                await send(message)
                return
            kind = message["type"]
            if kind == "http.response.start":
                status = message.get("status", 200)
                if status < 400 or not _rewritable(message.get("headers") or []):
                    await flush_start(message)
                    return
                start = message
                return
            if kind == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > MAX_REWRITE_BYTES:
                    await flush()
                    if not message.get("more_body", False):
                        await send({"type": "http.response.body", "body": b""})
                    return
                if message.get("more_body", False):
                    return
                await send_rewritten(start, b"".join(chunks))
                return
            await flush()
            await send(message)

        async def flush_start(message) -> None:
            nonlocal passing
            passing = True
            await send(message)

        async def send_rewritten(original: dict, body: bytes) -> None:
            nonlocal passing
            passing = True
            status = original.get("status", 500)
            shaped = _shape(status, original.get("headers") or [], body, api)
            if shaped is None:
                await send(original)
                await send({"type": "http.response.body", "body": body})
                return
            headers = [
                (name, value)
                for name, value in original.get("headers") or []
                if name.lower() not in (b"content-type", b"content-length")
            ]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(shaped)).encode()),
            ]
            await send({**original, "headers": headers})
            await send({"type": "http.response.body", "body": shaped})

        await self.app(scope, receive, shaped_send)


def _rewritable(headers) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            media = value.split(b";")[0].strip().lower().decode("latin-1")
            return media in _REWRITTEN_TYPES
    return True  # no content type: an empty or bare body


def _shape(status: int, headers, body: bytes, api: bool) -> bytes | None:
    """Our error object for an error body, or None when ``body`` already is one."""
    media = ""
    for name, value in headers:
        if name.lower() == b"content-type":
            media = value.split(b";")[0].strip().lower().decode("latin-1")
    detail: Any = None
    message = ""
    if media == "application/json":
        try:
            data = json.loads(body) if body else None
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            error = data.get("error")
            if isinstance(error, dict) and {"code", "message"} <= set(error):
                return None
            detail = data.get("detail")
            if isinstance(detail, str):
                message = detail
            elif isinstance(detail, list):
                message = validation_message(detail)
                detail = message
            elif isinstance(error, str):
                message = error
            elif isinstance(data.get("message"), str):
                message = data["message"]
    elif body:
        message = body.decode("utf-8", "replace").strip()
    if status >= 500:
        # A server error's text may be anything (a traceback in debug mode): never echo it.
        message = "the server could not answer this request"
    shaped = error_body(http_code(status), message or http_phrase(status))
    if not api and isinstance(detail, str | dict):
        shaped["detail"] = detail
    return json.dumps(shaped).encode()
