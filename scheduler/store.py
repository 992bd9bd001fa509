"""The persistent job store: one SQLite file in WAL mode, driven through aiosqlite.

Writes go through **one writer connection** owned by one task. Callers hand it
small operations; it runs everything that is waiting as one transaction,
begun with ``BEGIN IMMEDIATE`` at the first write, committed once. Because the
writer task, not the caller, runs the transaction, cancelling a caller never
leaves a transaction half done: the operation is shielded and still commits.
Reads use a second, read-only connection; WAL lets it read while the writer writes.

Durability (``synchronous="FULL"``, the default): an operation that must
survive a power cut (submit, result, failure, cancel, retry, delete) is
acknowledged only after the WAL has been fsynced (together with the files it
names: inputs, the renamed output), which is what SQLite's own
``synchronous=FULL`` does at each commit. The fsync runs in a syncer task
while the writer goes on with the next batch, and one fsync covers every batch
committed before it (group commit). Claims, lease renewals and progress skip
the fsync: losing them in a power cut only means a job runs again or shows
older progress. The connection itself runs ``synchronous=NORMAL``, which in
WAL mode never corrupts the database. ``synchronous="NORMAL"`` here turns the
fsyncs off altogether (faster; a power cut may lose the last acknowledged
submits). A killed process loses nothing either way: committed pages are in
the operating system's cache.

History and queue counters are written by triggers, in the same transaction
as the change they record.

Claiming is ``UPDATE … WHERE seq IN (SELECT … LIMIT n) RETURNING …`` in a
``BEGIN IMMEDIATE`` transaction, so no two claimers (connections or
processes) can take the same job. The order is priority, then owner round
robin, then age: each job gets a ``round`` when queued, ``max(owner's next
round, round now being served)``, so an owner with a hundred queued jobs holds
rounds 0..99 while a newcomer's job lands in the round being served and runs
within the next free slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from engine.progress import JobProgress
from scheduler.errors import InvalidTransition, JobNotFound, QueueFull, SchedulerStopped
from scheduler.holders import certainly_gone
from scheduler.jobs import Job, JobError, JobSpec, JobStatus, check_transition

T = TypeVar("T")
Op = Callable[[aiosqlite.Connection], Awaitable[T]]

_V1 = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    priority INTEGER NOT NULL DEFAULT 0,
    round INTEGER NOT NULL DEFAULT 0,
    progress REAL,
    stage TEXT,
    eta_seconds REAL,
    fps REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    runs INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_message TEXT,
    error_permanent INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    run_after REAL NOT NULL DEFAULT 0,
    lease_expires_at REAL,
    lease_owner TEXT,
    device TEXT,
    time_limit REAL,
    idempotency_key TEXT,
    result TEXT,
    input_bytes INTEGER NOT NULL DEFAULT 0,
    output_bytes INTEGER NOT NULL DEFAULT 0,
    note TEXT  -- who or what caused the last status change, for the history
);
CREATE INDEX jobs_claim ON jobs (status, priority DESC, round, seq);
CREATE INDEX jobs_owner ON jobs (owner, status);
CREATE INDEX jobs_owner_seq ON jobs (owner, seq);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Per owner: the next fairness round and how many jobs wait (kept by the triggers below).
CREATE TABLE owners (
    owner TEXT PRIMARY KEY,
    next_round INTEGER NOT NULL DEFAULT 0,
    queued INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- 'round': the round being served; 'queued': jobs waiting in all.
CREATE TABLE state (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
INSERT INTO state (key, value) VALUES ('round', 0), ('queued', 0);
CREATE TABLE job_history (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX job_history_job ON job_history (job_id, id);
CREATE INDEX job_history_at ON job_history (at);

-- The history and the counters are written by the database itself, in the same
-- transaction as the change they record: no code path can forget them.
CREATE TRIGGER jobs_submitted AFTER INSERT ON jobs BEGIN
    INSERT INTO owners (owner) VALUES (NEW.owner) ON CONFLICT (owner) DO NOTHING;
    UPDATE owners SET next_round = MAX(next_round, NEW.round + 1),
        queued = queued + (NEW.status = 'queued') WHERE owner = NEW.owner;
    UPDATE state SET value = value + (NEW.status = 'queued') WHERE key = 'queued';
    INSERT INTO job_history (job_id, owner, at, event, detail) VALUES (
        NEW.id, NEW.owner, NEW.created_at, 'submitted',
        json_object('kind', NEW.kind, 'priority', NEW.priority, 'input_bytes', NEW.input_bytes,
            -- the person's statement that they may use the faces: who asserted it, and when
            'consent', CASE WHEN json_type(NEW.spec, '$.options.consent') = 'true'
                THEN json_object('asserted', json('true'), 'owner', NEW.owner,
                                 'at', NEW.created_at)
                ELSE json_object('asserted', json('false')) END));
END;
CREATE TRIGGER jobs_round AFTER UPDATE OF round ON jobs WHEN NEW.round != OLD.round BEGIN
    UPDATE owners SET next_round = MAX(next_round, NEW.round + 1) WHERE owner = NEW.owner;
END;
CREATE TRIGGER jobs_waiting AFTER UPDATE OF status ON jobs
WHEN (OLD.status = 'queued') != (NEW.status = 'queued') BEGIN
    UPDATE owners SET queued = queued + (NEW.status = 'queued') - (OLD.status = 'queued')
        WHERE owner = NEW.owner;
    UPDATE state SET value = value + (NEW.status = 'queued') - (OLD.status = 'queued')
        WHERE key = 'queued';
END;
CREATE TRIGGER jobs_removed AFTER DELETE ON jobs WHEN OLD.status = 'queued' BEGIN
    UPDATE owners SET queued = queued - 1 WHERE owner = OLD.owner;
    UPDATE state SET value = value - 1 WHERE key = 'queued';
END;
CREATE TRIGGER jobs_started AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'running' AND OLD.status != 'running' BEGIN
    UPDATE state SET value = NEW.round WHERE key = 'round';
    INSERT INTO job_history (job_id, owner, at, event, detail) VALUES (
        NEW.id, NEW.owner, NEW.updated_at, 'started',
        json_object('device', NEW.device, 'run', NEW.runs, 'attempt', NEW.attempts + 1));
END;
CREATE TRIGGER jobs_succeeded AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'succeeded' AND OLD.status != 'succeeded' BEGIN
    INSERT INTO job_history (job_id, owner, at, event, detail) VALUES (
        NEW.id, NEW.owner, NEW.updated_at, 'succeeded',
        json_object('run', NEW.runs, 'output_bytes', NEW.output_bytes,
                    'result', json(COALESCE(NEW.result, '{}'))));
END;
CREATE TRIGGER jobs_failed AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'failed' AND OLD.status != 'failed' BEGIN
    INSERT INTO job_history (job_id, owner, at, event, detail) VALUES (
        NEW.id, NEW.owner, NEW.updated_at, 'failed',
        json_object('run', NEW.runs, 'code', NEW.error_code, 'error', NEW.error_message,
                    'attempts', NEW.attempts));
END;
CREATE TRIGGER jobs_canceled AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'canceled' AND OLD.status != 'canceled' BEGIN
    INSERT INTO job_history (job_id, owner, at, event, detail) VALUES (
        NEW.id, NEW.owner, NEW.updated_at, 'canceled',
        json_object('was', OLD.status, 'by', NEW.note));
END;
CREATE TRIGGER jobs_retried AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'queued' AND OLD.status = 'running' AND NEW.attempts > OLD.attempts BEGIN
    INSERT INTO job_history (job_id, owner, at, event, detail) VALUES (
        NEW.id, NEW.owner, NEW.updated_at, 'retried',
        json_object('run', NEW.runs, 'reason', NEW.error_message, 'code', NEW.error_code,
                    'attempts', NEW.attempts,
                    'delay_seconds', ROUND(NEW.run_after - NEW.updated_at, 3)));
END;
CREATE TRIGGER jobs_released AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'queued' AND OLD.status = 'running' AND NEW.attempts = OLD.attempts BEGIN
    INSERT INTO job_history (job_id, owner, at, event, detail) VALUES (
        NEW.id, NEW.owner, NEW.updated_at, 'released',
        json_object('run', NEW.runs, 'reason', NEW.note));
END;
CREATE TRIGGER jobs_requeued AFTER UPDATE OF status ON jobs
WHEN NEW.status = 'queued' AND OLD.status IN ('failed', 'canceled') BEGIN
    INSERT INTO job_history (job_id, owner, at, event, detail) VALUES (
        NEW.id, NEW.owner, NEW.updated_at, 'retried',
        json_object('reason', NEW.note, 'was', OLD.status));
END;
"""

MIGRATIONS: tuple[str, ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)

JOB_COLUMNS = (
    "id, owner, spec, status, priority, progress, stage, eta_seconds, fps, attempts, "
    "max_attempts, runs, error_code, error_message, error_permanent, created_at, updated_at, "
    "started_at, finished_at, run_after, lease_expires_at, device, time_limit, "
    "idempotency_key, result, input_bytes, output_bytes"
)


def job_from_row(row: tuple) -> Job:
    (
        job_id, owner, spec, status, priority, progress, stage, eta, fps, attempts,
        max_attempts, runs, error_code, error_message, error_permanent, created_at,
        updated_at, started_at, finished_at, run_after, lease, device, time_limit,
        idempotency_key, result, input_bytes, output_bytes,
    ) = row  # fmt: skip
    error = None
    if error_code is not None:
        error = JobError(error_code, error_message or "", bool(error_permanent))
    return Job(
        id=job_id,
        owner=owner,
        spec=JobSpec.from_json(spec),
        status=JobStatus(status),
        priority=priority,
        progress=progress,
        stage=stage,
        eta_seconds=eta,
        fps=fps,
        attempts=attempts,
        max_attempts=max_attempts,
        runs=runs,
        error=error,
        created_at=created_at,
        updated_at=updated_at,
        started_at=started_at,
        finished_at=finished_at,
        run_after=run_after,
        lease_expires_at=lease,
        device=device,
        time_limit=time_limit,
        idempotency_key=idempotency_key,
        result=json.loads(result) if result else None,
        input_bytes=input_bytes,
        output_bytes=output_bytes,
    )


@dataclass(frozen=True)
class QueueLimits:
    """Most queued jobs allowed in all, and per owner (``None``: no limit)."""

    total: int | None = None
    per_owner: int | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a job's append-only history."""

    job_id: str
    owner: str
    at: float
    event: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class ProgressUpdate:
    """The latest progress of one run, to persist; ``None`` keeps the stored fraction and
    stage and clears the ETA and fps."""

    job_id: str
    run: int
    progress: JobProgress | None


class Store:
    """The job store. ``await open()`` before use, ``await close()`` after."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 30_000,
        batch_limit: int = 256,
        clock: Callable[[], float] = time.time,
        instance: str = "",
    ) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.batch_limit = batch_limit
        self.clock = clock
        self.instance = instance
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        # FULL (or EXTRA): every transaction that must survive a power cut (submits,
        # results, cancels, …) is fsynced before it is acknowledged. NORMAL: nothing is.
        self.sync_durable = synchronous.upper() in ("FULL", "EXTRA")
        self._pending: list[tuple[Op, asyncio.Future, bool, tuple[Path, ...]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        # Committed but not yet fsynced: (future, value) pairs and the paths to sync first.
        self._unsynced: list[tuple[asyncio.Future, Any]] = []
        self._unsynced_paths: list[Path] = []
        self._syncer: asyncio.Task | None = None
        self.batches = 0  # transactions committed, for operators and benchmarks

    # -- life cycle -------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        setup = await self._connect(None)
        try:
            await setup.execute("PRAGMA journal_mode=WAL")
            await self._migrate(setup)
        finally:
            await setup.close()
        # The writer begins its transactions implicitly, with BEGIN IMMEDIATE, at an
        # operation's first write: one thread hop fewer per transaction.
        self._writer = await self._connect("IMMEDIATE")
        # SQLite itself never fsyncs at commit (WAL + NORMAL is still safe from
        # corruption); the batches that must be durable fsync the WAL themselves.
        await self._writer.execute("PRAGMA synchronous=NORMAL")
        self._reader = await self._connect(None)
        await self._reader.execute("PRAGMA query_only=1")
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._write_loop(), name="store-writer")

    async def _connect(self, isolation_level: str | None) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self.path, isolation_level=isolation_level)
        await db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        return db

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        """Bring the schema up to ``SCHEMA_VERSION``, one version per transaction."""
        (version,) = (await db.execute_fetchall("PRAGMA user_version"))[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has schema version {version}, newer than this program's "
                f"{SCHEMA_VERSION}; upgrade Fusion Studio or use another data directory"
            )
        for number in range(version, SCHEMA_VERSION):
            await db.execute("BEGIN IMMEDIATE")
            try:
                (current,) = (await db.execute_fetchall("PRAGMA user_version"))[0]
                if current == number:  # another process may have migrated meanwhile
                    for statement in _statements(MIGRATIONS[number]):
                        await db.execute(statement)
                    await db.execute(f"PRAGMA user_version={number + 1}")
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._wake.set()
            await self._task
            self._task = None
        if self._syncer is not None:
            await self._syncer
        for db in (self._reader, self._writer):
            if db is not None:
                await db.close()
        self._reader = self._writer = None

    async def schema_version(self) -> int:
        return (await self._db().execute_fetchall("PRAGMA user_version"))[0][0]

    # -- the writer -------------------------------------------------------------------

    async def write(self, op: Op[T], durable: bool = True, sync: tuple[Path, ...] = ()) -> T:
        """Run ``op`` inside a write transaction; the commit survives the caller's cancellation.

        ``durable``: the commit is on disk (the WAL fsynced) before this returns. Claims,
        lease renewals and progress are not durable: losing them in a power cut only
        means a job runs again or shows older progress, so they skip the fsync (a
        later durable commit in the same WAL makes them durable too). ``sync``: files or
        directories the operation changed outside the database (a renamed output), fsynced
        with the commit, before it.

        Contract for operations: a deliberate error (``JobNotFound``, ``QueueFull``, …)
        is raised *before* the operation writes anything, so the other operations of
        its batch go on. A database error aborts the whole batch, and every operation
        in it fails with that error.
        """
        if self._task is None or self._closing:
            raise SchedulerStopped("the job store is closed")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append((op, future, durable, sync))
        self._wake.set()
        return await asyncio.shield(future)

    async def _write_loop(self) -> None:
        db = self._writer
        assert db is not None
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._pending[: self.batch_limit]
            del self._pending[: self.batch_limit]
            await self._run_batch(db, batch)

    async def _run_batch(
        self,
        db: aiosqlite.Connection,
        batch: list[tuple[Op, asyncio.Future, bool, tuple[Path, ...]]],
    ) -> None:
        """One transaction for the whole batch: it begins (``BEGIN IMMEDIATE``) at the
        first write of any operation and commits once, after the last operation.

        Durable operations are answered only once the WAL is fsynced, by the syncer
        task, while the writer already runs the next batch: a claim never waits for
        somebody else's fsync, and one fsync covers every batch committed before it.
        """
        outcomes: list[tuple[bool, Any]] = []
        try:
            for op, _, _, _ in batch:
                try:
                    outcomes.append((True, await op(db)))
                except sqlite3.Error:
                    raise
                except Exception as exc:  # deliberate, raised before the op wrote anything
                    outcomes.append((False, exc))
            wrote = db.in_transaction
            await db.commit()
            self.batches += 1
        except Exception as exc:  # the transaction failed (disk full, I/O error, …)
            with contextlib.suppress(sqlite3.Error):
                await db.rollback()
            outcomes = [(False, exc)] * len(batch)
            wrote = False
        for (_, future, durable, paths), (ok, value) in zip(batch, outcomes, strict=True):
            if ok and wrote and durable and self.sync_durable:
                self._unsynced.append((future, value))
                self._unsynced_paths.extend(paths)
            else:
                _resolve(future, ok, value)
        if self._unsynced and (self._syncer is None or self._syncer.done()):
            self._syncer = asyncio.get_running_loop().create_task(self._sync_loop())

    async def _sync_loop(self) -> None:
        while self._unsynced:
            waiting, self._unsynced = self._unsynced, []
            paths, self._unsynced_paths = self._unsynced_paths, []
            try:
                # Files and directories first, the WAL last: what it records is on disk.
                await asyncio.to_thread(_fsync_paths, [*dict.fromkeys(paths), self.wal_path])
            except OSError as exc:
                for future, _ in waiting:
                    _resolve(future, False, exc)
            else:
                for future, value in waiting:
                    _resolve(future, True, value)

    @property
    def wal_path(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def _db(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise SchedulerStopped("the job store is closed")
        return self._reader

    # -- submit -----------------------------------------------------------------------

    async def insert(
        self, job: Job, limits: QueueLimits | None = None, sync: tuple[Path, ...] = ()
    ) -> tuple[Job, bool]:
        """Store a new queued job. Returns ``(job, True)``, or ``(existing, False)`` when
        the owner already has a job with the same idempotency key. ``sync``: the job's
        input files and directories, fsynced before the commit is acknowledged."""
        total = limits.total if limits and limits.total is not None else -1
        per_owner = limits.per_owner if limits and limits.per_owner is not None else -1

        async def op(db: aiosqlite.Connection) -> tuple[Job, bool]:
            if job.idempotency_key is not None:
                existing = await _fetch_job(
                    db, "owner = ? AND idempotency_key = ?", (job.owner, job.idempotency_key)
                )
                if existing is not None:
                    return existing, False
            # One statement: the queue limits are checked in its WHERE clause.
            cursor = await db.execute(
                "INSERT INTO jobs (id, owner, kind, spec, status, priority, round, attempts, "
                "max_attempts, created_at, updated_at, time_limit, idempotency_key, "
                f"input_bytes, run_after) SELECT ?, ?, ?, ?, 'queued', ?, {_NEXT_ROUND}, 0, "
                "?, ?, ?, ?, ?, ?, 0 "
                "WHERE (? < 0 OR (SELECT value FROM state WHERE key = 'queued') < ?) "
                "AND (? < 0 OR COALESCE((SELECT queued FROM owners WHERE owner = ?), 0) < ?)",
                (
                    job.id, job.owner, job.kind, job.spec.to_json(), job.priority, job.owner,
                    job.max_attempts, job.created_at, job.created_at, job.time_limit,
                    job.idempotency_key, job.input_bytes,
                    total, total, per_owner, job.owner, per_owner,
                ),
            )  # fmt: skip
            if cursor.rowcount != 1:
                assert limits is not None
                await _check_limits(db, job.owner, limits)  # raises QueueFull with the numbers
                raise QueueFull("the queue is full; try again later")
            return job, True

        return await self.write(op, sync=sync)

    async def check_limits(self, owner: str, limits: QueueLimits) -> None:
        """Raise ``QueueFull`` now (read-only), before inputs are copied in."""
        await _check_limits(self._db(), owner, limits)

    # -- claiming ---------------------------------------------------------------------

    async def claim(self, device: str, n: int, lease_seconds: float) -> list[Job]:
        """Take up to ``n`` queued jobs that are due, mark them running on ``device``."""

        async def op(db: aiosqlite.Connection) -> list[Job]:
            now = self.clock()
            rows = await db.execute_fetchall(
                "UPDATE jobs SET status = 'running', runs = runs + 1, started_at = ?, "
                "updated_at = ?, lease_expires_at = ?, lease_owner = ?, device = ?, "
                "stage = 'starting', eta_seconds = NULL, fps = NULL, note = NULL "
                "WHERE seq IN (SELECT seq FROM jobs WHERE status = 'queued' AND run_after <= ? "
                f"ORDER BY priority DESC, round, seq LIMIT ?) RETURNING {JOB_COLUMNS}",
                (now, now, now + lease_seconds, self.instance, device, now, n),
            )
            jobs = [job_from_row(row) for row in rows]
            jobs.sort(key=lambda j: (-j.priority, j.created_at))
            return jobs

        return await self.write(op, durable=False)

    async def next_due(self) -> float | None:
        """When the earliest queued job becomes due (``None`` when nothing is queued)."""
        rows = await self._db().execute_fetchall(
            "SELECT MIN(run_after) FROM jobs WHERE status = 'queued'"
        )
        return rows[0][0]

    async def renew(self, leases: Iterable[tuple[str, int]], lease_seconds: float) -> set[str]:
        """Extend the leases of running jobs; returns the ids whose lease was lost."""
        leases = list(leases)
        if not leases:
            return set()

        async def op(db: aiosqlite.Connection) -> set[str]:
            renewed: set[str] = set()
            expires = self.clock() + lease_seconds
            for start in range(0, len(leases), 400):
                chunk = leases[start : start + 400]
                values = ", ".join("(?, ?)" for _ in chunk)
                params: list[Any] = [expires]
                for job_id, run in chunk:
                    params += [job_id, run]
                rows = await db.execute_fetchall(
                    f"UPDATE jobs SET lease_expires_at = ? WHERE status = 'running' "
                    f"AND (id, runs) IN (VALUES {values}) RETURNING id",
                    params,
                )
                renewed.update(row[0] for row in rows)
            return {job_id for job_id, _ in leases} - renewed

        return await self.write(op, durable=False)

    # -- ends of runs (fenced by the run number) --------------------------------------

    async def complete(
        self,
        job_id: str,
        run: int,
        output_bytes: int,
        publish: Callable[[], None],
        result: dict[str, Any],
        sync: tuple[Path, ...] = (),
    ) -> Job | None:
        """Mark run ``run`` succeeded and publish its output, in one transaction.

        ``publish`` (the rename of the already-synced partial output to its final
        name, a quick metadata operation) runs only when the run still holds the
        job, right after the fenced update and before the commit: no cancel, retry
        or claim can come in between. Returns ``None``, publishing nothing, when the
        run lost the job (canceled, deleted, or recovered for another run).
        """

        async def op(db: aiosqlite.Connection) -> Job | None:
            now = self.clock()
            job = await _update_returning(
                db,
                "status = 'succeeded', finished_at = ?, updated_at = ?, progress = 1.0, "
                "stage = 'done', eta_seconds = 0, lease_expires_at = NULL, result = ?, "
                "output_bytes = ?, error_code = NULL, error_message = NULL, error_permanent = NULL",
                (now, now, _json(result), output_bytes),
                job_id,
                run=run,
            )
            if job is not None:
                try:
                    publish()
                except OSError as exc:  # should not happen: the file was checked just before
                    raise sqlite3.OperationalError(f"could not publish the output: {exc}") from exc
            return job

        return await self.write(op, sync=sync)

    async def fail(self, job_id: str, run: int, error: JobError) -> Job | None:
        """End run ``run`` with a permanent failure (it counts as an attempt)."""

        async def op(db: aiosqlite.Connection) -> Job | None:
            return await _set_failed(db, job_id, run, error, self.clock())

        return await self.write(op)

    async def retry_later(self, job_id: str, run: int, error: JobError, delay: float) -> Job | None:
        """End run ``run`` with a transient failure: back to queued after ``delay`` seconds,
        or failed once the job has used its maximum attempts."""

        async def op(db: aiosqlite.Connection) -> Job | None:
            return await _charge_attempt(db, job_id, run, error, self.clock(), delay)

        return await self.write(op)

    async def release(self, job_id: str, run: int, reason: str) -> Job | None:
        """Give a running job back to the queue without charging an attempt (graceful stop)."""

        async def op(db: aiosqlite.Connection) -> Job | None:
            return await _update_returning(
                db,
                "status = 'queued', updated_at = ?, lease_expires_at = NULL, stage = NULL, "
                "eta_seconds = NULL, fps = NULL, run_after = 0, note = ?",
                (self.clock(), reason),
                job_id,
                run=run,
            )

        return await self.write(op)

    async def save_progress(self, updates: list[ProgressUpdate]) -> None:
        """Persist the latest progress of running jobs so that a reload shows it."""
        if not updates:
            return
        rows = []
        for update in updates:
            progress = update.progress or JobProgress()  # the record, as its columns
            rows.append(
                (
                    progress.fraction,
                    progress.stage,
                    progress.eta_seconds,
                    progress.fps,
                    self.clock(),
                    update.job_id,
                    update.run,
                )
            )

        async def op(db: aiosqlite.Connection) -> None:
            await db.executemany(
                "UPDATE jobs SET progress = COALESCE(?, progress), stage = COALESCE(?, stage), "
                "eta_seconds = ?, fps = ?, updated_at = ? "
                "WHERE id = ? AND runs = ? AND status = 'running'",
                rows,
            )

        await self.write(op, durable=False)

    async def recover_expired(self, delay: Callable[[int], float], exclude: set[str]) -> list[Job]:
        """Jobs whose lease expired go back to queued with ``attempts + 1`` (or to failed
        after their maximum attempts); so do jobs whose lease holder is certainly gone (a
        crashed server on this host: ``scheduler.holders``), without waiting for the
        lease to run out. ``exclude``: jobs this process is running now."""

        async def op(db: aiosqlite.Connection) -> list[Job]:
            now = self.clock()
            rows = await db.execute_fetchall(
                "SELECT id, runs, attempts, lease_expires_at < ?, lease_owner FROM jobs "
                "WHERE status = 'running'",
                (now,),
            )
            error = JobError(
                "lease_expired",
                "the job's worker stopped responding (the server restarted or the worker was lost)",
                permanent=False,
            )
            changed = []
            for job_id, run, attempts, expired, holder in rows:
                if not expired and (holder == self.instance or not certainly_gone(holder)):
                    continue
                if job_id not in exclude:
                    job = await _charge_attempt(db, job_id, run, error, now, delay(attempts + 1))
                    if job is not None:
                        changed.append(job)
            return changed

        return await self.write(op)

    # -- requests from people ---------------------------------------------------------

    async def cancel(self, job_id: str, owner: str | None = None, by: str = "owner") -> Job:
        async def op(db: aiosqlite.Connection) -> Job:
            status = await _status_for(db, job_id, owner)
            check_transition(job_id, status, JobStatus.CANCELED)
            now = self.clock()
            return await _update_returning(
                db,
                "status = 'canceled', finished_at = ?, updated_at = ?, lease_expires_at = NULL, "
                "eta_seconds = NULL, fps = NULL, note = ?",
                (now, now, by),
                job_id,
            )

        return await self.write(op)

    async def requeue(self, job_id: str, owner: str | None = None, by: str = "owner") -> Job:
        """Ask again for a failed or canceled job: queued, with a fresh set of attempts."""

        async def op(db: aiosqlite.Connection) -> Job:
            status = await _status_for(db, job_id, owner)
            if status not in (JobStatus.FAILED, JobStatus.CANCELED):
                raise InvalidTransition(
                    f"job {job_id} is {status}; only failed or canceled jobs can be retried"
                )
            check_transition(job_id, status, JobStatus.QUEUED)
            return await _update_returning(
                db,
                f"status = 'queued', attempts = 0, run_after = 0, round = {_NEXT_ROUND_OF_JOB}, "
                "progress = NULL, stage = NULL, eta_seconds = NULL, fps = NULL, "
                "error_code = NULL, error_message = NULL, error_permanent = NULL, "
                "finished_at = NULL, updated_at = ?, result = NULL, output_bytes = 0, note = ?",
                (job_id, self.clock(), f"requested by {by}"),
                job_id,
            )

        return await self.write(op)

    async def set_priority(self, job_id: str, priority: int, owner: str | None = None) -> Job:
        async def op(db: aiosqlite.Connection) -> Job:
            await _status_for(db, job_id, owner)
            now = self.clock()
            job = await _update_returning(
                db, "priority = ?, updated_at = ?", (priority, now), job_id
            )
            await _history(db, job_id, job.owner, now, "priority", {"priority": priority})
            return job

        return await self.write(op)

    async def delete(self, job_id: str, owner: str | None = None, event: str = "deleted") -> Job:
        """Remove a job that is not running; its history stays, ending with ``event``."""

        async def op(db: aiosqlite.Connection) -> Job:
            status = await _status_for(db, job_id, owner)
            if status == JobStatus.RUNNING:
                raise InvalidTransition(f"job {job_id} is running; cancel it before deleting it")
            rows = await db.execute_fetchall(
                f"DELETE FROM jobs WHERE id = ? RETURNING {JOB_COLUMNS}", (job_id,)
            )
            job = job_from_row(rows[0])
            await _history(db, job_id, job.owner, self.clock(), event, {"was": status})
            return job

        return await self.write(op)

    # -- retention --------------------------------------------------------------------

    async def note(self, job_id: str, run: int, event: str, detail: dict[str, Any]) -> bool:
        """Add a line to the history of a job that is still at run ``run`` (the parts of a
        split run say where each ran); a run that lost its job writes nothing."""

        async def op(db: aiosqlite.Connection) -> bool:
            rows = await db.execute_fetchall(
                "SELECT owner FROM jobs WHERE id = ? AND runs = ?", (job_id, run)
            )
            if not rows:
                return False
            await _history(db, job_id, rows[0][0], self.clock(), event, {"run": run, **detail})
            return True

        return await self.write(op, durable=False)

    async def finished_before(self, before: float, limit: int = 500) -> list[Job]:
        rows = await self._db().execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? "
            "AND status IN ('succeeded', 'failed', 'canceled') ORDER BY finished_at LIMIT ?",
            (before, limit),
        )
        return [job_from_row(row) for row in rows]

    async def prune_history(self, before: float) -> int:
        """Drop the history of jobs that are gone and whose last record is older than ``before``."""

        async def op(db: aiosqlite.Connection) -> int:
            rows = await db.execute_fetchall(
                "DELETE FROM job_history WHERE job_id IN ("
                "  SELECT h.job_id FROM job_history h"
                "  WHERE h.event IN ('deleted', 'expired') AND h.at < ?"
                "  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = h.job_id)"
                "  AND NOT EXISTS (SELECT 1 FROM job_history l WHERE l.job_id = h.job_id"
                "                  AND l.at >= ?)"
                ") RETURNING id",
                (before, before),
            )
            return len(rows)

        return await self.write(op)

    async def job_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` exist as rows (to tell orphan directories apart)."""
        ids = list(ids)
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = await self._db().execute_fetchall(
                f"SELECT id FROM jobs WHERE id IN ({marks})", chunk
            )
            found.update(row[0] for row in rows)
        return found

    # -- reads ------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        return await _fetch_job(self._db(), "id = ?", (job_id,))

    async def find_by_key(self, owner: str, key: str) -> Job | None:
        return await _fetch_job(self._db(), "owner = ? AND idempotency_key = ?", (owner, key))

    async def list(
        self,
        owner: str | None,
        limit: int = 50,
        offset: int = 0,
        status: JobStatus | str | None = None,
    ) -> list[Job]:
        where, params = [], []
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if status is not None:
            where.append("status = ?")
            params.append(str(JobStatus(status)))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._db().execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY seq DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [job_from_row(row) for row in rows]

    async def running(self) -> list[Job]:
        return await self.list(None, limit=1_000_000, status=JobStatus.RUNNING)

    async def history(self, job_id: str) -> list[HistoryEntry]:
        rows = await self._db().execute_fetchall(
            "SELECT job_id, owner, at, event, detail FROM job_history WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
        return [HistoryEntry(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    async def counts(self) -> dict[str, int]:
        counts = {str(status): 0 for status in JobStatus}
        rows = await self._db().execute_fetchall(
            "SELECT status, COUNT(*) FROM jobs GROUP BY status"
        )
        for status, count in rows:
            counts[status] = count
        return counts

    async def queued_count(self, owner: str | None = None) -> int:
        """Jobs waiting, from the counters the triggers keep (constant time)."""
        if owner is None:
            rows = await self._db().execute_fetchall("SELECT value FROM state WHERE key = 'queued'")
        else:
            rows = await self._db().execute_fetchall(
                "SELECT queued FROM owners WHERE owner = ?", (owner,)
            )
        return rows[0][0] if rows else 0

    async def disk_usage(self, owner: str | None = None) -> int:
        sql = "SELECT COALESCE(SUM(input_bytes + output_bytes), 0) FROM jobs"
        params: tuple = ()
        if owner is not None:
            sql += " WHERE owner = ?"
            params = (owner,)
        return (await self._db().execute_fetchall(sql, params))[0][0]


# -- helpers that run inside a transaction ----------------------------------------------

# The fairness round of an owner's next queued job: max(the owner's next round, the
# round being served). The owner is the one bound parameter.
_NEXT_ROUND = (
    "MAX(COALESCE((SELECT next_round FROM owners WHERE owner = ?), 0), "
    "(SELECT value FROM state WHERE key = 'round'))"
)
_NEXT_ROUND_OF_JOB = _NEXT_ROUND.replace(
    "owner = ?", "owner = (SELECT owner FROM jobs WHERE id = ?)"
)


def _resolve(future: asyncio.Future, ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _fsync_paths(paths: list[Path]) -> None:
    """fsync files and directories, in order (the WAL last: what it records is on disk)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # a job directory removed meanwhile
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (trigger bodies hold semicolons of their own)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--") and not buffer.strip():
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {buffer!r}")
    return statements


async def _fetch_job(db: aiosqlite.Connection, where: str, params: tuple) -> Job | None:
    rows = await db.execute_fetchall(f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where}", params)
    return job_from_row(rows[0]) if rows else None


async def _update_returning(
    db: aiosqlite.Connection,
    assignments: str,
    params: tuple,
    job_id: str,
    run: int | None = None,
) -> Job | None:
    """One fenced ``UPDATE … RETURNING``: with ``run``, only while that run holds the job
    (``None`` otherwise); without, ``JobNotFound`` when there is no such job."""
    fence, fence_params = "", ()
    if run is not None:
        fence, fence_params = " AND runs = ? AND status = 'running'", (run,)
    rows = await db.execute_fetchall(
        f"UPDATE jobs SET {assignments} WHERE id = ?{fence} RETURNING {JOB_COLUMNS}",
        (*params, job_id, *fence_params),
    )
    if not rows:
        if run is not None:
            return None
        raise JobNotFound(f"no job {job_id}")
    return job_from_row(rows[0])


async def _history(
    db: aiosqlite.Connection, job_id: str, owner: str, at: float, event: str, detail: dict
) -> None:
    await db.execute(
        "INSERT INTO job_history (job_id, owner, at, event, detail) VALUES (?, ?, ?, ?, ?)",
        (job_id, owner, at, event, _json(detail)),
    )


async def _status_for(db: aiosqlite.Connection, job_id: str, owner: str | None) -> JobStatus:
    rows = await db.execute_fetchall("SELECT status, owner FROM jobs WHERE id = ?", (job_id,))
    if not rows or (owner is not None and rows[0][1] != owner):
        raise JobNotFound(f"no job {job_id}")
    return JobStatus(rows[0][0])


async def _check_limits(db: aiosqlite.Connection, owner: str, limits: QueueLimits) -> None:
    rows = await db.execute_fetchall(
        "SELECT (SELECT value FROM state WHERE key = 'queued'), "
        "COALESCE((SELECT queued FROM owners WHERE owner = ?), 0)",
        (owner,),
    )
    queued, mine = rows[0]
    if limits.total is not None and queued >= limits.total:
        raise QueueFull(
            f"the queue is full ({queued} jobs waiting, the limit is {limits.total}); "
            "try again later"
        )
    if limits.per_owner is not None and mine >= limits.per_owner:
        raise QueueFull(
            f"you already have {mine} jobs waiting, the limit is {limits.per_owner}; "
            "wait for some to finish or cancel some"
        )


async def _set_failed(
    db: aiosqlite.Connection, job_id: str, run: int, error: JobError, now: float
) -> Job | None:
    return await _update_returning(
        db,
        "status = 'failed', finished_at = ?, updated_at = ?, lease_expires_at = NULL, "
        "eta_seconds = NULL, fps = NULL, error_code = ?, error_message = ?, error_permanent = ?, "
        "attempts = attempts + 1",
        (now, now, error.code, error.message, int(error.permanent)),
        job_id,
        run=run,
    )


async def _charge_attempt(
    db: aiosqlite.Connection, job_id: str, run: int, error: JobError, now: float, delay: float
) -> Job | None:
    """A transient failure of run ``run``: queued again after ``delay``, or failed for good
    once ``attempts + 1`` reaches the job's maximum."""
    rows = await db.execute_fetchall(
        "SELECT attempts, max_attempts FROM jobs WHERE id = ? AND runs = ? AND status = 'running'",
        (job_id, run),
    )
    if not rows:
        return None
    attempts, max_attempts = rows[0]
    if attempts + 1 >= max_attempts:
        plural = "s" if attempts + 1 != 1 else ""
        final = JobError(
            error.code, f"{error.message} (gave up after {attempts + 1} attempt{plural})"
        )
        return await _set_failed(db, job_id, run, final, now)
    return await _update_returning(
        db,
        "status = 'queued', attempts = attempts + 1, run_after = ?, updated_at = ?, "
        "lease_expires_at = NULL, stage = NULL, eta_seconds = NULL, fps = NULL, "
        "error_code = ?, error_message = ?, error_permanent = 0",
        (now + delay, now, error.code, error.message),
        job_id,
        run=run,
    )
