"""The ``Scheduler`` facade end to end, on real SQLite files.

Most tests run their tasks in threads of this process (``start_inline``: the
``InlineExecutor`` of ``tests/doubles.py``) on a fake clock, so that they check
the queue logic in milliseconds; the few about worker processes (warm workers,
a graceful stop and restart) run real ones (``start``)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from engine.errors import InvalidInput, InvalidOptions
from scheduler.errors import InvalidTransition, JobNotFound, QueueFull
from scheduler.events import PROGRESS, STATUS
from scheduler.jobs import JobStatus
from scheduler.retry import RetryPolicy
from scheduler.service import DB_NAME, Scheduler
from tests.assets import T1, TOM_HANKS
from tests.scheduler_server import read_jobs, wait_for
from tests.scheduler_tasks import release

INPUT = ("input.txt", b"some input")


async def block(scheduler: Scheduler, owner: str = "blocker") -> str:
    """Occupy the only slot with a job that never ends, so that later jobs stay queued."""
    job = await scheduler.submit(owner, [], INPUT, kind="hang")
    await wait_for(scheduler, job.id, (JobStatus.RUNNING,))
    return job.id


def stored_dirs(scheduler: Scheduler) -> list[str]:
    return scheduler.files.job_ids()


async def test_a_job_runs_to_success_with_its_output(start_inline):
    scheduler = await start_inline()
    job = await scheduler.submit(
        "alice", [], ("notes.txt", b"hello"), {"seconds": 0.02}, kind="sleep"
    )
    assert job.status is JobStatus.QUEUED
    assert job.spec.target.name == "target.txt" and job.spec.target.original == "notes.txt"
    assert (scheduler.files.inputs_dir(job.id) / "target.txt").read_bytes() == b"hello"
    done = await wait_for(scheduler, job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.progress == 1.0 and done.attempts == 0 and done.runs == 1
    output = scheduler.output_path(done)
    assert json.loads(output.read_text())["job_id"] == job.id
    assert scheduler.files.outputs(job.id) == [output]
    assert sorted(os.listdir(output.parent)) == ["result.bin"]
    assert done.output_bytes == output.stat().st_size
    assert done.input_bytes == 5
    events = [h.event for h in await scheduler.history(job.id)]
    assert events == ["submitted", "started", "succeeded"]


async def test_workers_stay_warm_between_jobs(start):
    scheduler = await start()
    first = await scheduler.submit("alice", [], INPUT, kind="record")
    second = await scheduler.submit("alice", [], INPUT, kind="record")
    results = []
    for job in (first, second):
        done = await wait_for(scheduler, job.id)
        results.append(json.loads(scheduler.output_path(done).read_text()))
    assert results[0]["pid"] == results[1]["pid"]
    assert [r["worker_jobs"] for r in results] == [1, 2]


async def test_get_list_and_owner_isolation(start_inline):
    scheduler = await start_inline()
    await block(scheduler)
    mine = [await scheduler.submit("alice", [], INPUT, kind="noop") for _ in range(3)]
    theirs = await scheduler.submit("bob", [], INPUT, kind="noop")
    listed = await scheduler.list("alice")
    assert [j.id for j in listed] == [j.id for j in reversed(mine)]  # newest first
    assert [j.id for j in await scheduler.list("alice", limit=1, offset=1)] == [mine[1].id]
    assert (await scheduler.get(theirs.id, owner="bob")).owner == "bob"
    for call in (
        scheduler.get(theirs.id, owner="alice"),
        scheduler.cancel(theirs.id, owner="alice"),
        scheduler.delete(theirs.id, owner="alice"),
        scheduler.history(theirs.id, owner="alice"),
        scheduler.get("no-such-job"),
    ):
        with pytest.raises(JobNotFound):
            await call


async def test_bad_submissions_are_refused_before_anything_is_stored(start_inline, tmp_path: Path):
    scheduler = await start_inline()
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "not-an-image.jpg"
    text.write_text("this is not an image")
    target = ("t1.jpg", T1)
    source = ("tom.png", TOM_HANKS)
    cases = [
        (InvalidInput, "source 1 \\(missing.jpg\\): file not found", dict(
            sources=[("missing.jpg", tmp_path / "missing.jpg")], target=target)),
        (InvalidInput, "the file is empty", dict(sources=[("e.jpg", empty)], target=target)),
        (InvalidInput, "at least one source image is required", dict(sources=[], target=target)),
        (InvalidInput, "not a supported image", dict(sources=[("x.jpg", text)], target=target)),
        (InvalidInput, "target \\(x.jpg\\): not an image or a video", dict(
            sources=[source], target=("x.jpg", text))),
        (InvalidInput, "a target image or video is required", dict(sources=[source], target=None)),
        (InvalidOptions, "swapper must be one of", dict(
            sources=[source], target=target, options={"swapper": "magic"})),
        (InvalidOptions, "unknown option 'colour'", dict(
            sources=[source], target=target, options={"colour": "red"})),
        (InvalidOptions, "priority must be between", dict(
            sources=[source], target=target, options={"priority": 10**6})),
        (InvalidOptions, "unknown job kind 'teleport'", dict(
            sources=[source], target=target, kind="teleport")),
    ]  # fmt: skip
    for error, message, arguments in cases:
        with pytest.raises(error, match=message):
            await scheduler.submit("alice", **arguments)
    assert stored_dirs(scheduler) == []
    db = sqlite3.connect(scheduler.data_dir / DB_NAME)
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM job_history").fetchone() == (0,)
    db.close()


async def test_a_valid_swap_submission_is_stored_under_safe_names(start_inline):
    scheduler = await start_inline()
    await block(scheduler)
    job = await scheduler.submit(
        "alice",
        [("../../etc/passwd.png", TOM_HANKS)],
        ("holiday photo.JPG", T1.read_bytes()),
        {"selector": "many", "priority": 2},
    )
    assert job.priority == 2
    assert [f.name for f in job.spec.inputs] == ["source-1.png", "target.jpg"]
    assert job.spec.sources[0].original == "../../etc/passwd.png"
    assert job.spec.output == "result.jpg"
    inputs = sorted(os.listdir(scheduler.files.inputs_dir(job.id)))
    assert inputs == ["source-1.png", "target.jpg"]
    assert job.input_bytes == T1.stat().st_size + TOM_HANKS.stat().st_size


async def test_handed_over_files_are_linked_and_others_copied(start_inline, tmp_path: Path):
    scheduler = await start_inline()
    await block(scheduler)
    upload = tmp_path / "upload.part"
    upload.write_bytes(b"a large video, say")
    copied = await scheduler.submit("alice", [], ("clip.mp4", upload), kind="sleep")
    linked = await scheduler.submit(
        "alice", [], ("clip.mp4", upload), kind="sleep", hand_over_files=True
    )
    copy_path = scheduler.files.inputs_dir(copied.id) / "target.mp4"
    link_path = scheduler.files.inputs_dir(linked.id) / "target.mp4"
    assert copy_path.stat().st_ino != upload.stat().st_ino  # a copy of the caller's file
    assert link_path.stat().st_ino == upload.stat().st_ino  # the caller's file itself
    upload.unlink()  # the caller deletes its temporary file right after the submit
    for path, job in ((copy_path, copied), (link_path, linked)):
        assert path.read_bytes() == b"a large video, say" and path.stat().st_nlink == 1
        assert job.input_bytes == 18


async def test_queue_full_is_refused_and_stores_nothing(start_inline):
    scheduler = await start_inline(max_queued=4, max_queued_per_owner=2)
    await block(scheduler)
    for _ in range(2):
        await scheduler.submit("alice", [], INPUT, kind="noop")
    with pytest.raises(QueueFull, match="you already have 2 jobs waiting"):
        await scheduler.submit("alice", [], INPUT, kind="noop")
    for owner in ("bob", "carol"):
        await scheduler.submit(owner, [], INPUT, kind="noop")
    with pytest.raises(QueueFull, match="the queue is full"):
        await scheduler.submit("dave", [], INPUT, kind="noop")
    assert len(stored_dirs(scheduler)) == 5  # the blocker and four queued jobs
    assert (await scheduler.stats()).queued == 4


async def test_an_idempotency_key_returns_the_same_job(start_inline):
    scheduler = await start_inline()
    await block(scheduler)
    first = await scheduler.submit("alice", [], INPUT, kind="noop", idempotency_key="upload-1")
    again = await scheduler.submit("alice", [], INPUT, kind="noop", idempotency_key="upload-1")
    other = await scheduler.submit("bob", [], INPUT, kind="noop", idempotency_key="upload-1")
    assert again.id == first.id and other.id != first.id
    assert len(stored_dirs(scheduler)) == 3


async def next_start(events) -> str:
    """The id of the next job that starts running."""
    while True:
        event = await events.get(timeout=30)
        assert event is not None, "no job started"
        if event.type == STATUS and event.status is JobStatus.RUNNING:
            return event.job_id


async def test_priority_and_owner_fairness(start_inline):
    """Owner A holds 100 queued jobs; owner B's single job starts in the next free slot,
    and a job with a higher priority before it. Each job ends when the test says so."""
    scheduler = await start_inline()
    events = scheduler.subscribe()
    a_jobs = [await scheduler.submit("owner-a", [], INPUT, kind="held") for _ in range(100)]
    running = await next_start(events)
    assert running == a_jobs[0].id
    b_job = await scheduler.submit("owner-b", [], INPUT, kind="held")
    release(running)
    assert await next_start(events) == b_job.id
    release(b_job.id)
    running = await next_start(events)
    assert running == a_jobs[1].id
    urgent = await scheduler.submit("owner-a", [], INPUT, kind="held", priority=9)
    release(running)
    assert await next_start(events) == urgent.id
    assert (await scheduler.stats()).queued == 98


async def test_progress_is_published_and_persisted(start_inline):
    scheduler = await start_inline(progress_persist_seconds=0.05)
    job = await scheduler.submit("alice", [], INPUT, kind="held")
    subscription = scheduler.subscribe(job_id=job.id)
    running = await wait_for(
        scheduler, job.id, (JobStatus.RUNNING,), predicate=lambda j: (j.progress or 0) > 0.2
    )
    assert running.stage == "held" and running.eta_seconds is not None
    release(job.id)
    done = await wait_for(scheduler, job.id)
    events = []
    while (event := await subscription.get(timeout=0)) is not None:
        events.append(event)
    progress = [e.progress.fraction for e in events if e.type == PROGRESS]
    assert progress == [0.5]  # the task's one report (bus throttling: test_scheduler_events)
    assert [e.status for e in events if e.type == STATUS] == [
        JobStatus.RUNNING,
        JobStatus.SUCCEEDED,
    ]
    assert events[-1].status is done.status is JobStatus.SUCCEEDED and done.progress == 1.0


async def test_permanent_failures_fail_at_once_and_transient_ones_retry(start_inline, fake_clock):
    """A transient failure waits out its backoff (on the store's clock) before the next
    attempt; a permanent one fails the job at once."""
    scheduler = await start_inline(retry=RetryPolicy(base=60.0, cap=600.0, jitter=0.5))
    bad = await scheduler.submit("alice", [], INPUT, kind="bad_input")
    flaky = await scheduler.submit("alice", [], INPUT, {"crash_attempts": 2}, kind="flaky")
    bad_done = await wait_for(scheduler, bad.id)
    assert bad_done.status is JobStatus.FAILED and bad_done.runs == 1
    assert bad_done.error.code == "invalid_input"
    assert bad_done.error.message == "the source image holds no face"
    for attempts, ceiling in ((1, 60.0), (2, 120.0)):
        waiting = await wait_for(
            scheduler,
            flaky.id,
            (JobStatus.QUEUED,),
            predicate=lambda j, n=attempts: j.attempts == n,
        )
        assert waiting.runs == attempts and waiting.error.message == "the device is busy"
        delay = waiting.run_after - fake_clock()
        assert ceiling / 2 <= delay <= ceiling  # exponential backoff with jitter
        fake_clock.advance(delay / 2)  # not due yet: it stays queued
        assert (await scheduler.store.claim("cpu", 1, 60)) == []
        assert (await scheduler.get(flaky.id)).status is JobStatus.QUEUED
        fake_clock.advance(delay / 2 + 0.001)  # due now: the dispatcher is told, claims it
    flaky_done = await wait_for(scheduler, flaky.id)
    assert flaky_done.status is JobStatus.SUCCEEDED and flaky_done.attempts == 2
    assert flaky_done.runs == 3
    retried = [h for h in await scheduler.history(flaky.id) if h.event == "retried"]
    assert [h.detail["reason"] for h in retried] == ["the device is busy"] * 2
    assert all(h.detail["delay_seconds"] > 0 for h in retried)


async def test_retry_and_delete_on_request(start_inline):
    scheduler = await start_inline()
    job = await scheduler.submit("alice", [], INPUT, kind="bad_input")
    failed = await wait_for(scheduler, job.id)
    assert failed.status is JobStatus.FAILED
    again = await scheduler.retry(job.id, owner="alice")
    assert again.status is JobStatus.QUEUED and again.error is None
    await wait_for(scheduler, job.id, predicate=lambda j: j.runs == 2)
    ok = await scheduler.submit("alice", [], INPUT, kind="noop")
    await wait_for(scheduler, ok.id)
    with pytest.raises(InvalidTransition):
        await scheduler.retry(ok.id)
    subscription = scheduler.subscribe(owner="alice")
    await scheduler.delete(ok.id, owner="alice")
    assert ok.id not in stored_dirs(scheduler)
    with pytest.raises(JobNotFound):
        await scheduler.get(ok.id)
    event = await subscription.get(timeout=1)
    assert (event.job_id, event.type) == (ok.id, "deleted")
    assert [h.event for h in await scheduler.history(ok.id)][-1] == "deleted"


async def test_stats_report_slots_queue_and_disk(start_inline):
    scheduler = await start_inline(devices={"cpu:0": 1, "cpu:1": 2}, cancel_grace_seconds=0.05)
    blocker = await block(scheduler)
    stats = await scheduler.stats()
    assert {d.device: (d.slots, d.busy) for d in stats.devices} == {
        "cpu:0": (1, 1),
        "cpu:1": (2, 0),
    } or {d.device: (d.slots, d.busy) for d in stats.devices} == {"cpu:0": (1, 0), "cpu:1": (2, 1)}
    assert stats.running == 1 and stats.disk_bytes == len(INPUT[1])
    await scheduler.cancel(blocker)
    assert (await scheduler.stats()).counts["canceled"] == 1


async def test_graceful_stop_puts_running_jobs_back_uncharged(tmp_path: Path, start):
    data_dir = tmp_path / "shared"
    first = await start(data_dir=data_dir)
    job = await first.submit("alice", [], INPUT, {"seconds": 30}, kind="sleep")
    await wait_for(first, job.id, (JobStatus.RUNNING,), predicate=lambda j: (j.progress or 0) > 0)
    await first.stop(graceful=True)
    row = read_jobs(data_dir)[job.id]
    assert (row["status"], row["attempts"]) == ("queued", 0)
    assert os.listdir(first.files.outputs_dir(job.id)) == []  # no partial output left
    second = await start(data_dir=data_dir)
    resumed = await wait_for(second, job.id, (JobStatus.RUNNING,))
    assert resumed.runs == 2 and resumed.attempts == 0
    await second.cancel(job.id)
    events = [h.event for h in await second.history(job.id)]
    assert events == ["submitted", "started", "released", "started", "canceled"]
