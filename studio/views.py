"""The public JSON shape of a job (REST API, SSE, webhooks and the Queue view share it).

The keys named in docs/contracts.md (``id``, ``status``, ``progress``, ``stage``,
``eta_seconds``, ``error``, ``attempts``, ``created_at``, ``result_url``) are a
contract; the rest are additions.
"""

from __future__ import annotations

import datetime as dt
from pathlib import PurePosixPath
from typing import Any

from engine.progress import JobProgress
from scheduler.events import JobEvent
from scheduler.jobs import Job, JobStatus

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".gif")


def iso(timestamp: float | None) -> str | None:
    if not timestamp:
        return None
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def media_kind(name: str | None) -> str | None:
    """``image`` or ``video`` from a server-chosen file name (never an uploaded one)."""
    if not name:
        return None
    return "video" if PurePosixPath(name).suffix.lower() in VIDEO_EXTENSIONS else "image"


def job_json(job: Job, base_url: str = "") -> dict[str, Any]:
    """The API's view of a job; ``base_url`` makes the links absolute."""
    api = f"{base_url}/api/v1/jobs/{job.id}"
    succeeded = job.status is JobStatus.SUCCEEDED
    progress = 1.0 if succeeded else job.progress
    options = job.spec.options or {}
    result = job.result or {}
    return {
        "id": job.id,
        "status": str(job.status),
        "progress": progress,
        "stage": job.stage,
        "eta_seconds": job.eta_seconds,
        "fps": job.fps,
        "error": None
        if job.error is None
        else {"code": job.error.code, "message": job.error.message},
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "kind": media_kind(job.spec.output),
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "result_url": f"{api}/result" if succeeded else None,
        "events_url": f"{api}/events",
        "preview_url": f"{api}/preview",
        "batch_id": options.get("batch_id"),
        "inputs": {
            "sources": [item.original for item in job.spec.sources],
            "target": job.spec.target.original if job.spec.target else None,
        },
        "result": {
            key: result[key]
            for key in (
                "faces_swapped",
                "frames",
                "swapper",
                "detector",
                "warnings",
                "models",
                "tracks",
            )
            if key in result
        }
        or None,
        "options": {k: v for k, v in options.items() if k not in ("callback_url",)},
        "callback_url": options.get("callback_url"),
    }


def event_json(event: JobEvent, preview_version: int | None = None) -> dict[str, Any]:
    """A progress event as the SSE stream sends it (a status change sends ``job_json``).

    The record's fields go at the top level, as docs/contracts.md promises.
    """
    progress = event.progress or JobProgress()
    return {
        "id": event.job_id,
        "type": event.type,
        "status": str(event.status) if event.status else None,
        "progress": progress.fraction,
        "stage": progress.stage,
        "eta_seconds": progress.eta_seconds,
        "fps": progress.fps,
        "attempts": event.attempts,
        "preview": preview_version,
        "at": event.at,
    }
