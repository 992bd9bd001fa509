"""The in-process event bus (filtering, ordering, progress throttling, slow subscribers)
and the workers' progress gate."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import numpy as np

from engine.progress import Progress
from scheduler.events import PROGRESS, STATUS, EventBus, JobEvent
from scheduler.jobs import JobStatus
from scheduler.progress_gate import ProgressGate


def progress(job_id: str, value: float, owner: str = "alice", preview: bytes | None = None):
    return JobEvent(job_id, owner, PROGRESS, JobStatus.RUNNING, progress=value, preview=preview)


def status(job_id: str, value: JobStatus, owner: str = "alice"):
    return JobEvent(job_id, owner, STATUS, value)


async def drain(subscription, timeout: float = 0.05) -> list[JobEvent]:
    events = []
    while (event := await subscription.get(timeout=timeout)) is not None:
        events.append(event)
    return events


async def test_subscribers_see_only_their_job_or_owner():
    bus = EventBus()
    by_job = bus.subscribe(job_id="j1")
    by_owner = bus.subscribe(owner="bob")
    everything = bus.subscribe()
    bus.publish(status("j1", JobStatus.QUEUED))
    bus.publish(status("j2", JobStatus.QUEUED, owner="bob"))
    assert [e.job_id for e in await drain(by_job)] == ["j1"]
    assert [e.job_id for e in await drain(by_owner)] == ["j2"]
    assert [e.job_id for e in await drain(everything)] == ["j1", "j2"]
    bus.close()


async def test_progress_is_throttled_but_the_latest_report_arrives():
    bus = EventBus(rate=4.0)
    subscription = bus.subscribe()
    for step in range(1, 201):
        bus.publish(progress("j1", step / 200))
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.3)
    events = await drain(subscription)
    assert 2 <= len(events) <= 8  # about 0.5 s of reports at 4 a second (+ burst), not 200
    assert events[-1].progress == 1.0
    values = [e.progress for e in events]
    assert values == sorted(values)
    bus.close()


async def test_status_changes_are_never_throttled_and_keep_order():
    bus = EventBus(rate=1.0)
    subscription = bus.subscribe()
    bus.publish(status("j1", JobStatus.QUEUED))
    bus.publish(status("j1", JobStatus.RUNNING))
    bus.publish(progress("j1", 0.1))
    bus.publish(progress("j1", 0.2))
    bus.publish(progress("j1", 0.3))  # held by the throttle ...
    bus.publish(status("j1", JobStatus.SUCCEEDED))  # ... and superseded by the final status
    events = await drain(subscription, timeout=1.2)
    assert [(e.type, e.status, e.progress) for e in events] == [
        (STATUS, JobStatus.QUEUED, None),
        (STATUS, JobStatus.RUNNING, None),
        (PROGRESS, JobStatus.RUNNING, 0.1),
        (PROGRESS, JobStatus.RUNNING, 0.2),
        (STATUS, JobStatus.SUCCEEDED, None),
    ]
    bus.close()


async def test_a_held_preview_is_not_lost_to_a_later_report_without_one():
    bus = EventBus(rate=2.0)
    subscription = bus.subscribe()
    bus.publish(progress("j1", 0.1))
    bus.publish(progress("j1", 0.2))  # the burst: two in a row pass
    bus.publish(progress("j1", 0.3, preview=b"\xff\xd8jpeg"))
    bus.publish(progress("j1", 0.4))
    events = await drain(subscription, timeout=0.8)
    assert [e.progress for e in events] == [0.1, 0.2, 0.4]
    assert events[-1].preview == b"\xff\xd8jpeg"
    bus.close()


async def test_reports_at_the_rate_pass_at_once_even_after_an_extra_one():
    """Workers report at the bus's rate; one extra report (a stage change) must not
    make every later report wait for the next turn."""
    bus = EventBus(rate=20.0)
    subscription = bus.subscribe()
    loop = asyncio.get_running_loop()
    arrived: dict[float, float] = {}

    async def consume():
        while (event := await subscription.get(timeout=0.5)) is not None:
            arrived[event.progress] = loop.time()

    consumer = loop.create_task(consume())
    start = loop.time()
    bus.publish(progress("j1", 0.0))
    bus.publish(progress("j1", 0.01))  # the extra report
    sent = {}
    for step in range(1, 11):  # then 20 a second, on a fixed schedule
        await asyncio.sleep(max(0.0, start + step * 0.05 - loop.time()))
        sent[step / 100 + 0.1] = loop.time()
        bus.publish(progress("j1", step / 100 + 0.1))
    await consumer
    waits = [arrived[value] - at for value, at in sent.items() if value in arrived]
    assert len(waits) >= 9  # at most one superseded
    assert sum(wait > 0.02 for wait in waits) <= 1, waits
    bus.close()


async def test_the_first_report_of_a_new_stage_is_never_held():
    bus = EventBus(rate=1.0)
    subscription = bus.subscribe()
    for value in (0.1, 0.2, 0.3):  # two pass (the burst), the third is held ...
        bus.publish(replace(progress("j1", value), stage="swap"))
    bus.publish(replace(progress("j1", 1.0), stage="encode"))  # ... and superseded at once
    events = await drain(subscription, timeout=0.1)
    assert [(e.stage, e.progress) for e in events] == [
        ("swap", 0.1),
        ("swap", 0.2),
        ("encode", 1.0),
    ]
    assert await drain(subscription, timeout=1.2) == []  # the held report is not sent late
    bus.close()


async def test_a_slow_subscriber_loses_old_progress_never_status():
    bus = EventBus(rate=0)  # no throttling: every report is delivered
    subscription = bus.subscribe(max_pending=10)
    bus.publish(status("j1", JobStatus.RUNNING))
    for step in range(100):
        bus.publish(progress("j1", step / 100))
    bus.publish(status("j1", JobStatus.SUCCEEDED))
    events = await drain(subscription)
    assert events[0].status is JobStatus.RUNNING
    assert events[-1].status is JobStatus.SUCCEEDED
    assert len(events) <= 11 and subscription.dropped >= 90
    bus.close()


async def test_closing_ends_iteration():
    bus = EventBus()
    subscription = bus.subscribe()

    async def collect():
        return [event async for event in subscription]

    task = asyncio.get_running_loop().create_task(collect())
    bus.publish(status("j1", JobStatus.QUEUED))
    await asyncio.sleep(0.01)
    subscription.close()
    assert [e.job_id for e in await asyncio.wait_for(task, 1)] == ["j1"]
    assert bus.subscriber_count == 0


def test_workers_report_at_the_interval_and_a_due_preview_rides_on_the_next_report():
    gate = ProgressGate(progress_interval=0.05, preview_interval=0.0)
    frame = np.full((8, 8, 3), 128, np.uint8)
    assert gate.admit(Progress(stage="swap", done=1, total=9)) == (True, None)  # a new stage
    # Inside the interval a report waits, even one with a preview: previews add no reports.
    assert gate.admit(Progress(stage="swap", done=2, total=9, preview=frame)) == (False, None)
    time.sleep(0.06)
    sent, preview = gate.admit(Progress(stage="swap", done=3, total=9))
    assert sent and preview is not None and preview.startswith(b"\xff\xd8")
    assert gate.admit(Progress(stage="encode", done=9, total=9)) == (True, None)  # stage change
