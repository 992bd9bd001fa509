"""The REST API under ``/api/v1`` (the paths and shapes are a contract: docs/contracts.md)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import os
import zipfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from engine.errors import EngineError, InvalidInput, InvalidOptions
from scheduler.errors import JobNotFound
from scheduler.events import DELETED, PROGRESS, JobEvent
from scheduler.jobs import Job, JobStatus
from scheduler.service import MAX_PRIORITY
from studio import jsonsafe
from studio import openapi as doc
from studio.core import Studio
from studio.errors import (
    Gone,
    NotFound,
    NotReady,
    PriorityLimit,
    TooLarge,
    Unavailable,
    UnsupportedMediaType,
    UploadTooLarge,
    method_not_allowed,
    not_found,
)
from studio.identity import Principal
from studio.limits import display_name
from studio.preview import PREVIEW_STAMP_ID, parse_frame, preview_service
from studio.sse import SSE_HEADERS, EventStream
from studio.submit import SubmitRequest, UploadedFile
from studio.views import event_json

COPY_CHUNK = 1 << 20
MAX_LIST = 500
MAX_OFFSET = 1_000_000_000
MAX_JSON_BODY = 64 * 1024  # a priority change is a few bytes; as much as an options field
MAX_TEXT_FIELD = 64 * 1024  # the options field of a submission
MIN_SHARE_SECONDS = 60.0
BEARER = HTTPBearer(
    auto_error=False,  # only declares the scheme; Studio.principal decides (key, cookie, login)
    scheme_name="ApiKey",
    description="An API key: `python app.py keys create NAME` prints one.",
)


class _TooLarge(Exception):
    pass


def _caller(request: Request, _: Annotated[Any, Depends(BEARER)] = None) -> Principal:
    """The request's owner (the app's ``Studio`` decides: key, cookie, login or local)."""
    return request.app.state.studio.principal(request)


Caller = Annotated[Principal, Depends(_caller)]


def build_router(studio: Studio) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    limits = studio.config.limits
    e = doc.error_responses

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def owned_job(job_id: str, principal: Principal) -> Job:
        return await studio.scheduler.get(job_id, owner=principal.owner)

    def job_answer(description: str, links: dict | None = None) -> dict:
        answer: dict[str, Any] = {"model": doc.Job, "description": description}
        if links:
            answer["links"] = links
        return answer

    # -- submit -----------------------------------------------------------------------

    @router.post(
        "/jobs",
        status_code=202,
        operation_id="submit_job",
        summary="Submit a job (multipart)",
        responses={
            202: {
                **job_answer(
                    "The queued job (with a known Idempotency-Key: the job it made before).",
                    doc.job_links("$response.body#/id"),
                ),
                "headers": {
                    "Location": {
                        "description": "The job's URL.",
                        "schema": {"type": "string"},
                    }
                },
            },
            **e(401, 403, 415, 422, 429, 503),
        },
        openapi_extra={"requestBody": doc.submit_body(limits.max_sources)},
    )
    async def submit(
        request: Request,
        principal: Caller,
        idempotency_key: Annotated[
            str | None,
            Header(
                min_length=1,
                max_length=200,
                description="Send the same key again to get the same job, not a second one.",
            ),
        ] = None,
    ):
        """Form fields: ``source`` (one or more image files), ``target`` (an image or video
        file), optional ``reference`` (one or more images: the reference selector's face is
        the first's; face_map's reference entries index them) and ``options`` (a JSON
        object: swapper, selector, enhancer, priority, callback_url, …)."""
        temps: list[Path] = []
        try:
            submission, _ = await _read_submission(studio, request, principal, temps)
            submission.idempotency_key = idempotency_key
            submission.private_files = True  # spooled to server-named temporaries, deleted below
            job = await studio.submit(submission)
        finally:
            for path in temps:
                with contextlib.suppress(OSError):
                    path.unlink()
        body = studio.job_view(job, base(request))
        return JSONResponse(body, status_code=202, headers={"Location": f"/api/v1/jobs/{job.id}"})

    @router.post(
        "/preview",
        operation_id="preview_swap",
        summary="One frame swapped with these options, at once (JPEG; not a job)",
        response_class=Response,
        responses={
            200: {
                "description": "The frame, swapped, as a JPEG with the provenance marks of "
                "any output (`X-Preview-Frame`: its index; `X-Faces-Swapped`: how many faces "
                "changed; none: the frame is unchanged and not marked).",
                "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
            },
            **e(401, 403, 415, 422, 503),
            409: {
                "model": doc.Error,
                "description": "Canceled (`canceled`): a newer preview request of the same "
                "owner replaced this one.",
            },
            429: {
                "model": doc.Error,
                "description": "Every preview slot is busy with other owners; retry after "
                "`Retry-After` seconds.",
            },
        },
        openapi_extra={"requestBody": _preview_body(doc.submit_body(limits.max_sources))},
    )
    async def preview_swap(request: Request, principal: Caller):
        """The form fields of ``POST /jobs`` plus optional ``frame``: a frame index of the
        whole target (``trim_start`` does not shift it) or ``t=SECONDS`` from its start;
        frame 0 by default. ``options`` must hold ``"consent": true``. Nothing is queued
        or stored; one preview at a time per owner (a newer one cancels the older)."""
        temps: list[Path] = []
        submission: SubmitRequest | None = None
        try:
            submission, fields = await _read_submission(
                studio, request, principal, temps, extra=("frame",)
            )
            frame = parse_frame(fields.get("frame"))
            image = await preview_service(studio).preview(submission, frame)
        except EngineError as exc:  # name the uploads as their sender did, not our copies
            message = exc.message
            for upload in _uploads(submission):
                message = _rename(message, upload)
            if message != exc.message:
                raise type(exc)(message) from None
            raise
        finally:
            for path in temps:
                with contextlib.suppress(OSError):
                    path.unlink()
        headers = {
            "Cache-Control": "no-store",
            "X-Preview-Frame": str(image.frame),
            "X-Faces-Swapped": str(image.faces_swapped),
        }
        return Response(image.jpeg, media_type="image/jpeg", headers=headers)

    # -- reads ------------------------------------------------------------------------

    @router.get(
        "/jobs",
        operation_id="list_jobs",
        summary="The caller's jobs, newest first",
        responses={
            200: {
                "model": doc.JobList,
                "description": "The jobs.",
                "links": doc.job_links("$response.body#/jobs/0/id"),
            },
            **e(401, 403, 422, 503),
        },
    )
    async def list_jobs(
        request: Request,
        principal: Caller,
        status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ):
        jobs = await studio.scheduler.list(
            principal.owner,
            limit=limit,
            offset=offset,
            status=None if status is None else status.value,
        )
        return {"jobs": [studio.job_view(job, base(request)) for job in jobs]}

    @router.get(
        "/jobs/{job_id}",
        operation_id="get_job",
        summary="One job's status",
        responses={200: job_answer("The job."), **e(401, 403, 404, 422, 503)},
    )
    async def get_job(job_id: str, request: Request, principal: Caller):
        return studio.job_view(await owned_job(job_id, principal), base(request))

    @router.get(
        "/jobs/{job_id}/history",
        operation_id="job_history",
        summary="What happened to a job",
        description="The job's history (consent included) and its webhook deliveries. The "
        "history outlives the job: after the job is deleted or expires, it still answers, "
        "ending with a `deleted` or `expired` entry, until the retention period ends.",
        responses={
            200: {"model": doc.JobHistory, "description": "Its history and webhook deliveries."},
            **e(401, 403, 404, 422, 503),
        },
    )
    async def history(job_id: str, principal: Caller):
        entries = await studio.scheduler.history(job_id, owner=principal.owner)
        return {
            "history": [
                {"at": entry.at, "event": entry.event, "detail": entry.detail} for entry in entries
            ],
            "webhooks": studio.outbox.for_job(job_id),
        }

    @router.get(
        "/jobs/{job_id}/result",
        operation_id="job_result",
        summary="The output file",
        response_class=Response,
        responses={200: _file_answer("The output image or video."), **_result_errors(e)},
    )
    async def result(job_id: str, principal: Caller):
        return _result_file(studio, await owned_job(job_id, principal))

    @router.get(
        "/jobs/{job_id}/preview",
        operation_id="job_preview",
        summary="The newest progress preview (JPEG)",
        response_class=Response,
        responses={
            200: {
                "description": "A JPEG of the newest processed frame.",
                "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
            },
            204: {"description": "The job has no preview (yet): its `preview` field is null."},
            **e(401, 403, 404, 422, 503),
        },
    )
    async def preview(job_id: str, principal: Caller):
        job = await owned_job(job_id, principal)
        cached = studio.previews.get(job.id, principal.owner)
        if cached is None:
            # The job exists (its preview_url is always given): nothing to show yet is not
            # a missing resource. 404 stays the answer for a job that is not there.
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        return Response(cached[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    # -- actions ----------------------------------------------------------------------

    @router.post(
        "/jobs/{job_id}/cancel",
        operation_id="cancel_job",
        summary="Cancel a queued or running job",
        responses={200: job_answer("The canceled job."), **e(401, 403, 404, 409, 422, 503)},
    )
    async def cancel(job_id: str, request: Request, principal: Caller):
        job = await studio.scheduler.cancel(job_id, owner=principal.owner)
        return studio.job_view(job, base(request))

    @router.post(
        "/jobs/{job_id}/retry",
        operation_id="retry_job",
        summary="Queue a failed or canceled job again",
        responses={200: job_answer("The queued job."), **e(401, 403, 404, 409, 422, 503)},
    )
    async def retry(job_id: str, request: Request, principal: Caller):
        job = await studio.scheduler.retry(job_id, owner=principal.owner)
        return studio.job_view(job, base(request))

    @router.delete(
        "/jobs/{job_id}",
        operation_id="delete_job",
        summary="Delete a job and its files",
        status_code=204,
        response_class=Response,
        responses={204: {"description": "Deleted."}, **e(401, 403, 404, 409, 422, 503)},
    )
    async def delete(job_id: str, principal: Caller):
        await studio.scheduler.delete(job_id, owner=principal.owner)
        return Response(status_code=204)

    @router.post(
        "/jobs/{job_id}/priority",
        operation_id="set_job_priority",
        summary="Set or move a job's priority",
        responses={
            200: job_answer("The job with its new priority."),
            **e(401, 403, 404, 409, 413, 415, 422, 503),
        },
        openapi_extra={"requestBody": doc.PRIORITY_BODY},
    )
    async def priority(job_id: str, request: Request, principal: Caller):
        """Body: ``{"priority": N}`` (an integer from -1000 to 1000; higher runs first) or
        ``{"move": "up" | "down"}``."""
        change = _priority_change(await _read_json(request, "the priority request"))
        job = await owned_job(job_id, principal)
        if "move" in change:
            value = job.priority + (1 if change["move"] == "up" else -1)
            if not -MAX_PRIORITY <= value <= MAX_PRIORITY:
                end = "highest" if change["move"] == "up" else "lowest"
                raise PriorityLimit(
                    f"job {job.id} already has the {end} priority ({job.priority})",
                )
        else:
            value = change["priority"]
        job = await studio.scheduler.set_priority(job_id, value, owner=principal.owner)
        return studio.job_view(job, base(request))

    @router.post(
        "/jobs/{job_id}/share",
        operation_id="share_job",
        summary="An expiring link to the result",
        responses={
            200: {
                "model": doc.ShareLink,
                "description": "The link.",
                "links": doc.SHARE_LINKS,
            },
            **e(401, 403, 404, 409, 422, 503),
        },
    )
    async def share(
        job_id: str,
        request: Request,
        principal: Caller,
        hours: Annotated[
            float | None,
            Query(
                gt=0,
                le=24 * 30,
                description="Lifetime of the link (default: the server's); at least a minute.",
            ),
        ] = None,
    ):
        job = await owned_job(job_id, principal)
        if job.status is not JobStatus.SUCCEEDED:
            raise NotReady(f"job {job.id} has no result yet ({job.status})")
        # A link that expired before it was handed out would be no link: at least a minute
        # (the token's expiry is whole seconds, so a split second would already be past).
        ttl = max((hours or studio.config.share_link_hours) * 3600, MIN_SHARE_SECONDS)
        token = studio.signer.token(job.id, ttl)
        grant = studio.signer.verify(token)
        if grant is None:  # cannot happen with ttl >= 1 s; never a 500 if it did
            raise Unavailable("the link could not be made; try again")
        return {
            "url": f"{base(request)}/api/v1/shared/{token}",
            "token": token,
            "expires_at": grant.expires_at,
        }

    @router.get(
        "/shared/{token}",
        operation_id="shared_result",
        summary="A shared result (no credentials needed)",
        response_class=Response,
        responses={
            200: _file_answer("The output image or video."),
            **e(403, 404, 409, 410, 422, 503),
        },
    )
    async def shared(token: str):
        grant = studio.signer.verify(token)
        if grant is None:
            raise NotFound("this share link is invalid or has expired")
        try:
            job = await studio.scheduler.get(grant.job_id)
        except Exception:
            raise NotFound("the shared job no longer exists") from None
        return _result_file(studio, job)

    @router.get(
        "/batches/{batch_id}/download",
        operation_id="download_batch",
        summary="All results of a batch as a zip",
        response_class=Response,
        responses={
            200: {
                "description": "A zip of the batch's results.",
                "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            },
            **e(401, 403, 404, 409, 422, 503),
        },
    )
    async def batch_zip(batch_id: str, principal: Caller):
        jobs = await studio.batch_jobs(principal.owner, batch_id)
        if not jobs:
            raise not_found("batch")
        waiting = [job.id for job in jobs if not job.finished]
        if waiting:
            raise NotReady(f"{len(waiting)} job(s) of this batch are not done")
        data = await asyncio.to_thread(_zip_results, studio, jobs)
        return Response(
            data,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.zip"'},
        )

    # -- events -----------------------------------------------------------------------

    @router.get(
        "/jobs/{job_id}/events",
        operation_id="job_events",
        summary="Server-Sent Events of one job",
        response_class=Response,
        responses={
            200: doc.event_stream(
                "`job` (the job object) and `progress` events, until the job ends.",
                ("job", "progress", "deleted", "shutdown"),
            ),
            **e(401, 403, 404, 422, 503),
        },
    )
    async def job_events(job_id: str, request: Request, principal: Caller):
        subscription = studio.scheduler.subscribe(job_id=job_id)
        try:
            job = await owned_job(job_id, principal)
        except Exception:
            subscription.close()
            raise
        url = base(request)

        async def snapshot():
            return [("job", studio.job_view(job, url))]

        async def render(event: JobEvent):
            return await _render(studio, event, url)

        def finished(name: str, data: Any) -> bool:
            return name == "deleted" or (
                name == "job" and data.get("status") in ("succeeded", "failed", "canceled")
            )

        stream = EventStream(subscription, studio.shutting_down, snapshot, render, finished)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

    @router.get(
        "/events",
        operation_id="owner_events",
        summary="Server-Sent Events of all the caller's jobs",
        response_class=Response,
        responses={
            200: doc.event_stream(
                "`hello`, then `job`, `progress` and `deleted` events of the caller's jobs.",
                ("hello", "job", "progress", "deleted", "shutdown"),
            ),
            **e(401, 403),
        },
    )
    async def owner_events(request: Request, principal: Caller):
        subscription = studio.scheduler.subscribe(owner=principal.owner)
        url = base(request)

        async def snapshot():
            return [("hello", {"instance": studio.instance, "owner_kind": principal.kind})]

        async def render(event: JobEvent):
            return await _render(studio, event, url)

        stream = EventStream(subscription, studio.shutting_down, snapshot, render)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

    @router.post(
        "/verify",
        operation_id="verify_file",
        summary="Provenance check of a file (watermark, metadata, C2PA)",
        responses={
            200: {"model": doc.VerifyReport, "description": "The provenance report."},
            **e(401, 403, 415, 422, 503),
        },
        openapi_extra={"requestBody": doc.VERIFY_BODY},
    )
    async def verify(request: Request, principal: Caller):
        """Form field ``file``: an image or video. Returns the ``app.py verify --json`` object:
        ``watermark`` (null, or ``payload`` and, when this installation made it, ``job_id``),
        ``metadata`` (``digital_source_type``), ``c2pa`` (``status``: trusted | valid |
        invalid | absent)."""
        from engine.provenance.verify import verify_file

        temps: list[Path] = []
        try:
            form = await _read_form(request, limits.max_request_bytes, 1)
            try:
                unknown = set(form.keys()) - {"file"}
                if unknown:
                    raise InvalidInput(
                        f"unknown form field(s): {', '.join(sorted(unknown))}; expected file"
                    )
                upload = await _one_file(studio, form, "file", temps, required=True)
            finally:
                await form.close()
            try:
                report = await asyncio.to_thread(verify_file, upload.path, studio.config.data_dir)
            except EngineError as exc:  # name the upload as its sender did, not our temporary
                raise type(exc)(_rename(exc.message, upload)) from None
        finally:
            for path in temps:
                with contextlib.suppress(OSError):
                    path.unlink()
        report["file"] = upload.original
        watermark = report.get("watermark") or {}
        if watermark.get("job_id") == PREVIEW_STAMP_ID:  # every preview has this mark
            report.setdefault("notes", []).append(
                "a preview (POST /api/v1/preview) made by this installation"
            )
        elif watermark.get("job_id"):
            # The job id is shown only to the job's owner: jobs stay private to their owner.
            try:
                await studio.scheduler.get(watermark["job_id"], owner=principal.owner)
            except JobNotFound:
                watermark["job_id"] = None
                report.setdefault("notes", []).append(
                    "made by this installation, for a job that is not yours"
                )
        return report

    # -- service ----------------------------------------------------------------------

    @router.get(
        "/health",
        operation_id="health",
        summary="Liveness and queue summary",
        responses={
            200: {"model": doc.Health, "description": "The server's state."},
            **e(403, 503),
        },
    )
    async def health():
        stats = await studio.scheduler.stats()
        return {
            "status": "ok" if studio.started else "starting",
            "instance": studio.instance,
            "queue_depth": stats.queued,
            "jobs": stats.counts,
            "devices": [
                {"device": d.device, "slots": d.slots, "busy": d.busy, "free": d.free}
                for d in stats.devices
            ],
            "workers": studio.remote_workers(),
        }

    @router.get(
        "/me",
        operation_id="me",
        summary="Who the server thinks you are, and your webhook secret",
        responses={200: {"model": doc.Me, "description": "The caller."}, **e(401, 403)},
    )
    async def me(principal: Caller):
        return {
            "owner": principal.owner,
            "kind": principal.kind,
            "key_name": principal.key_name,
            # Only to an authenticated owner (a key, a login, or this machine in open local
            # mode): an anonymous browser's cookie would otherwise reveal the secret that
            # signs every non-key owner's callbacks.
            "webhook_secret": studio.keys.webhook_secret(principal.owner)
            if principal.kind in ("key", "user", "local")
            else None,
        }

    # Every other request under /api/v1: 405 (with Allow) for a known path and another
    # method, else 404. No methods listed: it matches any method, after the routes above.
    @router.api_route(
        "/{path:path}", methods=[], include_in_schema=False, operation_id="unknown_endpoint"
    )
    async def unknown(path: str, request: Request):
        allowed = _allowed_methods(request, router.routes)
        if allowed:
            raise method_not_allowed(allowed)
        raise NotFound(f"no API endpoint /api/v1/{path}")

    return router


# -- helpers ------------------------------------------------------------------------------


def _file_answer(description: str) -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    media = dict.fromkeys(sorted(set(doc.RESULT_TYPES.values())), binary)
    return {"description": description, "content": media}


def _result_errors(e) -> dict:
    return e(401, 403, 404, 409, 410, 422, 503)


def _allowed_methods(request: Request, routes) -> set[str]:
    """The methods of the routes (ours and the app's) whose path matches this request's."""
    path = request.scope.get("path", "")
    allowed: set[str] = set()
    for route in [*routes, *request.app.routes]:
        methods = getattr(route, "methods", None)
        pattern = getattr(route, "path_regex", None)
        if methods and pattern is not None and pattern.match(path):
            allowed |= set(methods)
    return allowed


async def _render(studio: Studio, event: JobEvent, base_url: str) -> list[tuple[str, Any]]:
    if event.type == PROGRESS:
        return [("progress", event_json(event, studio.previews.version(event.job_id)))]
    if event.type == DELETED:
        return [("deleted", {"id": event.job_id})]
    try:
        job = await studio.scheduler.get(event.job_id)
    except Exception:
        return [("deleted", {"id": event.job_id})]
    return [("job", studio.job_view(job, base_url))]


def _too_large(size: int, limit: int) -> UploadTooLarge:
    return UploadTooLarge(
        f"the upload is {size / 1e6:.1f} MB; the limit per request is {limit / 1e6:.0f} MB",
    )


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_form(request: Request, max_bytes: int, max_files: int):
    """Parse the multipart body, stopping as soon as it grows past ``max_bytes``."""
    received = 0
    receive = request.receive

    async def counting_receive():
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise _TooLarge()
        return message

    limited = Request(request.scope, counting_receive)
    if _media_type(request) != "multipart/form-data":
        raise UnsupportedMediaType(
            "send the request as multipart/form-data (with the files as file fields)",
        )
    try:
        return await limited.form(max_files=max_files, max_fields=8, max_part_size=MAX_TEXT_FIELD)
    except _TooLarge:
        raise _too_large(received, max_bytes) from None
    except MultiPartException as exc:
        raise InvalidInput(f"the multipart body could not be read: {exc.message}") from None
    except StarletteHTTPException as exc:  # Starlette's wrapper of a MultiPartException
        raise InvalidInput(f"the multipart body could not be read: {exc.detail}") from None


async def _read_json(request: Request, what: str) -> Any:
    """A JSON request body, read up to ``MAX_JSON_BODY`` bytes and parsed strictly."""
    media = _media_type(request)
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"send {what} as application/json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JSON_BODY:
        raise _body_too_large(what)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise _body_too_large(what)
        chunks.append(chunk)
    return jsonsafe.loads(b"".join(chunks), what)


def _body_too_large(what: str) -> TooLarge:
    return TooLarge(f"{what} is larger than {MAX_JSON_BODY // 1024} KiB")


def _priority_change(body: Any) -> dict[str, Any]:
    """``{"priority": N}`` or ``{"move": "up" | "down"}``, exactly one of them."""
    usage = 'send {"priority": N} or {"move": "up" | "down"}'
    if not isinstance(body, dict) or len(body) != 1:
        raise InvalidOptions(usage)
    if "move" in body:
        if body["move"] not in ("up", "down"):
            raise InvalidOptions("move must be 'up' or 'down'")
        return body
    if "priority" in body:
        value = body["priority"]
        integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not integral:
            raise InvalidOptions("priority must be an integer (a JSON number, not a string)")
        return body
    raise InvalidOptions(usage)


async def _spool(studio: Studio, item: Any, role: str, temps: list[Path]) -> UploadedFile:
    """Copy one uploaded part to a server-named temporary file (never the client's name)."""
    if not isinstance(item, UploadFile):
        raise InvalidInput(f"{role} must be a file, not a text field")
    path = studio.new_upload_path()
    temps.append(path)
    limit = studio.config.limits.max_file_bytes

    def copy() -> int:
        size = 0
        with path.open("xb") as out:
            item.file.seek(0)
            while chunk := item.file.read(COPY_CHUNK):
                size += len(chunk)
                if size > limit:
                    break
                out.write(chunk)
        return size

    size = await asyncio.to_thread(copy)
    name = display_name(item.filename)
    if size > limit:
        raise InvalidInput(f"{role} ({name}): more than the upload limit of {limit / 1e6:.0f} MB")
    return UploadedFile(original=name, path=path)


async def _one_file(studio: Studio, form, role: str, temps: list[Path], required: bool):
    items = form.getlist(role)
    if not items:
        if required:
            raise InvalidInput(f"the {role} file is missing")
        return None
    if len(items) > 1:
        raise InvalidInput(f"send exactly one {role} file (got {len(items)})")
    return await _spool(studio, items[0], role, temps)


async def _read_submission(
    studio: Studio,
    request: Request,
    principal: Principal,
    temps: list[Path],
    extra: tuple[str, ...] = (),
) -> tuple[SubmitRequest, dict[str, str]]:
    """The multipart fields of a submission (``source`` and ``reference``: one or more,
    ``target``, ``options``), spooled to server-named files in ``temps``, and the ``extra`` text
    fields a route adds (each at most once)."""
    limits = studio.config.limits
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise _too_large(int(declared), limits.max_request_bytes)
    # Sources and references up to max_sources each, and the target.
    form = await _read_form(request, limits.max_request_bytes, 2 * limits.max_sources + 1)
    try:
        expected = ("source", "target", "reference", "options", *extra)
        unknown = set(form.keys()) - set(expected)
        if unknown:
            raise InvalidInput(
                f"unknown form field(s): {', '.join(sorted(unknown))}; "
                f"expected {', '.join(expected)}"
            )
        sources = [await _spool(studio, item, "source", temps) for item in form.getlist("source")]
        target = await _one_file(studio, form, "target", temps, required=True)
        references = [
            await _spool(studio, item, "reference", temps) for item in form.getlist("reference")
        ]
        options = _parse_options_field(form.getlist("options"))
        fields = {name: _text_field(form.getlist(name), name) for name in extra}
    finally:
        await form.close()
    submission = SubmitRequest(
        owner=principal.owner,
        sources=sources,
        target=target,
        reference=references[0] if references else None,
        references=references,
        options=options,
        via="api",
    )
    return submission, {name: value for name, value in fields.items() if value is not None}


def _text_field(values: list[Any], name: str) -> str | None:
    if len(values) > 1:
        raise InvalidInput(f"send the {name} field once (got {len(values)})")
    if not values:
        return None
    if isinstance(values[0], UploadFile):
        raise InvalidInput(f"{name} must be a text field, not a file")
    return str(values[0])


def _uploads(submission: SubmitRequest | None) -> list[UploadedFile]:
    if submission is None:
        return []
    found = [*submission.sources, submission.target, *submission.all_references]
    return [upload for upload in found if upload is not None]


def _preview_body(submit_body: dict[str, Any]) -> dict[str, Any]:
    """The body of ``POST /preview``: ``POST /jobs``'s plus the ``frame`` text field."""
    body = copy.deepcopy(submit_body)
    schema = body["content"]["multipart/form-data"]["schema"]
    schema["properties"]["frame"] = {
        "type": "string",
        "pattern": r"^([0-9]{1,9}|t=[0-9]{1,6}(\.[0-9]{1,6})?)$",
        "description": "A frame index of the whole target (0 = the first; an image has only "
        "0), or t=SECONDS from its start. Default 0.",
    }
    return body


def _parse_options_field(values: list[Any]) -> dict[str, Any]:
    if len(values) > 1:
        raise InvalidOptions(f"send the options field once (got {len(values)})")
    raw = values[0] if values else None
    if raw is None or raw == "":
        return {}
    if isinstance(raw, UploadFile):
        raise InvalidOptions("options must be a JSON text field, not a file")
    options = jsonsafe.loads(raw, "options")
    if not isinstance(options, dict):
        raise InvalidOptions("options must be a JSON object")
    return options


def _rename(message: str, upload: UploadedFile) -> str:
    """An engine message about our temporary copy, naming the upload as its sender did."""
    return message.replace(str(upload.path), upload.original).replace(
        upload.path.name, upload.original
    )


def _result_file(studio: Studio, job: Job) -> FileResponse:
    if job.status is not JobStatus.SUCCEEDED:
        raise NotReady(f"job {job.id} has no result ({job.status})")
    path = studio.scheduler.output_path(job)
    if path is None:
        raise Gone(f"the result of job {job.id} is no longer stored")
    return FileResponse(
        path,
        media_type=doc.RESULT_TYPES.get(path.suffix.lower(), "application/octet-stream"),
        filename=f"{job.id}{path.suffix}",
        content_disposition_type="inline",
    )


def _zip_results(studio: Studio, jobs: list[Job]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for number, job in enumerate(sorted(jobs, key=lambda j: j.created_at), 1):
            path = studio.scheduler.output_path(job)
            if path is None:
                continue
            target = job.spec.target.original if job.spec.target else "result"
            stem = os.path.splitext(display_name(target))[0] or "result"
            archive.write(path, f"{number:02d}-{stem}{path.suffix}")
    return buffer.getvalue()
