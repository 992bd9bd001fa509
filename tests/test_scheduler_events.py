"""The in-process event bus (filtering, ordering, progress throttling, slow subscribers)
and the workers' progress gate.

The throttles read ``time.monotonic`` of their modules; the ``clock`` fixture puts a
``FakeClock`` there, so that what passes and what is held depends on the time the test
sets, never on how fast the machine is. (The event loop keeps its real clock: a held
report is flushed by a real timer, so those tests use rates that make it short.)"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import numpy as np
import pytest

from engine.progress import JobProgress, Progress
from scheduler import events as events_module
from scheduler import progress_gate as gate_module
from scheduler.events import PROGRESS, STATUS, EventBus, JobEvent
from scheduler.jobs import JobStatus
from scheduler.progress_gate import ProgressGate
from tests.doubles import FakeClock


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """The monotonic clock of the event bus and of the progress gate.

    It starts well ahead of the real one (a new throttle stamps its refill with the
    real clock, so its burst is full at the first fake reading) and on a whole second,
    so that steps of 1/16 s add up exactly."""
    clock = FakeClock(float(int(time.monotonic()) + 1000))
    fake_time = SimpleNamespace(monotonic=clock, time=time.time)
    monkeypatch.setattr(events_module, "time", fake_time)
    monkeypatch.setattr(gate_module, "time", fake_time)
    return clock


def progress(
    job_id: str,
    value: float,
    owner: str = "alice",
    preview: bytes | None = None,
    stage: str | None = None,
):
    report = JobProgress(fraction=value, stage=stage)
    return JobEvent(job_id, owner, PROGRESS, JobStatus.RUNNING, progress=report, preview=preview)


def fraction(event: JobEvent) -> float | None:
    return event.progress.fraction if event.progress else None


def status(job_id: str, value: JobStatus, owner: str = "alice"):
    return JobEvent(job_id, owner, STATUS, value)


async def drain(subscription, timeout: float = 0) -> list[JobEvent]:
    """The events delivered so far (and, with ``timeout``, those that come meanwhile)."""
    events = []
    while (event := await subscription.get(timeout=timeout)) is not None:
        events.append(event)
    return events


async def until(subscription, last, timeout: float = 10.0) -> list[JobEvent]:
    """Events up to and including the first for which ``last(event)`` holds."""
    events = []
    while True:
        event = await subscription.get(timeout=timeout)
        assert event is not None, f"no matching event came; got {events}"
        events.append(event)
        if last(event):
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


async def test_progress_is_throttled_but_the_latest_report_arrives(clock):
    bus = EventBus(rate=16.0)
    subscription = bus.subscribe()
    for step in range(1, 201):  # 200 reports in 0.78 s, faster than the loop turns
        bus.publish(progress("j1", step / 200))
        clock.advance(1 / 256)
    events = await until(subscription, lambda e: fraction(e) == 1.0)
    # The burst passes, the rest is held and superseded: the newest comes when it is due.
    assert [fraction(e) for e in events] == [0.005, 0.01, 1.0]
    assert await drain(subscription, timeout=0.1) == []
    bus.close()


async def test_status_changes_are_never_throttled_and_keep_order(clock):
    bus = EventBus(rate=1.0)
    subscription = bus.subscribe()
    bus.publish(status("j1", JobStatus.QUEUED))
    bus.publish(status("j1", JobStatus.RUNNING))
    bus.publish(progress("j1", 0.1))
    bus.publish(progress("j1", 0.2))
    bus.publish(progress("j1", 0.3))  # held by the throttle ...
    bus.publish(status("j1", JobStatus.SUCCEEDED))  # ... and superseded by the final status
    events = await drain(subscription)
    assert [(e.type, e.status, fraction(e)) for e in events] == [
        (STATUS, JobStatus.QUEUED, None),
        (STATUS, JobStatus.RUNNING, None),
        (PROGRESS, JobStatus.RUNNING, 0.1),
        (PROGRESS, JobStatus.RUNNING, 0.2),
        (STATUS, JobStatus.SUCCEEDED, None),
    ]
    bus.close()


async def test_a_held_preview_is_not_lost_to_a_later_report_without_one(clock):
    bus = EventBus(rate=20.0)  # the held report waits 1/20 s of real time
    subscription = bus.subscribe()
    bus.publish(progress("j1", 0.1))
    bus.publish(progress("j1", 0.2))  # the burst: two in a row pass
    bus.publish(progress("j1", 0.3, preview=b"\xff\xd8jpeg"))
    bus.publish(progress("j1", 0.4))
    events = await until(subscription, lambda e: fraction(e) == 0.4)
    assert [fraction(e) for e in events] == [0.1, 0.2, 0.4]
    assert events[-1].preview == b"\xff\xd8jpeg"
    bus.close()


async def test_reports_at_the_rate_pass_at_once_even_after_an_extra_one(clock):
    """Workers report at the bus's rate; one extra report (a stage change) must not
    make every later report wait for the next turn."""
    bus = EventBus(rate=16.0)
    subscription = bus.subscribe()
    bus.publish(progress("j1", 0.0))
    bus.publish(progress("j1", 0.01))  # the extra report
    assert [fraction(e) for e in await drain(subscription)] == [0.0, 0.01]
    for step in range(1, 11):  # then 16 a second, on a fixed schedule
        clock.advance(1 / 16)
        bus.publish(progress("j1", step / 100 + 0.1))
        delivered = await drain(subscription)  # at once: nothing held for a timer
        assert [fraction(e) for e in delivered] == [step / 100 + 0.1]
    bus.close()


async def test_the_first_report_of_a_new_stage_is_never_held(clock):
    bus = EventBus(rate=20.0)  # a held report would be flushed after 1/20 s of real time
    subscription = bus.subscribe()
    for value in (0.1, 0.2, 0.3):  # two pass (the burst), the third is held ...
        bus.publish(progress("j1", value, stage="swap"))
    bus.publish(progress("j1", 1.0, stage="encode"))  # ... and superseded at once
    events = await drain(subscription)
    assert [(e.progress.stage, fraction(e)) for e in events] == [
        ("swap", 0.1),
        ("swap", 0.2),
        ("encode", 1.0),
    ]
    assert await drain(subscription, timeout=0.25) == []  # the held report is not sent late
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


def test_workers_report_at_the_interval_and_a_due_preview_rides_on_the_next_report(clock):
    gate = ProgressGate(progress_interval=0.05, preview_interval=0.0)
    frame = np.full((8, 8, 3), 128, np.uint8)
    assert gate.admit(Progress(stage="swap", done=1, total=9)) == (True, None)  # a new stage
    # Inside the interval a report waits, even one with a preview: previews add no reports.
    assert gate.admit(Progress(stage="swap", done=2, total=9, preview=frame)) == (False, None)
    clock.advance(0.04)
    assert gate.admit(Progress(stage="swap", done=3, total=9)) == (False, None)  # not yet
    clock.advance(0.02)
    sent, preview = gate.admit(Progress(stage="swap", done=3, total=9))
    assert sent and preview is not None and preview.startswith(b"\xff\xd8")
    assert gate.admit(Progress(stage="encode", done=9, total=9)) == (True, None)  # stage change
