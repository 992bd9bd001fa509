"""``Studio``: the services one server holds (scheduler, keys, webhooks, metrics, previews).

The REST API and the Gradio UI are two front ends of the same object: both
submit through ``Studio.submit`` (so both enforce the same limits and hooks)
and both read jobs from the scheduler, never from Gradio's in-memory queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import EngineError, InvalidInput, InvalidOptions
from engine.models.manager import ModelManager, default_models_dir
from engine.options import parse_options
from scheduler.events import DELETED, PROGRESS, JobEvent
from scheduler.jobs import InputLimits, Job, JobStatus
from scheduler.retention import RetentionPolicy
from scheduler.service import Scheduler, SchedulerConfig
from scheduler.tasks import SCHEDULER_OPTION_KEYS
from studio import limits
from studio.config import StudioConfig
from studio.db import open_db
from studio.errors import ApiError
from studio.gradio_guard import CacheRegistry
from studio.identity import (
    COOKIE_NAME,
    LOCAL_OWNER,
    KeyStore,
    Principal,
    bearer_token,
    browser_owner,
)
from studio.metrics import StudioMetrics
from studio.responsible import SubmitContentGate
from studio.sharing import ShareSigner
from studio.views import job_json
from studio.webhooks import Outbox, WebhookGuard, WebhookWorker

log = logging.getLogger("studio.jobs")

_BATCH_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PREVIEW_CACHE_SIZE = 512
RECONCILE_SECONDS = 3600.0


@dataclass(frozen=True)
class UploadedFile:
    """An upload waiting in a temporary file; ``original`` is only a label."""

    original: str
    path: Path


@dataclass
class SubmitRequest:
    owner: str
    sources: list[UploadedFile]
    target: UploadedFile | None
    reference: UploadedFile | None = None
    options: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    via: str = "api"  # "api" | "ui"
    # The files are the server's own temporary copies (REST uploads), deleted after the
    # submit: the scheduler may link them into the job instead of copying them.
    private_files: bool = False
    checked: list[limits.CheckedUpload] = field(default_factory=list)


# A check run on every submission after the built-in ones and before the job is
# stored; it raises an EngineError to refuse. The responsible-use issue adds the
# consent check and the content gate here.
SubmitCheck = Callable[[SubmitRequest], Awaitable[None]]


class PreviewCache:
    """The newest preview JPEG of recent jobs, in memory (previews are transient)."""

    def __init__(self, size: int = PREVIEW_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[str, int, bytes]] = OrderedDict()

    def put(self, job_id: str, owner: str, jpeg: bytes) -> int:
        version = self._items[job_id][1] + 1 if job_id in self._items else 1
        self._items[job_id] = (owner, version, jpeg)
        self._items.move_to_end(job_id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return version

    def get(self, job_id: str, owner: str | None) -> tuple[int, bytes] | None:
        item = self._items.get(job_id)
        if item is None or (owner is not None and item[0] != owner):
            return None
        return item[1], item[2]

    def version(self, job_id: str) -> int | None:
        item = self._items.get(job_id)
        return item[1] if item else None

    def drop(self, job_id: str) -> None:
        self._items.pop(job_id, None)


def build_scheduler(config: StudioConfig) -> Scheduler:
    """The scheduler with the configured execution backend (local processes, Celery, or
    ZeroGPU calls)."""
    if config.backend == "zerogpu":
        from scheduler.zerogpu import zerogpu_scheduler

        return zerogpu_scheduler(scheduler_config(config))
    if config.backend != "celery":
        return Scheduler(scheduler_config(config))
    from scheduler.celery_backend import make_executor, scheduler_devices

    settings = dataclasses.replace(
        scheduler_config(config), devices=scheduler_devices(config.max_in_flight)
    )
    executor = make_executor(
        config.broker_url,
        config.data_dir,
        redis_url=config.redis_url,
        queue=config.celery_queue,
    )
    return Scheduler(settings, executor)


def scheduler_config(config: StudioConfig) -> SchedulerConfig:
    models_dir = config.models_dir or default_models_dir(config.data_dir)
    retention = config.retention_hours * 3600.0
    return SchedulerConfig.for_devices(
        Path(config.data_dir),
        config.devices,
        config.slots_per_device,
        max_queued=config.max_queued,
        max_queued_per_owner=config.max_queued_per_owner,
        split_video=config.splits_video,
        retention=RetentionPolicy(job_seconds=retention, history_seconds=retention),
        worker_settings={
            "models_dir": str(models_dir),
            "threads": config.threads_per_slot,
            "priority": config.worker_priority,
            "data_dir": str(config.data_dir),  # provenance keys: every output is stamped
            "content_threshold": config.content_threshold,
            "gate_images": False,  # gated at submit (studio.responsible); videos in the worker
        },
        max_input_bytes=config.limits.max_file_bytes,
        input_limits=InputLimits(config.limits.max_pixels, config.limits.max_sources),
    )


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
        self.models = ModelManager(config.models_dir or default_models_dir(config.data_dir))
        self.previews = PreviewCache()
        self.uploads_dir = config.studio_dir / "uploads"
        self.ui_files = CacheRegistry(
            config.ui_cache_dir,
            config.ui_cache_hours * 3600.0,
            int(config.ui_cache_gb * 1e9),
        )
        self.shutting_down = asyncio.Event()
        self.content_gate = SubmitContentGate(config.content_threshold, config.limits.max_pixels)
        self.submit_checks: list[SubmitCheck] = [self.content_gate]
        self.gradio_app: Any = None  # set once Gradio is mounted (for --auth logins)
        self._pump_task: asyncio.Task | None = None
        self._warm_task: asyncio.Task | None = None
        self._expire_task: asyncio.Task | None = None
        self._face_engine: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = False

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
        self._pump_task = asyncio.create_task(self._pump(subscription), name="studio-events")
        self._warm_task = asyncio.create_task(self._warm_up(), name="studio-warm-up")
        await self._reconcile_webhooks()
        retention = self.config.retention_hours * 3600.0
        purged = await asyncio.to_thread(self.outbox.purge, time.time() - retention)
        if purged:
            log.info("webhook outbox: %d finished deliveries past retention removed", purged)
        self.webhooks.start()
        self.started = True
        log.info("studio started (instance %s)", self.instance)

    async def _warm_up(self) -> None:
        """Load the content gate's model in the background, not in the first submission."""
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

    # -- identity ---------------------------------------------------------------------

    def remote_workers(self) -> list[dict[str, Any]]:
        """Workers of a distributed backend as last announced ([] for local processes)."""
        if self.config.backend != "celery":
            return []  # local slots are the scheduler's own devices, shown from its stats
        return list(self.scheduler.executor.describe().get("workers") or [])

    def principal(self, request) -> Principal:
        """Who sent an API request; raises 401 ``ApiError`` otherwise.

        Cross-site and foreign-host requests never get here (``studio.http_guard``)."""
        token = bearer_token(request.headers.get("authorization"))
        if token is not None:
            key = self.keys.authenticate(token)
            if key is None:
                raise ApiError(
                    401,
                    "unauthorized",
                    "invalid or revoked API key",
                    {"WWW-Authenticate": "Bearer"},
                )
            return Principal(key.owner, "key", key.name, operator=key.admin)
        principal = self.ui_principal(request.cookies, self._gradio_user(request))
        if principal is not None:
            return principal
        if self.open_local_mode():
            return Principal(LOCAL_OWNER, "local", operator=True)
        raise ApiError(
            401,
            "unauthorized",
            "an API key is required: send 'Authorization: Bearer <key>' "
            "(create one with: python app.py keys create NAME)",
            {"WWW-Authenticate": "Bearer"},
        )

    def open_local_mode(self) -> bool:
        """Loopback-only, no key, no login: whoever can connect is on this machine."""
        return self.config.api_open and not self.keys.any_active()

    def ui_principal(self, cookies, username: str | None) -> Principal | None:
        """The owner of a browser: its login (``--auth`` or an API key), else its cookie.

        Under ``--auth`` or ``--require-api-key`` a cookie alone is never an owner."""
        if self.config.ui_login:
            if not username:
                return None
            if username in dict(self.config.auth):
                return Principal(f"user:{username}", "user", operator=True)
            key = self.keys.active(username)
            if key is None:  # revoked since the login
                return None
            return Principal(key.owner, "key", key.name, operator=key.admin)
        owner = browser_owner(cookies.get(COOKIE_NAME))
        if owner is None:
            return None
        return Principal(owner, "browser", operator=self.open_local_mode())

    def browser_owner(self, cookies, username: str | None) -> str | None:
        """The owner id of a browser (see ``ui_principal``), or None."""
        principal = self.ui_principal(cookies, username)
        return principal.owner if principal else None

    def ui_owner(self, request) -> str | None:
        """The owner of a request to the UI's own routes (Gradio's uploads and events)."""
        return self.browser_owner(request.cookies, self._gradio_user(request))

    def check_login(self, username: str, password: str) -> bool:
        """Gradio's login form: an ``--auth`` user, or an API key's name and the key."""
        users = dict(self.config.auth)
        if username in users:
            return hmac.compare_digest(users[username].encode(), password.encode())
        if not self.config.require_api_key:
            return False
        key = self.keys.authenticate(password)
        return key is not None and key.name == username

    def _gradio_user(self, request) -> str | None:
        app = self.gradio_app
        if not self.config.ui_login or app is None:
            return None
        cookie_id = getattr(app, "cookie_id", "")
        token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
            f"access-token-unsecure-{cookie_id}"
        )
        return app.tokens.get(token) if token else None

    # -- submit -----------------------------------------------------------------------

    async def submit(self, request: SubmitRequest) -> Job:
        """Check a submission against the limits and hooks, then queue it."""
        try:
            job = await self._submit(request)
        except EngineError as exc:
            self.metrics.rejected.labels(exc.code).inc()
            raise
        except Exception as exc:
            self.metrics.rejected.labels(getattr(exc, "code", "error")).inc()
            raise
        self.metrics.submitted.labels(request.via).inc()
        log.info(
            "submitted via %s (%d source(s), %s target)",
            request.via,
            len(request.sources),
            request.checked[-1].kind if request.checked else "no",
            extra={"job_id": job.id, "owner": job.owner},
        )
        return job

    async def _submit(self, request: SubmitRequest) -> Job:
        options = request.options
        if not isinstance(options, dict):
            raise InvalidOptions("options must be a JSON object")
        parsed = parse_options(options, extra_keys=SCHEDULER_OPTION_KEYS)
        batch = options.get("batch_id")
        if batch is not None and (not isinstance(batch, str) or not _BATCH_RE.match(batch)):
            raise InvalidOptions("batch_id must be 1-64 letters, digits, '-' or '_'")
        if batch is not None:
            await self.check_batch_size(request.owner, batch, adding=1)
        callback = options.get("callback_url")
        if callback is not None:
            await self.guard.check(callback)
        cfg = self.config.limits
        if not request.sources:
            raise InvalidInput("at least one source image is required")
        if len(request.sources) > cfg.max_sources:
            raise InvalidInput(f"at most {cfg.max_sources} source images are allowed")
        if request.target is None:
            raise InvalidInput("a target image or video is required")
        request.checked = await asyncio.to_thread(self._check_files, request)
        await asyncio.to_thread(self._check_models, parsed.swap)
        for check in self.submit_checks:
            await check(request)
        return await self.scheduler.submit(
            request.owner,
            [(f.original, f.path) for f in request.sources],
            (request.target.original, request.target.path),
            options,
            idempotency_key=request.idempotency_key,
            reference=(request.reference.original, request.reference.path)
            if request.reference
            else None,
            hand_over_files=request.private_files,
        )

    async def check_batch_size(self, owner: str, batch_id: str | None, adding: int) -> None:
        """``--max-batch``: a batch (the targets of one submission) has a bounded size."""
        limit = self.config.limits.max_batch
        held = len(await self.batch_jobs(owner, batch_id)) if batch_id else 0
        if held + adding > limit:
            raise InvalidInput(
                f"a batch holds at most {limit} targets (--max-batch); "
                f"this one would hold {held + adding}"
            )

    def _check_files(self, request: SubmitRequest) -> list[limits.CheckedUpload]:
        cfg = self.config.limits
        checked = [
            limits.check_image(item.path, f"source {n}", item.original, cfg)
            for n, item in enumerate(request.sources, 1)
        ]
        if request.reference is not None:
            ref = request.reference
            checked.append(limits.check_image(ref.path, "reference", ref.original, cfg))
        assert request.target is not None
        checked.append(limits.check_target(request.target.path, request.target.original, cfg))
        return checked

    def _check_models(self, swap_options) -> None:
        """A missing model is a clear error now, not a failed job later."""
        self.face_engine().resolve(swap_options)

    def face_engine(self):
        """A CPU ``FaceEngine`` for the UI's face previews and model checks (lazy)."""
        if self._face_engine is None:
            from engine.pipeline import FaceEngine

            self._face_engine = FaceEngine(self.models, "cpu", intra_op_threads=1)
        return self._face_engine

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
        jobs = await self.scheduler.list(owner, limit=1000)
        return [job for job in jobs if (job.spec.options or {}).get("batch_id") == batch_id]

    # -- events -----------------------------------------------------------------------

    async def _pump(self, subscription) -> None:
        """Feeds metrics, logs, previews and webhooks from the scheduler's events."""
        async for event in subscription:
            try:
                await self._on_event(event)
            except Exception:
                log.exception("event handling failed", extra={"job_id": event.job_id})

    async def _on_event(self, event: JobEvent) -> None:
        if event.preview:
            self.previews.put(event.job_id, event.owner, event.preview)
        if event.type == PROGRESS:
            self.metrics.job_progress(event.job_id, event.fps)
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
        url = (job.spec.options or {}).get("callback_url")
        if not url or not job.finished:
            return
        payload = {
            "type": f"job.{job.status}",
            "timestamp": _iso_now(),
            "data": job_json(job, self.config.base_url),
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

    async def _reconcile_webhooks(self) -> None:
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
    from studio.views import iso

    return iso(time.time()) or ""
