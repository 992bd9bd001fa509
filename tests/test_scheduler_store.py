"""The job model and the SQLite store, on real database files (no worker processes).

The ``store`` fixture (tests/conftest.py) runs on a fake clock: backoffs and leases
run out when a test advances it, not by sleeping."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from engine.progress import JobProgress
from scheduler.errors import InvalidTransition, JobNotFound, QueueFull
from scheduler.jobs import (
    TRANSITIONS,
    Job,
    JobError,
    JobSpec,
    JobStatus,
    StoredFile,
    can_transition,
    check_transition,
)
from scheduler.store import SCHEMA_VERSION, ProgressUpdate, QueueLimits, Store


def make_job(number: int, owner: str = "alice", priority: int = 0, **kwargs) -> Job:
    now = time.time()
    spec = JobSpec(
        kind="noop",
        target=StoredFile("target.bin", "my photo.jpg", 3),
        options={"seconds": 1},
        output="result.bin",
    )
    return Job(
        id=f"job-{number:06d}-{owner}",
        owner=owner,
        spec=spec,
        status=JobStatus.QUEUED,
        priority=priority,
        created_at=now,
        updated_at=now,
        **kwargs,
    )


async def insert_many(store: Store, jobs: list[Job]) -> None:
    await asyncio.gather(*(store.insert(job) for job in jobs))


# -- the life cycle ------------------------------------------------------------------------


def test_every_transition_is_allowed_or_refused():
    allowed = {
        ("queued", "running"),
        ("queued", "canceled"),
        ("running", "succeeded"),
        ("running", "failed"),
        ("running", "canceled"),
        ("running", "queued"),
        ("failed", "queued"),
        ("canceled", "queued"),
    }
    for old in JobStatus:
        for new in JobStatus:
            if (old, new) in allowed:
                check_transition("j", old, new)
                assert can_transition(old, new)
            else:
                with pytest.raises(InvalidTransition, match=f"is {old}; it cannot become {new}"):
                    check_transition("j", old, new)
    assert TRANSITIONS[JobStatus.SUCCEEDED] == frozenset()


def test_spec_round_trips_through_json():
    spec = make_job(1).spec
    assert JobSpec.from_json(spec.to_json()) == spec
    assert [f.name for f in spec.inputs] == ["target.bin"]


# -- schema -----------------------------------------------------------------------------------


async def test_schema_is_versioned_and_wal(tmp_path: Path):
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    await store.open()
    assert await store.schema_version() == SCHEMA_VERSION
    await store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    db.commit()
    db.close()
    newer = Store(path)
    with pytest.raises(RuntimeError, match="newer than this program"):
        await newer.open()
    await newer.close()


async def test_reopening_keeps_jobs(tmp_path: Path):
    path = tmp_path / "s.sqlite3"
    first = Store(path)
    await first.open()
    await first.insert(make_job(1))
    await first.close()
    second = Store(path)
    await second.open()
    assert (await second.get(make_job(1).id)).spec == make_job(1).spec
    await second.close()


# -- submit ------------------------------------------------------------------------------------


async def test_insert_and_read_back(store: Store):
    job, created = await store.insert(make_job(1))
    assert created
    read = await store.get(job.id)
    assert read.status is JobStatus.QUEUED
    assert read.spec.target.original == "my photo.jpg"
    assert [h.event for h in await store.history(job.id)] == ["submitted"]
    assert await store.get("missing") is None


async def test_idempotency_key_returns_the_existing_job(store: Store):
    first, created = await store.insert(make_job(1, idempotency_key="k1"))
    again, created_again = await store.insert(make_job(2, idempotency_key="k1"))
    assert created and not created_again
    assert again.id == first.id
    other_owner, created_other = await store.insert(make_job(3, owner="bob", idempotency_key="k1"))
    assert created_other and other_owner.id != first.id
    assert (await store.counts())["queued"] == 2


async def test_queue_limits_refuse_with_a_clear_message(store: Store):
    limits = QueueLimits(total=3, per_owner=2)
    await store.insert(make_job(1), limits)
    await store.insert(make_job(2), limits)
    with pytest.raises(QueueFull, match="you already have 2 jobs waiting, the limit is 2"):
        await store.insert(make_job(3), limits)
    await store.insert(make_job(4, owner="bob"), limits)
    with pytest.raises(QueueFull, match="the queue is full"):
        await store.insert(make_job(5, owner="carol"), limits)
    assert await store.get(make_job(3).id) is None
    assert await store.history(make_job(3).id) == []
    # Running jobs do not count as waiting.
    await store.claim("cpu:0", 1, 60)
    await store.insert(make_job(6, owner="carol"), limits)


async def test_commit_survives_the_caller_being_cancelled(store: Store):
    task = asyncio.get_running_loop().create_task(store.insert(make_job(1)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.insert(make_job(2))  # the writer has finished everything queued before it
    assert (await store.get(make_job(1).id)).status is JobStatus.QUEUED


async def test_one_failing_operation_does_not_spoil_its_batch(store: Store):
    await store.insert(make_job(1))
    results = await asyncio.gather(
        store.insert(make_job(2)),
        store.cancel("no-such-job"),
        store.insert(make_job(3)),
        return_exceptions=True,
    )
    assert isinstance(results[1], JobNotFound)
    assert (await store.counts())["queued"] == 3


# -- ordering -----------------------------------------------------------------------------------


async def claim_order(store: Store, count: int) -> list[str]:
    order = []
    for _ in range(count):
        jobs = await store.claim("cpu:0", 1, 60)
        order += [job.id for job in jobs]
    return order


async def test_claims_follow_priority_then_owner_round_robin_then_age(store: Store):
    for number in range(4):
        await store.insert(make_job(number, owner="alice"))
    await store.insert(make_job(10, owner="bob"))
    await store.insert(make_job(11, owner="bob"))
    await store.insert(make_job(20, owner="carol", priority=5))
    order = await claim_order(store, 8)
    assert order == [
        make_job(20, owner="carol").id,  # highest priority first
        make_job(0).id,
        make_job(10, owner="bob").id,  # then alice and bob take turns
        make_job(1).id,
        make_job(11, owner="bob").id,
        make_job(2).id,
        make_job(3).id,
    ]


async def test_a_newcomer_is_served_in_the_next_round(store: Store):
    for number in range(100):
        await store.insert(make_job(number, owner="alice"))
    first = await claim_order(store, 3)
    assert first == [make_job(n).id for n in range(3)]
    await store.insert(make_job(1, owner="bob"))
    assert await claim_order(store, 1) == [make_job(1, owner="bob").id]
    assert await claim_order(store, 1) == [make_job(3).id]


async def test_backed_off_jobs_wait_until_due(store: Store, fake_clock):
    await store.insert(make_job(1))
    [job] = await store.claim("cpu:0", 1, 60)
    error = JobError("worker_died", "the worker process stopped", permanent=False)
    await store.retry_later(job.id, job.runs, error, delay=0.3)
    assert await store.claim("cpu:0", 1, 60) == []
    assert await store.next_due() == fake_clock() + 0.3
    fake_clock.advance(0.29)
    assert await store.claim("cpu:0", 1, 60) == []
    fake_clock.advance(0.02)
    [again] = await store.claim("cpu:0", 1, 60)
    assert again.id == job.id and again.attempts == 1 and again.runs == 2


# -- claiming under contention ------------------------------------------------------------------


async def _claimer(path: Path, claimers: int, start) -> list[str]:
    stores = [Store(path) for _ in range(claimers)]
    for store in stores:
        await store.open()
    # Every process races from the same moment, however slowly the others started.
    await asyncio.to_thread(start.wait, 120)

    async def claim_all(store: Store, size: int) -> list[str]:
        claimed = []
        while True:
            jobs = await store.claim("cpu:0", size, 60)
            if not jobs:
                return claimed
            claimed += [job.id for job in jobs]

    try:
        results = await asyncio.gather(*(claim_all(s, 1 + i % 3) for i, s in enumerate(stores)))
    finally:
        for store in stores:
            await store.close()
    return [job_id for claimed in results for job_id in claimed]


def _claimer_process(path: str, claimers: int, start) -> list[str]:
    return asyncio.run(_claimer(Path(path), claimers, start))


async def test_fifty_concurrent_claimers_take_each_of_1000_jobs_exactly_once(tmp_path: Path):
    """Five processes with ten connections each race for the same 1,000 jobs."""
    path = tmp_path / "race.sqlite3"
    store = Store(path)
    await store.open()
    jobs = [make_job(n, owner=f"owner{n % 7}") for n in range(1000)]
    await insert_many(store, jobs)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(5) as pool:
        start = manager.Barrier(5)
        results = pool.starmap(_claimer_process, [(str(path), 10, start)] * 5)
    claimed = [job_id for result in results for job_id in result]
    assert len(claimed) == 1000
    assert set(claimed) == {job.id for job in jobs}
    assert all(len(result) > 0 for result in results)  # every process won some
    counts = await store.counts()
    assert counts["running"] == 1000 and counts["queued"] == 0
    rows = await store.list(None, limit=2000)
    assert {job.runs for job in rows} == {1}
    started = [h for job in jobs[:50] for h in await store.history(job.id) if h.event == "started"]
    assert len(started) == 50
    await store.close()


# -- leases, fencing, recovery --------------------------------------------------------------------


async def test_a_run_that_lost_its_job_can_neither_finish_it_nor_publish(store: Store, fake_clock):
    await store.insert(make_job(1))
    [job] = await store.claim("cpu:0", 1, lease_seconds=60)
    fake_clock.advance(59)
    assert await store.recover_expired(lambda attempts: 0.0, exclude=set()) == []
    fake_clock.advance(2)
    [recovered] = await store.recover_expired(lambda attempts: 0.0, exclude=set())
    assert recovered.status is JobStatus.QUEUED and recovered.attempts == 1
    history = await store.history(job.id)
    assert history[-1].event == "retried" and history[-1].detail["code"] == "lease_expired"
    [second] = await store.claim("cpu:0", 1, 60)
    assert second.runs == job.runs + 1
    published = []
    assert await store.complete(job.id, job.runs, 42, lambda: published.append(1), {}) is None
    assert published == []
    assert await store.renew([(job.id, job.runs)], 60) == {job.id}
    assert await store.renew([(job.id, second.runs)], 60) == set()
    done = await store.complete(job.id, second.runs, 42, lambda: published.append(2), {"f": 1})
    assert done.status is JobStatus.SUCCEEDED and done.output_bytes == 42 and published == [2]
    assert (await store.history(job.id))[-1].detail == {
        "run": 2,
        "output_bytes": 42,
        "result": {"f": 1},
    }
    assert done.result == {"f": 1}


async def test_recovery_fails_a_job_after_its_maximum_attempts(store: Store, fake_clock):
    await store.insert(make_job(1, max_attempts=2))
    for expected in (JobStatus.QUEUED, JobStatus.FAILED):
        await store.claim("cpu:0", 1, lease_seconds=60)
        fake_clock.advance(61)
        [job] = await store.recover_expired(lambda attempts: 0.0, exclude=set())
        assert job.status is expected
    assert job.attempts == 2
    assert job.error.code == "lease_expired"
    assert "gave up after 2 attempts" in job.error.message


async def test_recovery_skips_jobs_this_process_is_running(store: Store, fake_clock):
    await store.insert(make_job(1))
    [job] = await store.claim("cpu:0", 1, lease_seconds=60)
    fake_clock.advance(61)
    assert await store.recover_expired(lambda a: 0.0, exclude={job.id}) == []


async def test_release_returns_a_job_without_charging_an_attempt(store: Store):
    await store.insert(make_job(1))
    [job] = await store.claim("cpu:0", 1, 60)
    released = await store.release(job.id, job.runs, "the server is stopping")
    assert released.status is JobStatus.QUEUED and released.attempts == 0
    assert (await store.history(job.id))[-1].event == "released"


async def test_progress_is_saved_only_for_the_current_run(store: Store):
    await store.insert(make_job(1))
    [job] = await store.claim("cpu:0", 1, 60)
    await store.save_progress(
        [
            ProgressUpdate(job.id, job.runs, JobProgress(0.4, "swap", 3.0, 12.5)),
            ProgressUpdate(job.id, job.runs + 7, JobProgress(0.9, "stale", None, None)),
        ]
    )
    read = await store.get(job.id)
    assert (read.progress, read.stage, read.eta_seconds, read.fps) == (0.4, "swap", 3.0, 12.5)


# -- requests from people -----------------------------------------------------------------------


async def test_cancel_retry_delete_and_their_history(store: Store):
    await store.insert(make_job(1))
    with pytest.raises(JobNotFound):
        await store.cancel(make_job(1).id, owner="mallory")
    canceled = await store.cancel(make_job(1).id, owner="alice")
    assert canceled.status is JobStatus.CANCELED
    with pytest.raises(InvalidTransition):
        await store.cancel(canceled.id)
    again = await store.requeue(canceled.id, owner="alice")
    assert again.status is JobStatus.QUEUED and again.attempts == 0
    with pytest.raises(InvalidTransition, match="only failed or canceled jobs can be retried"):
        await store.requeue(canceled.id)
    [running] = await store.claim("cpu:0", 1, 60)
    with pytest.raises(InvalidTransition, match="cancel it before deleting"):
        await store.delete(running.id)
    await store.fail(running.id, running.runs, JobError("no_face", "no face in the source"))
    await store.delete(running.id)
    assert await store.get(running.id) is None
    events = [h.event for h in await store.history(running.id)]
    assert events == ["submitted", "canceled", "retried", "started", "failed", "deleted"]


async def test_priority_can_change_while_queued(store: Store):
    await store.insert(make_job(1))
    await store.insert(make_job(2))
    await store.set_priority(make_job(2).id, 10)
    assert await claim_order(store, 1) == [make_job(2).id]
    with pytest.raises(JobNotFound):
        await store.set_priority(make_job(1).id, 3, owner="bob")


async def test_queue_counters_kept_by_triggers_match_the_rows(store: Store):
    """The O(1) queue counters (used for the limits) stay equal to a full count."""
    for number in range(30):
        await store.insert(make_job(number, owner=f"owner{number % 4}"))
    claimed = await store.claim("cpu:0", 10, 60)
    error = JobError("worker_died", "gone", permanent=False)
    await store.retry_later(claimed[0].id, claimed[0].runs, error, 0)
    await store.release(claimed[1].id, claimed[1].runs, "stopping")
    await store.fail(claimed[2].id, claimed[2].runs, JobError("no_face", "no face"))
    await store.requeue(claimed[2].id)
    await store.cancel(make_job(29, owner="owner1").id)
    await store.delete(make_job(29, owner="owner1").id)
    await store.cancel(make_job(28, owner="owner0").id)
    await store.requeue(make_job(28, owner="owner0").id)
    rows = await store.list(None, limit=100)
    assert await store.queued_count() == sum(j.status is JobStatus.QUEUED for j in rows) == 22
    for owner in {j.owner for j in rows}:
        expected = sum(j.status is JobStatus.QUEUED and j.owner == owner for j in rows)
        assert await store.queued_count(owner) == expected
