"""``Scheduler``: the one object the studio talks to (submit, get, list, cancel, retry,
delete, subscribe, history, stats, start, stop).

Everything a submission carries is checked before anything is stored: the
job kind, the options (``engine.options.parse_options``, once: options the caller
parsed already are trusted as given), the inputs (the kind's validator: image
headers, a readable video), the models a ``swap`` job will run (``auto`` resolved),
the queue limits. Only then are the inputs copied into the job directory and the
row committed; if the commit is refused (queue full meanwhile), the copied files are
removed. The stored ``JobSpec`` is what the worker runs, without checking it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import imageio
from engine.devices import Device
from engine.errors import InvalidInput, InvalidOptions
from engine.models.resolve import ModelRef
from engine.options import ParsedOptions, options_to_dict, parse_options
from scheduler.dispatcher import Dispatcher, DispatcherSettings
from scheduler.errors import InvalidTransition, JobNotFound, SchedulerStopped
from scheduler.events import DELETED, EventBus, JobEvent, Subscription
from scheduler.executor import Executor
from scheduler.files import InputFile, JobFiles, safe_extension
from scheduler.holders import this_holder
from scheduler.jobs import InputLimits, Job, JobSpec, JobStatus, StoredFile
from scheduler.progress_gate import EVENT_RATE, worker_interval
from scheduler.retention import RetentionPolicy, SweepReport, sweep
from scheduler.retry import RetryPolicy
from scheduler.store import HistoryEntry, QueueLimits, Store
from scheduler.tasks import SCHEDULER_OPTION_KEYS, Submission, Upload, load_kinds

log = logging.getLogger(__name__)

InputArg = tuple[str, bytes | Path]
MAX_PRIORITY = 1000
HEAD_BYTES = 64
DB_NAME = "scheduler.sqlite3"


@dataclass(frozen=True)
class SchedulerConfig:
    """Settings of one scheduler. ``devices`` maps a device to its number of slots."""

    data_dir: Path
    devices: Mapping[str, int] = field(default_factory=lambda: {"cpu": 1})
    max_queued: int | None = 10_000
    max_queued_per_owner: int | None = 1_000
    max_attempts: int = 3
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 10.0
    recovery_seconds: float = 15.0
    default_time_limit: float | None = 6 * 3600.0
    cancel_grace_seconds: float = 2.0
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    retention_interval_seconds: float = 3600.0
    task_modules: tuple[str, ...] = ()
    worker_settings: Mapping[str, Any] = field(default_factory=dict)
    event_rate: float = EVENT_RATE
    progress_persist_seconds: float = 1.0
    max_input_bytes: int | None = None
    synchronous: str = "FULL"
    durable_files: bool = True
    split_video: bool = True  # a long video's segments run on every free slot at once
    # The operator's input limits, checked at submit and carried by every job's spec.
    input_limits: InputLimits = field(default_factory=InputLimits)

    def __post_init__(self) -> None:
        if not self.devices:
            raise InvalidOptions("at least one device is needed")
        for device, slots in self.devices.items():
            Device.parse(device)
            if int(slots) < 1:
                raise InvalidOptions(f"device {device} needs at least one slot; got {slots}")
        if self.max_attempts < 1:
            raise InvalidOptions("max_attempts must be at least 1")
        if self.heartbeat_seconds >= self.lease_seconds:
            raise InvalidOptions("the heartbeat must come more often than the lease expires")
        if self.synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise InvalidOptions("synchronous must be FULL, EXTRA or NORMAL")

    @classmethod
    def for_devices(
        cls, data_dir: Path, devices: Sequence[str], slots_per_device: int = 1, **kwargs: Any
    ) -> SchedulerConfig:
        return cls(
            data_dir=Path(data_dir), devices=dict.fromkeys(devices, slots_per_device), **kwargs
        )


@dataclass(frozen=True)
class DeviceStats:
    device: str
    slots: int
    busy: int

    @property
    def free(self) -> int:
        return max(0, self.slots - self.busy)


@dataclass(frozen=True)
class SchedulerStats:
    counts: dict[str, int]
    devices: list[DeviceStats]
    disk_bytes: int
    subscribers: int

    @property
    def queued(self) -> int:
        return self.counts.get("queued", 0)

    @property
    def running(self) -> int:
        return self.counts.get("running", 0)


class Scheduler:
    """The persistent job queue with its workers. ``await start()`` first."""

    def __init__(self, config: SchedulerConfig, executor: Executor | None = None) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.files = JobFiles(self.data_dir / "jobs", durable=config.durable_files)
        self.store = Store(
            self.data_dir / DB_NAME, synchronous=config.synchronous.upper(), instance=this_holder()
        )
        self.bus = EventBus(rate=config.event_rate)
        self._executor = executor
        self.dispatcher: Dispatcher | None = None
        self._retention_task: asyncio.Task | None = None
        self._running = False
        self.limits = QueueLimits(config.max_queued, config.max_queued_per_owner)

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            from scheduler.local_executor import LocalExecutor

            self._executor = LocalExecutor(
                self.config.task_modules,
                self.config.worker_settings,
                progress_interval=worker_interval(self.config.event_rate),
            )
        return self._executor

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        load_kinds(tuple(self.config.task_modules))  # an unknown module fails the start
        await self.store.open()
        slots = {device: int(n) for device, n in self.config.devices.items()}
        await self.executor.start(slots)
        self.dispatcher = Dispatcher(
            self.store,
            self.files,
            self.executor,
            self.bus,
            DispatcherSettings(
                slots=slots,
                lease_seconds=self.config.lease_seconds,
                heartbeat_seconds=self.config.heartbeat_seconds,
                recovery_seconds=self.config.recovery_seconds,
                progress_persist_seconds=self.config.progress_persist_seconds,
                cancel_grace_seconds=self.config.cancel_grace_seconds,
                default_time_limit=self.config.default_time_limit,
                retry=self.config.retry,
                split_video=self.config.split_video,
            ),
        )
        self._running = True
        await self.dispatcher.start()
        self._retention_task = asyncio.get_running_loop().create_task(self._retention_loop())

    async def stop(self, graceful: bool = True) -> None:
        """Stop; ``graceful`` puts running jobs back in the queue without charging an attempt."""
        if not self._running:
            return
        self._running = False
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention_task
        if self.dispatcher is not None:
            await self.dispatcher.stop(graceful)
        await self.store.close()
        self.bus.close()

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _check_running(self) -> Dispatcher:
        if not self._running or self.dispatcher is None:
            raise SchedulerStopped("the scheduler is not running")
        return self.dispatcher

    # -- submit -----------------------------------------------------------------------

    async def submit(
        self,
        owner: str,
        sources: Sequence[InputArg],
        target: InputArg | None,
        options: Mapping[str, Any] | ParsedOptions | None = None,
        *,
        kind: str = "swap",
        priority: int | None = None,
        idempotency_key: str | None = None,
        reference: InputArg | None = None,
        references: Sequence[InputArg] = (),
        time_limit: float | None = None,
        max_attempts: int | None = None,
        hand_over_files: bool = False,
    ) -> Job:
        """Check everything, store the inputs, queue the job. Returns the queued job
        (or the existing job when ``idempotency_key`` was used before by this owner).

        ``hand_over_files``: inputs given as paths are the caller's private temporary
        files, which it will not change (and may delete) afterwards; they are linked
        into the job rather than copied.

        ``options``: the flat mapping of the API, parsed here (the one validating parse
        of this path), or a ``ParsedOptions`` the caller parsed already under its own
        limits, stored as given and not parsed again. Either way the spec stores the
        canonical form, which the worker trusts."""
        dispatcher = self._check_running()
        _check_owner(owner)
        task_kind = load_kinds(tuple(self.config.task_modules)).get(kind)
        parsed, options = _check_options(options, task_kind.option_keys)
        priority = _check_priority(options.get("priority") if priority is None else priority)
        if idempotency_key is not None:
            _check_key(idempotency_key)
            existing = await self.store.find_by_key(owner, idempotency_key)
            if existing is not None:
                return existing
        if time_limit is not None and not (0 < float(time_limit) <= 7 * 24 * 3600):
            raise InvalidOptions(
                f"time_limit must be between 0 and 604800 seconds; got {time_limit}"
            )
        attempts = self.config.max_attempts if max_attempts is None else int(max_attempts)
        if attempts < 1:
            raise InvalidOptions("max_attempts must be at least 1")
        source_uploads = [
            self._upload("source", item, f"source {n}") for n, item in enumerate(sources, 1)
        ]
        target_upload = self._upload("target", target, "target") if target else None
        if reference is not None and not references:
            references = [reference]
        reference_uploads = [
            self._upload("reference", item, f"reference {n}")
            for n, item in enumerate(references, 1)
        ]
        reference_upload = reference_uploads[0] if reference_uploads else None
        limits = self.config.input_limits
        submission = Submission(
            source_uploads,
            target_upload,
            reference_upload,
            options,
            limits,
            references=reference_uploads,
        )
        if task_kind.validate is not None:
            await asyncio.to_thread(task_kind.validate, submission)
        models = await asyncio.to_thread(self._resolve_models, kind, parsed)
        await self.store.check_limits(owner, self.limits)

        job_id = secrets.token_urlsafe(16)
        stored: list[tuple[StoredFile, Upload]] = []
        for number, upload in enumerate(source_uploads, 1):
            stored.append((_stored(upload, f"source-{number}"), upload))
        target_file = _stored(target_upload, "target") if target_upload else None
        reference_files = [
            _stored(upload, "reference" if n == 1 else f"reference-{n}")
            for n, upload in enumerate(reference_uploads, 1)
        ]
        reference_file = reference_files[0] if reference_files else None
        spec = JobSpec(
            kind=kind,
            sources=tuple(item for item, _ in stored),
            target=target_file,
            reference=reference_file,
            references=tuple(reference_files) if len(reference_files) > 1 else (),
            options=options,
            output=task_kind.output_name(submission),
            limits=limits,
            models=models,
        )
        copies = [InputFile(item.name, _data(upload), hand_over_files) for item, upload in stored]
        if target_file and target_upload:
            copies.append(InputFile(target_file.name, _data(target_upload), hand_over_files))
        for item, upload in zip(reference_files, reference_uploads, strict=True):
            copies.append(InputFile(item.name, _data(upload), hand_over_files))
        try:
            input_bytes, sync = await asyncio.to_thread(self.files.store_inputs, job_id, copies)
        except OSError as exc:
            self.files.remove(job_id)
            raise InvalidInput(f"the inputs could not be stored: {exc.strerror or exc}") from None
        now = self.store.clock()
        job = Job(
            id=job_id,
            owner=owner,
            spec=spec,
            status=JobStatus.QUEUED,
            priority=priority,
            max_attempts=attempts,
            created_at=now,
            updated_at=now,
            time_limit=time_limit,
            idempotency_key=idempotency_key,
            input_bytes=input_bytes,
        )
        try:
            saved, created = await self.store.insert(job, self.limits, sync=sync)
        except asyncio.CancelledError:
            raise  # the insert is shielded and may still commit: keep its files
        except Exception:
            self.files.remove(job_id)
            raise
        if not created:
            self.files.remove(job_id)
            return saved
        self.bus.publish(JobEvent.of_job(saved))
        dispatcher.notify()
        return saved

    def _resolve_models(self, kind: str, parsed: ParsedOptions) -> tuple[ModelRef, ...] | None:
        """The models a job will run with, for its spec (None: a kind without models).

        Each kind resolves its own (``TaskKind.models``, given the workers' settings)."""
        resolver = load_kinds(tuple(self.config.task_modules)).get(kind).models
        if resolver is None:
            return None
        return resolver(parsed, self.config.worker_settings)

    def _upload(self, role: str, item: InputArg, label: str) -> Upload:
        if not isinstance(item, tuple) or len(item) != 2:
            raise InvalidInput(f"{label}: expected a (file name, bytes or path) pair")
        original, data = item
        original = str(original or "")[:255]
        name = f"{label} ({original})" if original else label
        if isinstance(data, bytes | bytearray | memoryview):
            data = bytes(data)
            size, head, path = len(data), data[:HEAD_BYTES], None
        elif isinstance(data, str | Path):
            path = Path(data)
            if not path.is_file():
                raise InvalidInput(f"{name}: file not found")
            size = path.stat().st_size
            with path.open("rb") as handle:
                head = handle.read(HEAD_BYTES)
            data = None
        else:
            raise InvalidInput(f"{name}: expected bytes or a file path")
        if size == 0:
            raise InvalidInput(f"{name}: the file is empty (0 bytes)")
        limit = self.config.max_input_bytes
        if limit is not None and size > limit:
            raise InvalidInput(
                f"{name}: {size / 1e6:.1f} MB is more than the limit of {limit / 1e6:.1f} MB"
            )
        return Upload(role, original, size, head, path, data)

    # -- reads ------------------------------------------------------------------------

    async def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job; ``JobNotFound`` when it does not exist or belongs to another owner."""
        self._check_running()
        job = await self.store.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise JobNotFound(f"no job {job_id}")
        return job

    async def list(
        self,
        owner: str,
        limit: int = 50,
        offset: int = 0,
        status: JobStatus | str | None = None,
    ) -> list[Job]:
        """An owner's jobs, newest first."""
        self._check_running()
        limit = max(1, min(int(limit), 1000))
        return await self.store.list(owner, limit, max(0, int(offset)), status)

    async def history(self, job_id: str, owner: str | None = None) -> list[HistoryEntry]:
        """What happened to a job; kept after deletion, until the retention period ends."""
        self._check_running()
        entries = await self.store.history(job_id)
        if not entries or (owner is not None and entries[0].owner != owner):
            raise JobNotFound(f"no job {job_id}")
        return entries

    def output_path(self, job: Job) -> Path | None:
        """The output file of a succeeded job."""
        if job.output_name is None:
            return None
        path = self.files.output_path(job.id, job.output_name)
        return path if path.is_file() else None

    def subscribe(self, job_id: str | None = None, owner: str | None = None) -> Subscription:
        """Events of one job, of one owner's jobs, or of everything."""
        return self.bus.subscribe(job_id=job_id, owner=owner)

    async def stats(self) -> SchedulerStats:
        dispatcher = self._check_running()
        busy = dispatcher.busy()
        devices = [
            DeviceStats(device, int(slots), busy.get(device, 0))
            for device, slots in self.config.devices.items()
        ]
        return SchedulerStats(
            counts=await self.store.counts(),
            devices=devices,
            disk_bytes=await self.store.disk_usage(),
            subscribers=self.bus.subscriber_count,
        )

    # -- requests ---------------------------------------------------------------------

    async def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """Cancel a queued or running job; a running one is stopped before this returns."""
        dispatcher = self._check_running()
        job = await self.store.cancel(job_id, owner)
        self.bus.publish(JobEvent.of_job(job))
        await dispatcher.cancel(job_id)
        return job

    async def retry(self, job_id: str, owner: str | None = None) -> Job:
        """Queue a failed or canceled job again, with a fresh set of attempts."""
        dispatcher = self._check_running()
        job = await self.store.requeue(job_id, owner)
        self.files.clean_partials(job_id)
        self.bus.publish(JobEvent.of_job(job))
        dispatcher.notify()
        return job

    async def set_priority(self, job_id: str, priority: int, owner: str | None = None) -> Job:
        self._check_running()
        job = await self.store.set_priority(job_id, _check_priority(priority), owner)
        self.bus.publish(JobEvent.of_job(job))
        return job

    async def delete(self, job_id: str, owner: str | None = None) -> None:
        """Remove a job and its files; a running job is canceled first."""
        dispatcher = self._check_running()
        for _ in range(5):
            job = await self.get(job_id, owner)
            if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
                with contextlib.suppress(InvalidTransition):
                    job = await self.cancel(job_id, owner)
            await dispatcher.cancel(job_id)
            try:
                deleted = await self.store.delete(job_id, owner)
                break
            except InvalidTransition:  # claimed between the cancel and the delete: again
                continue
        else:
            raise InvalidTransition(f"job {job_id} could not be stopped for deletion")
        self.files.remove(job_id)
        self.bus.publish(JobEvent(deleted.id, deleted.owner, DELETED, status=deleted.status))

    # -- retention --------------------------------------------------------------------

    async def sweep(self, now: float | None = None) -> SweepReport:
        """Delete expired jobs and their files now (it also runs periodically)."""
        self._check_running()
        return await sweep(self.store, self.files, self.config.retention, self.bus, now)

    async def _retention_loop(self) -> None:
        while True:
            try:
                report = await self.sweep()
                if report.expired or report.orphans_removed:
                    log.info(
                        "retention: %d jobs expired, %d orphan directories removed, %d bytes freed",
                        len(report.expired),
                        len(report.orphans_removed),
                        report.bytes_freed,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention sweep failed")
            await asyncio.sleep(self.config.retention_interval_seconds)


# -- checks -----------------------------------------------------------------------------


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner.strip() or len(owner) > 200:
        raise InvalidInput("owner must be a non-empty string of at most 200 characters")


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key or len(key) > 200:
        raise InvalidOptions("idempotency_key must be a non-empty string of at most 200 characters")


def _check_priority(value: Any) -> int:
    """An integer in [-MAX_PRIORITY, MAX_PRIORITY]; integral floats and digit strings count.

    Anything else (booleans, NaN, infinities, fractions, huge numbers, other types)
    is an ``InvalidOptions``, never an ``OverflowError`` or a number SQLite cannot store."""
    if value is None:
        return 0
    not_integer = InvalidOptions(f"priority must be an integer; got {_describe(value)}")
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise not_integer
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise not_integer
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not digits.isascii() or not digits.isdigit():
            raise not_integer
        if len(digits) > 20:
            raise InvalidOptions(
                f"priority must be between {-MAX_PRIORITY} and {MAX_PRIORITY}; "
                f"got {_describe(value)}"
            )
        number = int(text)
    else:
        number = value
    if not -MAX_PRIORITY <= number <= MAX_PRIORITY:
        raise InvalidOptions(
            f"priority must be between {-MAX_PRIORITY} and {MAX_PRIORITY}; got {_describe(value)}"
        )
    return number


def _describe(value: Any) -> str:
    """A short, safe rendering of a refused value for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    if isinstance(value, bool | int | float | str):
        text = repr(value)
        return text if len(text) <= 40 else f"{text[:30]}… ({len(text)} characters)"
    return f"a {type(value).__name__}"


def _check_options(
    options: Mapping[str, Any] | ParsedOptions | None, kind_keys: tuple[str, ...]
) -> tuple[ParsedOptions, dict[str, Any]]:
    """The typed options and their canonical form, the one the spec stores.

    A mapping is parsed (``parse_options``, with the scheduler's and the kind's keys passed
    through); a ``ParsedOptions`` was parsed by the caller and is trusted as it is."""
    if isinstance(options, ParsedOptions):
        parsed = options
    elif options is None or isinstance(options, Mapping):
        keys = (*SCHEDULER_OPTION_KEYS, *kind_keys)
        parsed = parse_options(dict(options or {}), extra_keys=keys)
    else:
        raise InvalidOptions("options must be a JSON object")
    canonical = options_to_dict(parsed)
    try:
        json.dumps(canonical)
    except (TypeError, ValueError):
        raise InvalidOptions(
            "options must be plain JSON values (strings, numbers, booleans)"
        ) from None
    return parsed, canonical


def _stored(upload: Upload, stem: str) -> StoredFile:
    sniffed = imageio.sniff_image_format(upload.head)
    extension = imageio.OUTPUT_EXTENSIONS.get(f".{sniffed}") if sniffed else None
    if sniffed and extension is None:
        extension = {"jpeg": ".jpg", "bmp": ".bmp", "tiff": ".tiff", "gif": ".gif"}.get(sniffed)
    extension = extension or safe_extension(upload.original)
    return StoredFile(name=f"{stem}{extension}", original=upload.original, size=upload.size)


def _data(upload: Upload) -> bytes | Path:
    if upload.data is not None:
        return upload.data
    assert upload.path is not None
    return upload.path
