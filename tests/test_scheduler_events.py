"""The in-process event bus: filtering, ordering, progress throttling, slow subscribers."""

from __future__ import annotations

import asyncio

from scheduler.events import PROGRESS, STATUS, EventBus, JobEvent
from scheduler.jobs import JobStatus


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
    assert 2 <= len(events) <= 8  # about 0.5 s of reports at 4 a second, not 200
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
    bus.publish(progress("j1", 0.2))  # held by the throttle ...
    bus.publish(status("j1", JobStatus.SUCCEEDED))  # ... and superseded by the final status
    events = await drain(subscription, timeout=1.2)
    assert [(e.type, e.status) for e in events] == [
        (STATUS, JobStatus.QUEUED),
        (STATUS, JobStatus.RUNNING),
        (PROGRESS, JobStatus.RUNNING),
        (STATUS, JobStatus.SUCCEEDED),
    ]
    bus.close()


async def test_a_held_preview_is_not_lost_to_a_later_report_without_one():
    bus = EventBus(rate=2.0)
    subscription = bus.subscribe()
    bus.publish(progress("j1", 0.1))
    bus.publish(progress("j1", 0.2, preview=b"\xff\xd8jpeg"))
    bus.publish(progress("j1", 0.3))
    events = await drain(subscription, timeout=0.8)
    assert [e.progress for e in events] == [0.1, 0.3]
    assert events[-1].preview == b"\xff\xd8jpeg"
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
