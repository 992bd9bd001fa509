"""``Studio``: the services one server holds, created and wired here, started and stopped here.

The REST API and the Gradio UI are two front ends of the same object: both
submit through ``Studio.submit`` (so both enforce the same limits and hooks)
and both read jobs from the scheduler, never from Gradio's in-memory queue.

Each concern lives in its own module and is wired explicitly below:
``studio.auth`` (who is calling), ``studio.submit`` (submit checks),
``studio.previews`` (preview cache and preview engine), ``studio.event_pump``
(scheduler events → metrics, previews, webhooks) and ``studio.scheduler_setup``
(the scheduler a config asks for). ``Studio`` keeps thin delegating methods so
the front ends need one object only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.models.manager import ModelManager, default_models_dir
from scheduler.jobs import Job
from scheduler.service import Scheduler
from studio.auth import Authenticator
from studio.config import StudioConfig
from studio.db import open_db
from studio.event_pump import EventPump
from studio.gradio_guard import CacheRegistry
from studio.identity import KeyStore, Principal
from studio.metrics import StudioMetrics
from studio.previews import PreviewCache, PreviewEngine
from studio.responsible import SubmitContentGate
from studio.scheduler_setup import build_scheduler, scheduler_config
from studio.sharing import ShareSigner
from studio.submit import SubmitCheck, SubmitRequest, Submitter, UploadedFile
from studio.views import job_json
from studio.webhooks import Outbox, WebhookGuard, WebhookWorker

if TYPE_CHECKING:
    from engine.pipeline import FaceEngine

# Names other modules imported from here before the split; their homes are the
# modules above.
__all__ = [
    "PreviewCache",
    "Studio",
    "SubmitCheck",
    "SubmitRequest",
    "UploadedFile",
    "build_scheduler",
    "scheduler_config",
]

log = logging.getLogger("studio.jobs")


class Studio:
    """Everything one studio server needs, created before the app and started in its lifespan."""

    def __init__(self, config: StudioConfig, scheduler: Scheduler | None = None) -> None:
        self.config = config
        self.instance = secrets.token_hex(6)  # this server run, so clients notice restarts
        self.db = open_db(config.studio_dir)
        self.keys = KeyStore(self.db)
        self.signer = ShareSigner(self.db.secret("share_secret"))
        self.metrics = StudioMetrics(data_dir=config.data_dir, backend=config.backend)
        self.outbox = Outbox(self.db)
        self.guard = WebhookGuard(config.webhooks.allow)
        self.webhooks = WebhookWorker(
            self.outbox,
            self.guard,
            self.keys.webhook_secret,
            config.webhooks,
            on_result=lambda _job, outcome: self.metrics.webhook(outcome),
        )
        self.scheduler = scheduler or build_scheduler(config)
        self.models = ModelManager(
            config.models_dir or default_models_dir(config.data_dir), licences=config.licences
        )
        self.previews = PreviewCache()
        self.preview_engine = PreviewEngine(self.models)
        self.uploads_dir = config.studio_dir / "uploads"
        self.ui_files = CacheRegistry(
            config.ui_cache_dir,
            config.ui_cache_hours * 3600.0,
            int(config.ui_cache_gb * 1e9),
        )
        self.shutting_down = asyncio.Event()
        self.content_gate = SubmitContentGate(config.content_threshold, config.limits.max_pixels)
        self.gradio_app: Any = None  # set once Gradio is mounted (for --auth logins)
        self.auth = Authenticator(config, self.keys, gradio_app=lambda: self.gradio_app)
        self.submitter = Submitter(
            config,
            self.scheduler,
            self.metrics,
            self.guard,
            checks=[self.content_gate] if config.content_gate == "submit" else [],
            models=self.models,
            face_engine=lambda: self.face_engine(),
        )
        self.events = EventPump(
            self.scheduler,
            self.metrics,
            self.previews,
            self.outbox,
            self.webhooks,
            base_url=config.base_url,
        )
        self._pump_task: asyncio.Task | None = None
        self._warm_task: asyncio.Task | None = None
        self._expire_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = False

    @property
    def submit_checks(self) -> list[SubmitCheck]:
        """The hooks every submission passes (the content gate first); append to add one."""
        return self.submitter.checks

    @submit_checks.setter
    def submit_checks(self, checks: list[SubmitCheck]) -> None:
        self.submitter.checks = checks

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.uploads_dir.iterdir():  # temporary uploads of a previous run
            with contextlib.suppress(OSError):
                stale.unlink()
        await asyncio.to_thread(self.ui_files.reset)  # nobody owns a previous run's UI files
        self._expire_task = asyncio.create_task(self._expire_ui_files(), name="ui-cache")
        await self.scheduler.start()
        subscription = self.scheduler.subscribe()
        self._pump_task = asyncio.create_task(self.events.run(subscription), name="studio-events")
        self._warm_task = asyncio.create_task(self._warm_up(), name="studio-warm-up")
        await self.events.reconcile_webhooks()
        retention = self.config.retention_hours * 3600.0
        purged = await asyncio.to_thread(self.outbox.purge, time.time() - retention)
        if purged:
            log.info("webhook outbox: %d finished deliveries past retention removed", purged)
        self.webhooks.start()
        self.started = True
        log.info("studio started (instance %s)", self.instance)

    async def _warm_up(self) -> None:
        """Load the content gate's model in the background, not in the first submission."""
        if self.config.content_gate != "submit":
            return  # the workers gate the inputs, in each job's first stage
        try:
            await asyncio.to_thread(self.content_gate.warm_up)
        except Exception as exc:  # submissions will report it, clearly, to the submitter
            log.warning("content gate not ready: %s", exc)

    async def _expire_ui_files(self) -> None:
        """Gradio's cache is cleared on a schedule: nothing stays past its maximum age."""
        period = min(600.0, self.ui_files.max_age / 4)
        while True:
            await asyncio.sleep(period)
            try:
                removed = await asyncio.to_thread(self.ui_files.expire)
            except Exception:
                log.exception("UI cache clean-up failed")
                continue
            if removed:
                log.info("UI cache: %d expired file(s) removed", removed)

    def begin_shutdown(self) -> None:
        """Ends event streams (ours and Gradio's heartbeats) at once, so open browsers do
        not hold the shutdown up. Safe to call from a signal handler."""
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._end_streams)
        else:
            self._end_streams()

    def _end_streams(self) -> None:
        self.shutting_down.set()
        stop_event = getattr(self.gradio_app, "stop_event", None)
        if stop_event is not None:
            stop_event.set()

    async def stop(self) -> None:
        self.begin_shutdown()
        await self.webhooks.stop()
        await self.scheduler.stop(graceful=True)
        for task in (self._pump_task, self._warm_task, self._expire_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.content_gate.close()
        self.db.close()
        self.started = False
        log.info("studio stopped; running jobs were released back to the queue")

    # -- identity (studio.auth) -------------------------------------------------------

    def remote_workers(self) -> list[dict[str, Any]]:
        """Workers of a distributed backend as last announced ([] for local processes)."""
        if self.config.backend != "celery":
            return []  # local slots are the scheduler's own devices, shown from its stats
        return list(self.scheduler.executor.describe().get("workers") or [])

    def principal(self, request) -> Principal:
        """Who sent an API request; raises 401 ``ApiError`` otherwise (``Authenticator``)."""
        return self.auth.principal(request)

    def open_local_mode(self) -> bool:
        """Loopback-only, no key, no login: whoever can connect is on this machine."""
        return self.auth.open_local_mode()

    def ui_principal(self, cookies, username: str | None) -> Principal | None:
        """The owner of a browser: its login, else its cookie (``Authenticator``)."""
        return self.auth.ui_principal(cookies, username)

    def browser_owner(self, cookies, username: str | None) -> str | None:
        """The owner id of a browser (see ``ui_principal``), or None."""
        return self.auth.browser_owner(cookies, username)

    def ui_owner(self, request) -> str | None:
        """The owner of a request to the UI's own routes (Gradio's uploads and events)."""
        return self.auth.ui_owner(request)

    def check_login(self, username: str, password: str) -> bool:
        """Gradio's login form: an ``--auth`` user, or an API key's name and the key."""
        return self.auth.check_login(username, password)

    # -- submit (studio.submit) -------------------------------------------------------

    async def submit(self, request: SubmitRequest) -> Job:
        """Check a submission against the limits and hooks, then queue it (``Submitter``)."""
        return await self.submitter.submit(request)

    async def check_batch_size(self, owner: str, batch_id: str | None, adding: int) -> None:
        """``--max-batch``: a batch (the targets of one submission) has a bounded size."""
        await self.submitter.check_batch_size(owner, batch_id, adding)

    def face_engine(self) -> FaceEngine:
        """A CPU ``FaceEngine`` for the UI's face previews and model checks (lazy)."""
        return self.preview_engine.get()

    def new_upload_path(self) -> Path:
        return self.uploads_dir / f"{secrets.token_hex(16)}.part"

    # -- reads ------------------------------------------------------------------------

    def job_view(self, job: Job, base_url: str | None = None) -> dict[str, Any]:
        data = job_json(job, self.config.base_url if base_url is None else base_url)
        data["preview"] = self.previews.version(job.id)
        return data

    async def list_jobs(self, owner: str, limit: int = 200) -> list[Job]:
        return await self.scheduler.list(owner, limit=limit)

    async def batch_jobs(self, owner: str, batch_id: str) -> list[Job]:
        return await self.submitter.batch_jobs(owner, batch_id)

    # -- events (studio.event_pump) ---------------------------------------------------

    def enqueue_webhook(self, job: Job) -> None:
        """Queue a finished job's callback in the outbox (``EventPump``)."""
        self.events.enqueue_webhook(job)
