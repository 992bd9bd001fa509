"""One JSON error shape for the whole API: ``{"error": {"code", "message"}}``.

Engine and scheduler errors already carry a stable ``code`` and a message a
person understands; this module only decides the HTTP status for each.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from engine.errors import EngineError, TransientError
from scheduler.errors import (
    InvalidTransition,
    JobNotFound,
    QueueFull,
    SchedulerError,
    SchedulerStopped,
)

log = logging.getLogger("studio.api")


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


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


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


def install_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on the API app."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(EngineError)
    async def _engine_error(_: Request, exc: EngineError):
        return error_response(status_for(exc), exc.code, exc.message)

    @app.exception_handler(SchedulerError)
    async def _scheduler_error(_: Request, exc: SchedulerError):
        status = status_for(exc)
        headers = {"Retry-After": "5"} if status in (429, 503) else None
        return error_response(status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        problems = []
        for item in exc.errors():
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
            problems.append(f"{where}: {item.get('msg', 'invalid')}" if where else item["msg"])
        return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)
