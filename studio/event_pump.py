"""``EventPump``: what the studio does with the scheduler's events.

One subscriber feeds metrics, logs, the preview cache and the webhook outbox, so
that the front ends only read (jobs from the scheduler, previews from the cache).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable

from engine.errors import EngineError
from scheduler.events import DELETED, PROGRESS, JobEvent
from scheduler.jobs import Job, JobStatus
from scheduler.service import Scheduler
from studio.metrics import StudioMetrics
from studio.previews import PreviewCache
from studio.views import iso, job_json
from studio.webhooks import Outbox, WebhookWorker

log = logging.getLogger("studio.jobs")

RECONCILE_SECONDS = 3600.0


class EventPump:
    """Feeds metrics, logs, previews and webhooks from the scheduler's events.

    Also queues, at start, the callbacks a crash kept from the outbox
    (``reconcile_webhooks``): the outbox is only ever fed from here."""

    def __init__(
        self,
        scheduler: Scheduler,
        metrics: StudioMetrics,
        previews: PreviewCache,
        outbox: Outbox,
        webhooks: WebhookWorker,
        base_url: str,
    ) -> None:
        self.scheduler = scheduler
        self.metrics = metrics
        self.previews = previews
        self.outbox = outbox
        self.webhooks = webhooks
        self.base_url = base_url

    async def run(self, subscription: AsyncIterable[JobEvent]) -> None:
        """Handles every event of ``subscription``; one failure never stops the pump."""
        async for event in subscription:
            try:
                await self.on_event(event)
            except Exception:
                log.exception("event handling failed", extra={"job_id": event.job_id})

    async def on_event(self, event: JobEvent) -> None:
        """One event: cache its preview, count it, log it, and queue a finished job's callback."""
        if event.preview:
            self.previews.put(event.job_id, event.owner, event.preview)
        if event.type == PROGRESS:
            self.metrics.job_progress(event.job_id, event.progress.fps if event.progress else None)
            return
        if event.type == DELETED:
            self.previews.drop(event.job_id)
            self.metrics.job_released(event.job_id)
            log.info("deleted", extra={"job_id": event.job_id})
            return
        extra = {"job_id": event.job_id, "status": str(event.status)}
        if event.status is JobStatus.RUNNING:
            job = await self._get(event.job_id)
            wait = job.started_at - job.created_at if job and job.started_at else None
            self.metrics.job_started(wait)
            device = job.device if job else None
            log.info("running on %s (attempt %d)", device, (event.attempts or 0) + 1, extra=extra)
        elif event.status is JobStatus.QUEUED:
            self.metrics.job_released(event.job_id)
            log.info("queued (attempts so far: %s)", event.attempts, extra=extra)
        elif event.status is not None and event.status.finished:
            job = await self._get(event.job_id)
            if job is None:
                return
            run_seconds = (
                job.finished_at - job.started_at if job.finished_at and job.started_at else None
            )
            frames = (job.result or {}).get("frames")
            self.metrics.job_finished(job.id, str(job.status), run_seconds, frames)
            message = job.error.message if job.error else ""
            log.info("%s %s", job.status, message, extra=extra)
            self.enqueue_webhook(job)

    async def _get(self, job_id: str) -> Job | None:
        try:
            return await self.scheduler.get(job_id)
        except EngineError:
            return None
        except Exception:
            return None

    def enqueue_webhook(self, job: Job) -> None:
        """Queue a finished job's callback (once per outcome: the outbox dedupes)."""
        url = (job.spec.options or {}).get("callback_url")
        if not url or not job.finished:
            return
        payload = {
            "type": f"job.{job.status}",
            "timestamp": _iso_now(),
            "data": job_json(job, self.base_url),
        }
        msg_id = self.outbox.enqueue(
            job.id,
            job.owner,
            url,
            payload["type"],
            payload,
            dedupe_key=f"{job.id}:{job.status}:{job.finished_at or 0:.6f}",
        )
        if msg_id:
            self.webhooks.wake()

    async def reconcile_webhooks(self) -> None:
        """Queue callbacks of jobs that finished while no event reached the outbox (a crash)."""
        try:
            recent = await self.scheduler.store.list(None, limit=500)
        except Exception:
            log.exception("webhook reconciliation skipped")
            return
        horizon = time.time() - RECONCILE_SECONDS
        for job in recent:
            if job.finished and (job.finished_at or 0) >= horizon:
                self.enqueue_webhook(job)


def _iso_now() -> str:
    return iso(time.time()) or ""
