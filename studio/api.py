"""The REST API under ``/api/v1`` (DESIGN.md §4; the paths and shapes are a contract)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from engine.errors import InvalidInput, InvalidOptions
from scheduler.errors import JobNotFound
from scheduler.events import DELETED, PROGRESS, JobEvent
from scheduler.jobs import Job, JobStatus
from studio.core import Studio, SubmitRequest, UploadedFile
from studio.errors import ApiError, not_found
from studio.identity import Principal
from studio.limits import display_name
from studio.sse import SSE_HEADERS, EventStream
from studio.views import event_json

COPY_CHUNK = 1 << 20
MAX_LIST = 500


class _TooLarge(Exception):
    pass


def _caller(request: Request) -> Principal:
    """The request's owner (the app's ``Studio`` decides: key, cookie, login or local)."""
    return request.app.state.studio.principal(request)


Caller = Annotated[Principal, Depends(_caller)]


def build_router(studio: Studio) -> APIRouter:
    router = APIRouter(prefix="/api/v1")

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def owned_job(job_id: str, principal: Principal) -> Job:
        return await studio.scheduler.get(job_id, owner=principal.owner)

    # -- submit -----------------------------------------------------------------------

    @router.post("/jobs", status_code=202, summary="Submit a job (multipart)")
    async def submit(
        request: Request,
        principal: Caller,
        idempotency_key: Annotated[str | None, Header()] = None,
    ):
        """Form fields: ``source`` (one or more image files), ``target`` (an image or video
        file), optional ``reference`` (an image of the face to replace) and ``options``
        (a JSON object: swapper, selector, enhancer, priority, callback_url, …)."""
        limits = studio.config.limits
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_request_bytes:
            raise _too_large(int(declared), limits.max_request_bytes)
        temps: list[Path] = []
        try:
            form = await _read_form(request, limits.max_request_bytes, limits.max_sources + 2)
            try:
                sources = [
                    await _spool(studio, item, "source", temps) for item in form.getlist("source")
                ]
                target = await _one_file(studio, form, "target", temps, required=True)
                reference = await _one_file(studio, form, "reference", temps, required=False)
                options = _parse_options_field(form.get("options"))
                unknown = set(form.keys()) - {"source", "target", "reference", "options"}
                if unknown:
                    raise InvalidInput(
                        f"unknown form field(s): {', '.join(sorted(unknown))}; "
                        "expected source, target, reference, options"
                    )
            finally:
                await form.close()
            job = await studio.submit(
                SubmitRequest(
                    owner=principal.owner,
                    sources=sources,
                    target=target,
                    reference=reference,
                    options=options,
                    idempotency_key=idempotency_key,
                    via="api",
                    private_files=True,  # spooled to server-named temporaries, deleted below
                )
            )
        finally:
            for path in temps:
                with contextlib.suppress(OSError):
                    path.unlink()
        body = studio.job_view(job, base(request))
        return JSONResponse(body, status_code=202, headers={"Location": f"/api/v1/jobs/{job.id}"})

    # -- reads ------------------------------------------------------------------------

    @router.get("/jobs", summary="The caller's jobs, newest first")
    async def list_jobs(
        request: Request,
        principal: Caller,
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ):
        if status is not None and status not in {s.value for s in JobStatus}:
            raise InvalidOptions(
                f"status must be one of {', '.join(s.value for s in JobStatus)}; got {status!r}"
            )
        jobs = await studio.scheduler.list(
            principal.owner, limit=limit, offset=offset, status=status
        )
        return {"jobs": [studio.job_view(job, base(request)) for job in jobs]}

    @router.get("/jobs/{job_id}", summary="One job's status")
    async def get_job(job_id: str, request: Request, principal: Caller):
        return studio.job_view(await owned_job(job_id, principal), base(request))

    @router.get("/jobs/{job_id}/history", summary="What happened to a job")
    async def history(job_id: str, principal: Caller):
        entries = await studio.scheduler.history(job_id, owner=principal.owner)
        return {
            "history": [
                {"at": entry.at, "event": entry.event, "detail": entry.detail} for entry in entries
            ],
            "webhooks": studio.outbox.for_job(job_id),
        }

    @router.get("/jobs/{job_id}/result", summary="The output file")
    async def result(job_id: str, principal: Caller):
        return _result_file(studio, await owned_job(job_id, principal))

    @router.get("/jobs/{job_id}/preview", summary="The newest progress preview (JPEG)")
    async def preview(job_id: str, principal: Caller):
        job = await owned_job(job_id, principal)
        cached = studio.previews.get(job.id, principal.owner)
        if cached is None:
            raise not_found("preview")
        return Response(cached[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    # -- actions ----------------------------------------------------------------------

    @router.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running job")
    async def cancel(job_id: str, request: Request, principal: Caller):
        job = await studio.scheduler.cancel(job_id, owner=principal.owner)
        return studio.job_view(job, base(request))

    @router.post("/jobs/{job_id}/retry", summary="Queue a failed or canceled job again")
    async def retry(job_id: str, request: Request, principal: Caller):
        job = await studio.scheduler.retry(job_id, owner=principal.owner)
        return studio.job_view(job, base(request))

    @router.delete("/jobs/{job_id}", summary="Delete a job and its files", status_code=204)
    async def delete(job_id: str, principal: Caller):
        await studio.scheduler.delete(job_id, owner=principal.owner)
        return Response(status_code=204)

    @router.post("/jobs/{job_id}/priority", summary="Set or move a job's priority")
    async def priority(
        job_id: str,
        request: Request,
        principal: Caller,
        body: Annotated[dict[str, Any], Body(examples=[{"priority": 5}, {"move": "up"}])],
    ):
        job = await owned_job(job_id, principal)
        if "move" in body:
            step = {"up": 1, "down": -1}.get(body["move"])
            if step is None:
                raise InvalidOptions("move must be 'up' or 'down'")
            value = job.priority + step
        elif "priority" in body:
            value = body["priority"]
        else:
            raise InvalidOptions('send {"priority": N} or {"move": "up" | "down"}')
        job = await studio.scheduler.set_priority(job_id, value, owner=principal.owner)
        return studio.job_view(job, base(request))

    @router.post("/jobs/{job_id}/share", summary="An expiring link to the result")
    async def share(
        job_id: str,
        request: Request,
        principal: Caller,
        hours: Annotated[float | None, Query(gt=0, le=24 * 30)] = None,
    ):
        job = await owned_job(job_id, principal)
        if job.status is not JobStatus.SUCCEEDED:
            raise ApiError(409, "not_ready", f"job {job.id} has no result yet ({job.status})")
        ttl = (hours or studio.config.share_link_hours) * 3600
        token = studio.signer.token(job.id, ttl)
        grant = studio.signer.verify(token)
        assert grant is not None
        return {
            "url": f"{base(request)}/api/v1/shared/{token}",
            "expires_at": grant.expires_at,
        }

    @router.get("/shared/{token}", summary="A shared result (no credentials needed)")
    async def shared(token: str):
        grant = studio.signer.verify(token)
        if grant is None:
            raise ApiError(404, "not_found", "this share link is invalid or has expired")
        try:
            job = await studio.scheduler.get(grant.job_id)
        except Exception:
            raise ApiError(404, "not_found", "the shared job no longer exists") from None
        return _result_file(studio, job)

    @router.get("/batches/{batch_id}/download", summary="All results of a batch as a zip")
    async def batch_zip(batch_id: str, principal: Caller):
        jobs = await studio.batch_jobs(principal.owner, batch_id)
        if not jobs:
            raise not_found("batch")
        waiting = [job.id for job in jobs if not job.finished]
        if waiting:
            raise ApiError(409, "not_ready", f"{len(waiting)} job(s) of this batch are not done")
        data = await asyncio.to_thread(_zip_results, studio, jobs)
        return Response(
            data,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.zip"'},
        )

    # -- events -----------------------------------------------------------------------

    @router.get("/jobs/{job_id}/events", summary="Server-Sent Events of one job")
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

    @router.get("/events", summary="Server-Sent Events of all the caller's jobs")
    async def owner_events(request: Request, principal: Caller):
        subscription = studio.scheduler.subscribe(owner=principal.owner)
        url = base(request)

        async def snapshot():
            return [("hello", {"instance": studio.instance, "owner_kind": principal.kind})]

        async def render(event: JobEvent):
            return await _render(studio, event, url)

        stream = EventStream(subscription, studio.shutting_down, snapshot, render)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

    @router.post("/verify", summary="Provenance check of a file (watermark, metadata, C2PA)")
    async def verify(request: Request, principal: Caller):
        """Form field ``file``: an image or video. Returns the ``app.py verify --json`` object:
        ``watermark`` (null, or ``payload`` and, when this installation made it, ``job_id``),
        ``metadata`` (``digital_source_type``), ``c2pa`` (``status``: trusted | valid |
        invalid | absent)."""
        from engine.provenance.verify import verify_file

        limits = studio.config.limits
        temps: list[Path] = []
        try:
            form = await _read_form(request, limits.max_request_bytes, 1)
            try:
                upload = await _one_file(studio, form, "file", temps, required=True)
            finally:
                await form.close()
            report = await asyncio.to_thread(verify_file, upload.path, studio.config.data_dir)
        finally:
            for path in temps:
                with contextlib.suppress(OSError):
                    path.unlink()
        report["file"] = upload.original
        watermark = report.get("watermark") or {}
        if watermark.get("job_id"):
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

    @router.get("/health", summary="Liveness and queue summary")
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

    @router.get("/me", summary="Who the server thinks you are, and your webhook secret")
    async def me(principal: Caller):
        return {
            "owner": principal.owner,
            "kind": principal.kind,
            "key_name": principal.key_name,
            "webhook_secret": studio.keys.webhook_secret(principal.owner),
        }

    @router.api_route(
        "/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    async def unknown(path: str):
        raise ApiError(404, "not_found", f"no API endpoint /api/v1/{path}")

    return router


# -- helpers ------------------------------------------------------------------------------


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


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        422,
        "too_large",
        f"the upload is {size / 1e6:.1f} MB; the limit per request is {limit / 1e6:.0f} MB",
    )


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
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise InvalidInput("send the job as multipart/form-data with source and target files")
    try:
        return await limited.form(max_files=max_files, max_fields=8, max_part_size=64 * 1024)
    except _TooLarge:
        raise _too_large(received, max_bytes) from None
    except MultiPartException as exc:
        raise InvalidInput(f"the multipart body could not be read: {exc.message}") from None


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


def _parse_options_field(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, UploadFile):
        raise InvalidOptions("options must be a JSON text field, not a file")
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidOptions(
            f"options is not valid JSON: {exc.msg} at position {exc.pos}"
        ) from None
    if not isinstance(options, dict):
        raise InvalidOptions("options must be a JSON object")
    return options


def _result_file(studio: Studio, job: Job) -> FileResponse:
    if job.status is not JobStatus.SUCCEEDED:
        raise ApiError(409, "not_ready", f"job {job.id} has no result ({job.status})")
    path = studio.scheduler.output_path(job)
    if path is None:
        raise ApiError(410, "gone", f"the result of job {job.id} is no longer stored")
    return FileResponse(path, filename=f"{job.id}{path.suffix}", content_disposition_type="inline")


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
