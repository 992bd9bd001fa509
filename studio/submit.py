"""``Submitter``: the checks every submission passes before it becomes a job.

The REST API and the Gradio UI both submit through one ``Submitter`` (via
``Studio.submit``), so both enforce the same options, limits, models and
submit checks, and count the same metrics.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.cost import check_cost, frame_enhancer_scale, job_cost, native_size, trimmed_frames
from engine.errors import EngineError, InvalidInput, InvalidOptions
from engine.face_map import check_indices
from engine.models.manager import ModelManager
from engine.models.resolve import resolve
from engine.options import ParsedOptions, parse_options
from scheduler.jobs import Job
from scheduler.service import Scheduler
from scheduler.tasks import SCHEDULER_OPTION_KEYS
from studio import limits
from studio.config import StudioConfig
from studio.metrics import StudioMetrics
from studio.responsible import check_consent_option
from studio.webhooks import WebhookGuard

log = logging.getLogger("studio.jobs")

_BATCH_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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
    # Every ``reference`` upload in order (face_map's reference entries index them);
    # ``reference`` alone is the one-reference form, used when this is empty.
    references: list[UploadedFile] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    via: str = "api"  # "api" | "ui"
    # The files are the server's own temporary copies (REST uploads), deleted after the
    # submit: the scheduler may link them into the job instead of copying them.
    private_files: bool = False
    checked: list[limits.CheckedUpload] = field(default_factory=list)

    @property
    def all_references(self) -> list[UploadedFile]:
        if self.references:
            return list(self.references)
        return [self.reference] if self.reference is not None else []


# A check run on every submission after the built-in ones and before the job is
# stored; it raises an EngineError to refuse. The responsible-use issue adds the
# consent check and the content gate here.
SubmitCheck = Callable[[SubmitRequest], Awaitable[None]]


class Submitter:
    """Checks a submission (options, batch, callback, files, hooks), then queues it.

    The options are parsed here, once; the scheduler stores the parsed value and
    resolves the job's models (a missing one is refused there, before anything is
    stored). ``checks`` is the caller's list, kept by reference, so hooks added to it
    later still run."""

    def __init__(
        self,
        config: StudioConfig,
        scheduler: Scheduler,
        metrics: StudioMetrics,
        guard: WebhookGuard,
        checks: list[SubmitCheck],
        models: ModelManager | None = None,
        face_engine: Callable[[], Any] | None = None,
    ) -> None:
        self.config = config
        self.models = models
        self.face_engine = face_engine
        self.scheduler = scheduler
        self.metrics = metrics
        self.guard = guard
        self.checks = checks

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
        check_consent_option(options)
        batch = options.get("batch_id")
        if batch is not None and (not isinstance(batch, str) or not _BATCH_RE.match(batch)):
            raise InvalidOptions("batch_id must be 1-64 letters, digits, '-' or '_'")
        if batch is not None:
            await self.check_batch_size(request.owner, batch, adding=1)
        callback = options.get("callback_url")
        if callback is not None:
            await self.guard.check(callback)
        await self.check_uploads(request, parsed)
        for check in self.checks:
            await check(request)
        return await self.scheduler.submit(
            request.owner,
            [(f.original, f.path) for f in request.sources],
            (request.target.original, request.target.path),
            parsed,  # parsed once, here; the scheduler stores it and resolves its models
            idempotency_key=request.idempotency_key,
            references=[(item.original, item.path) for item in request.all_references],
            hand_over_files=request.private_files,
        )

    async def check_uploads(
        self, request: SubmitRequest, parsed: ParsedOptions, frames: int | None = None
    ) -> None:
        """The checks of a submission's files: counts, upload limits, readable headers and
        the bounded cost of the work (``frames``: how many frames it processes; None: the
        trimmed target's). Sets ``request.checked``. Previews pass the same checks."""
        cfg = self.config.limits
        if not request.sources:
            raise InvalidInput("at least one source image is required")
        if len(request.sources) > cfg.max_sources:
            raise InvalidInput(f"at most {cfg.max_sources} source images are allowed")
        if request.target is None:
            raise InvalidInput("a target image or video is required")
        request.checked = await asyncio.to_thread(self._check_files, request)
        await asyncio.to_thread(self._check_cost, parsed, request.checked[-1], frames)
        await asyncio.to_thread(self._check_face_map, parsed, request)

    async def check_batch_size(self, owner: str, batch_id: str | None, adding: int) -> None:
        """``--max-batch``: a batch (the targets of one submission) has a bounded size."""
        limit = self.config.limits.max_batch
        held = len(await self.batch_jobs(owner, batch_id)) if batch_id else 0
        if held + adding > limit:
            raise InvalidInput(
                f"a batch holds at most {limit} targets (--max-batch); "
                f"this one would hold {held + adding}"
            )

    async def batch_jobs(self, owner: str, batch_id: str) -> list[Job]:
        """An owner's jobs of one batch (what ``check_batch_size`` counts)."""
        jobs = await self.scheduler.list(owner, limit=1000)
        return [job for job in jobs if (job.spec.options or {}).get("batch_id") == batch_id]

    def _check_face_map(self, parsed: ParsedOptions, request: SubmitRequest) -> None:
        """``face_map`` names uploaded sources and references, and faces the target has (its
        image, or the first frame of its trimmed range, counted left to right): a 422
        before any work. A video whose first frame has no face is checked when it runs."""
        entries = parsed.swap.face_map
        if not entries:
            return
        faces = None
        if self.face_engine is not None and any(entry.kind == "face" for entry in entries):
            try:
                image = _first_image(request.checked[-1], parsed.output)
                found = self.face_engine().detect(image, parsed.swap)
            except EngineError:
                found = None  # a model the job lacks: the scheduler's resolution says so
            faces = len(found) if found else None
        check_indices(entries, len(request.sources), len(request.all_references), faces)

    def _check_cost(
        self, parsed: ParsedOptions, target: limits.CheckedUpload, frames: int | None = None
    ) -> None:
        """``--max-output-megapixels`` and ``--max-job-cost``: the work is bounded before a
        job exists (``engine.cost``), from the target's size and the chosen models."""
        cfg = self.config.limits
        models = self.models
        if models is None:
            return
        try:
            resolved = resolve(parsed.swap, models, verify=False)
        except EngineError:
            return  # the scheduler's resolution reports a missing model with its fix
        native = native_size(models, resolved.swapper)
        scale = frame_enhancer_scale(models, resolved.frame_enhancer)
        if frames is None:
            frames = 1
            if target.kind == "video":
                frames = trimmed_frames(
                    target.frames, target.duration, parsed.output.trim_start, parsed.output.trim_end
                )
        cost = job_cost(
            parsed.swap,
            width=target.width,
            height=target.height,
            frames=frames,
            swapper_native=native,
            frame_enhancer_scale=scale,
        )
        check_cost(cost, cfg.max_output_pixels, cfg.max_job_cost)

    def _check_files(self, request: SubmitRequest) -> list[limits.CheckedUpload]:
        cfg = self.config.limits
        checked = [
            limits.check_image(item.path, f"source {n}", item.original, cfg)
            for n, item in enumerate(request.sources, 1)
        ]
        for number, ref in enumerate(request.all_references):
            label = "reference" if len(request.all_references) == 1 else f"reference {number}"
            checked.append(limits.check_image(ref.path, label, ref.original, cfg))
        assert request.target is not None
        checked.append(limits.check_target(request.target.path, request.target.original, cfg))
        return checked


def _first_image(target: limits.CheckedUpload, output):
    """The target image, or the first frame of a video target's (trimmed) range."""
    if target.kind == "video":
        from engine.video.decode import read_frame
        from engine.video.probe import probe
        from engine.video.segments import trim_range

        first, _ = trim_range(probe(target.path).timeline, output, target.original)
        return read_frame(target.path, first)
    from engine import imageio

    return imageio.load_image(target.path)
