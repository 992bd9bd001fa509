"""One JSON error shape for the whole API: ``{"error": {"code", "message"}}``.

Engine and scheduler errors already carry a stable ``code`` and a message a
person understands; this module decides the HTTP status for each, and answers
everything else the framework can raise (malformed requests, unknown routes,
wrong methods, unexpected exceptions) in the same shape. A message never
carries a Python repr (``<… object at 0x…>``) or a traceback.
"""

from __future__ import annotations

import http
import logging
import re
import secrets
import tempfile
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import EngineError, TransientError
from scheduler.errors import (
    InvalidTransition,
    JobNotFound,
    QueueFull,
    SchedulerError,
    SchedulerStopped,
)

log = logging.getLogger("studio.api")

MAX_MESSAGE = 1000
# The error codes of framework errors, by HTTP status.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    411: "length_required",
    413: "too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}
_REPR = re.compile(r"<[^<>\n]{0,200}? at 0x[0-9A-Fa-f]+>")


class ApiError(Exception):
    """An error the API answers with directly (auth, limits, missing results)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def not_found(what: str = "job") -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")


def method_not_allowed(allowed: list[str] | set[str]) -> ApiError:
    methods = ", ".join(sorted(allowed))
    return ApiError(
        405,
        "method_not_allowed",
        f"this endpoint answers only {methods}",
        {"Allow": methods},
    )


def safe_message(message: str) -> str:
    """``message`` without Python reprs, trimmed to a readable length."""
    text = _REPR.sub("a value", str(message))
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    return text


def without_server_paths(request: Request, message: str) -> str:
    """``message`` with the server's own directories (data, models, temporary files) named
    by a label instead: an engine message written for the operator's command line (e.g.
    where to put a model file) must not show a stranger the server's layout."""
    studio = getattr(request.app.state, "studio", None)
    places: list[tuple[object, str]] = [(tempfile.gettempdir(), "[temp dir]")]
    if studio is not None:
        places.append((getattr(studio.config, "data_dir", None), "[data dir]"))
        places.append(
            (getattr(getattr(studio, "models", None), "models_dir", None), "[models dir]")
        )
    replacements: dict[str, str] = {}
    for place, label in places:
        if not place:
            continue
        for form in {str(place), str(Path(str(place)).resolve())}:
            if len(form) > 1:
                replacements[form] = label
    for form in sorted(replacements, key=len, reverse=True):
        message = message.replace(form, replacements[form])
    return message


def http_code(status: int) -> str:
    return HTTP_CODES.get(status, "client_error" if status < 500 else "server_error")


def http_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": safe_message(message)}}


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def status_for(exc: Exception) -> int:
    """The HTTP status of an engine or scheduler error."""
    if isinstance(exc, QueueFull):
        return 429
    if isinstance(exc, JobNotFound):
        return 404
    if isinstance(exc, InvalidTransition):
        return 409
    if isinstance(exc, SchedulerStopped):
        return 503
    if isinstance(exc, TransientError):
        return 503
    if isinstance(exc, EngineError):
        return 422
    return 500


def validation_message(errors: list) -> str:
    """Pydantic's validation errors as one line: ``query.limit: Input should be …``.

    Only the location and pydantic's message are used, never the input (which may be
    an uploaded file object or a huge value)."""
    problems = []
    for item in errors:
        if not isinstance(item, dict):
            continue
        loc = item.get("loc") or ()
        if not isinstance(loc, list | tuple):
            loc = (loc,)
        where = ".".join(str(part) for part in loc if part != "body")
        msg = str(item.get("msg") or "invalid")
        problems.append(f"{where}: {msg}" if where else msg)
    return "; ".join(problems) or "invalid request"


def install_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on the API app, and the middleware that gives
    every other error answer (Gradio's, Starlette's) the same shape
    (``studio.error_shape``). Call it before adding other middleware: those added
    later wrap it, and answer their own errors in our shape already."""
    from studio.error_shape import ErrorShapeMiddleware

    app.add_middleware(ErrorShapeMiddleware)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        message = without_server_paths(request, exc.message)
        return error_response(exc.status, exc.code, message, exc.headers)

    @app.exception_handler(EngineError)
    async def _engine_error(request: Request, exc: EngineError):
        status = status_for(exc)
        headers = {"Retry-After": "5"} if status == 503 else None
        message = without_server_paths(request, exc.message)
        return error_response(status, exc.code, message, headers)

    @app.exception_handler(SchedulerError)
    async def _scheduler_error(request: Request, exc: SchedulerError):
        status = status_for(exc)
        headers = {"Retry-After": "5"} if status in (429, 503) else None
        message = without_server_paths(request, exc.message)
        return error_response(status, exc.code, message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        return error_response(422, "invalid_request", validation_message(exc.errors()))

    # Starlette's class, so that FastAPI's subclass and the framework's own (routing's
    # 404/405, a malformed multipart body's 400) all land here.
    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail else None
        message = detail or http_phrase(status)
        return error_response(status, http_code(status), message, exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Starlette's ServerErrorMiddleware re-raises after this answer, so the server's
        # log also gets the full traceback; the client only gets a reference to it.
        reference = secrets.token_hex(4)
        log.error(
            "internal error %s answering %s %s: %s",
            reference,
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return error_response(
            500,
            "internal_error",
            f"the server could not answer this request (error reference {reference})",
        )
