"""One JSON error shape for the whole API: ``{"error": {"code", "message"}}``.

Every deliberate error is a ``engine.errors.FusionError`` (engine, scheduler, or
this module's ``ApiError``) and carries its own ``code``, ``http_status``,
``message`` and headers: the handlers render it from those, with no table of
codes. This module also answers everything else the framework can raise
(malformed requests, unknown routes, wrong methods, unexpected exceptions) in the
same shape, through the ``ApiError`` class of that HTTP status. A message never
carries a Python repr (``<… object at 0x…>``) or a traceback.
"""

from __future__ import annotations

import http
import logging
import re
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import FusionError

log = logging.getLogger("studio.api")

MAX_MESSAGE = 1000
_REPR = re.compile(r"<[^<>\n]{0,200}? at 0x[0-9A-Fa-f]+>")


class ApiError(FusionError):
    """An error the API answers with directly (auth, limits, missing results).

    ``ApiError(status, code, message, headers)`` names its status and code itself;
    the subclasses below fix both as class attributes and take only the message
    (and headers). ``permanent`` (would the same request fail again?) is, unless
    given, true for a 4xx other than 429.
    """

    code = "bad_request"
    permanent = True
    http_status = 400

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        permanent: bool | None = None,
    ) -> None:
        super().__init__(message, headers)
        self.http_status = status
        self.code = code
        self.permanent = (status < 500 and status != 429) if permanent is None else permanent

    @property
    def status(self) -> int:
        """The HTTP status (``http_status``; the name callers used before the hierarchy)."""
        return self.http_status


class _Answer(ApiError):
    """An ``ApiError`` whose class declares its code, status and permanence."""

    def __init__(self, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(
            type(self).http_status, type(self).code, message, headers, permanent=self.permanent
        )


class BadRequest(_Answer):
    code, http_status = "bad_request", 400


class Unauthorized(_Answer):
    code, http_status = "unauthorized", 401


class Forbidden(_Answer):
    code, http_status = "forbidden", 403


class NotFound(_Answer):
    """No such route, job, batch or link (the same code as ``JobNotFound``)."""

    code, http_status = "not_found", 404


class MethodNotAllowed(_Answer):
    code, http_status = "method_not_allowed", 405


class NotAcceptable(_Answer):
    code, http_status = "not_acceptable", 406


class Conflict(_Answer):
    code, http_status = "conflict", 409


class NotReady(_Answer):
    """The job (or a job of the batch) has no result yet: ask again once it is done."""

    code, http_status, permanent = "not_ready", 409, False


class PriorityLimit(_Answer):
    """The job already has the highest (or lowest) priority."""

    code, http_status = "priority_limit", 409


class Gone(_Answer):
    code, http_status = "gone", 410


class LengthRequired(_Answer):
    code, http_status = "length_required", 411


class TooLarge(_Answer):
    """A request body larger than the route takes."""

    code, http_status = "too_large", 413


class UploadTooLarge(TooLarge):
    """Uploads larger than the server's limit per request: bad input, so 422."""

    http_status = 422


class UriTooLong(_Answer):
    code, http_status = "uri_too_long", 414


class UnsupportedMediaType(_Answer):
    code, http_status = "unsupported_media_type", 415


class InvalidRequest(_Answer):
    """A request the framework could not validate (parameters, body)."""

    code, http_status = "invalid_request", 422


class TooManyRequests(_Answer):
    code, http_status, permanent = "too_many_requests", 429, False
    retry_after = 5


class HeadersTooLarge(_Answer):
    code, http_status = "headers_too_large", 431


class InternalError(_Answer):
    """An unexpected failure; the message holds only a reference to the server's log."""

    code, http_status, permanent = "internal_error", 500, False


class BadGateway(_Answer):
    code, http_status, permanent = "bad_gateway", 502, False


class Unavailable(_Answer):
    """Not now (starting, stopping, a passing failure): retry later."""

    code, http_status, permanent = "unavailable", 503, False
    retry_after = 5


class GatewayTimeout(_Answer):
    code, http_status, permanent = "timeout", 504, False


# The class a framework error (one that has only a status) is answered as.
STATUS_ERRORS: tuple[type[ApiError], ...] = (
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    Conflict,
    Gone,
    LengthRequired,
    TooLarge,
    UriTooLong,
    UnsupportedMediaType,
    InvalidRequest,
    TooManyRequests,
    HeadersTooLarge,
    InternalError,
    BadGateway,
    Unavailable,
    GatewayTimeout,
)
_BY_STATUS = {cls.http_status: cls for cls in STATUS_ERRORS}
assert len(_BY_STATUS) == len(STATUS_ERRORS), "one class per status"


def http_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> ApiError:
    """The error of a framework answer that has only an HTTP status."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls(message, headers)
    return ApiError(status, http_code(status), message, headers)


def http_code(status: int) -> str:
    """The code of an answer that has only an HTTP status (its class's, if it has one)."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls.code
    return "client_error" if status < 500 else "server_error"


def not_found(what: str = "job") -> ApiError:
    return NotFound(f"no such {what}")


def method_not_allowed(allowed: list[str] | set[str]) -> ApiError:
    methods = ", ".join(sorted(allowed))
    return MethodNotAllowed(f"this endpoint answers only {methods}", {"Allow": methods})


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


def http_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": safe_message(message)}}


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def render(request: Request, exc: FusionError) -> JSONResponse:
    """The answer to any ``FusionError``: its own status, code, message and headers.

    The message loses the server's directories (``without_server_paths``) and any
    Python repr (``safe_message``)."""
    message = without_server_paths(request, exc.message)
    return error_response(exc.http_status, exc.code, message, exc.headers or None)


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

    @app.exception_handler(FusionError)
    async def _fusion_error(request: Request, exc: FusionError):
        return render(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return render(request, InvalidRequest(validation_message(exc.errors())))

    # Starlette's class, so that FastAPI's subclass and the framework's own (routing's
    # 404/405, a malformed multipart body's 400) all land here.
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail else None
        return render(request, http_error(status, detail or http_phrase(status), exc.headers))

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
        message = f"the server could not answer this request (error reference {reference})"
        return render(request, InternalError(message))
