"""A video job split into segments that run on two devices at once, then joined.

Real worker processes run the production ``swap`` kind (embedded MTCNN detector,
classic swapper) on a short video made with PyAV.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import av
import pytest

from scheduler.jobs import JobStatus
from scheduler.service import Scheduler
from tests.assets import TOM_HANKS
from tests.media import make_video
from tests.scheduler_server import make_config, wait_for

DEVICES = {"cpu:0": 1, "cpu:1": 1}
# Video work keeps both cores busy: leases long enough that a slow heartbeat never
# loses one (these tests are not about lease expiry).
LEASES = {"lease_seconds": 30.0, "heartbeat_seconds": 1.0, "recovery_seconds": 1.0}


@pytest.fixture
async def scheduler(tmp_path: Path):
    config = make_config(
        tmp_path / "data",
        devices=DEVICES,
        split_video=True,
        cancel_grace_seconds=0.5,
        worker_settings={"models_dir": str(tmp_path / "models"), "threads": 1},
        **LEASES,
    )
    async with Scheduler(config) as scheduler:
        await scheduler.executor.wait_ready()
        yield scheduler


async def gone(path: Path, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if not path.exists():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} is still there")


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


async def test_segments_run_on_both_devices_and_are_joined(scheduler: Scheduler, tmp_path: Path):
    video = make_video(tmp_path / "clip.mp4", seconds=2.0, fps=10, size=(320, 240))
    events = scheduler.subscribe()
    job = await scheduler.submit(
        "alice", [("tom.png", TOM_HANKS)], ("clip.mp4", video), {"segment_seconds": 0.5}
    )
    done = await wait_for(scheduler, job.id, timeout=120)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result["segments"] == 4
    assert done.result["devices"] == sorted(DEVICES)
    assert done.result["faces_swapped"] == 20
    output = scheduler.output_path(done)
    assert output.name == "result.mp4" and frame_count(output) == 20
    assert os.listdir(output.parent) == ["result.mp4"]
    await gone(scheduler.files.work_dir(job.id))  # removed just after the success is recorded
    published = await drain(events)
    reports = [e.progress for e in published if e.type == "progress" and e.progress]
    progress = [r.fraction for r in reports if r.fraction]
    assert progress and progress == sorted(progress), [(r.stage, r.fraction) for r in reports]


async def drain(subscription) -> list:
    events = []
    while (event := await subscription.get(timeout=0.05)) is not None:
        events.append(event)
    return events


async def test_cancel_stops_every_segment_and_frees_the_slots(scheduler: Scheduler, tmp_path: Path):
    # Long enough to be caught running: segments only swap (the tracks are found once).
    video = make_video(tmp_path / "long.mp4", seconds=15.0, fps=10, size=(320, 240))
    job = await scheduler.submit(
        "alice", [("tom.png", TOM_HANKS)], ("long.mp4", video), {"segment_seconds": 0.5}
    )
    await wait_for(
        scheduler, job.id, (JobStatus.RUNNING,), predicate=lambda j: (j.progress or 0) > 0
    )
    await scheduler.cancel(job.id)
    canceled = await scheduler.get(job.id)
    assert canceled.status is JobStatus.CANCELED
    assert os.listdir(scheduler.files.outputs_dir(job.id)) == []
    assert not scheduler.files.work_dir(job.id).exists()
    stats = await scheduler.stats()
    assert [device.busy for device in stats.devices] == [0, 0]
    image = await scheduler.submit("alice", [("tom.png", TOM_HANKS)], ("t.png", TOM_HANKS))
    assert (await wait_for(scheduler, image.id, timeout=60)).status is JobStatus.SUCCEEDED


def decoded_frames(path: Path) -> list:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def segment_notes(history) -> list[dict]:
    return [entry.detail for entry in history if entry.event == "segment"]


async def test_split_is_on_by_default_and_equals_the_unsplit_output(tmp_path: Path):
    """No split flag: two free slots are enough. The whole-video stage runs first, every
    segment's device is in the history, and the frames equal a one-slot run's."""
    video = make_video(tmp_path / "long.mp4", seconds=3.0, fps=10, size=(320, 240))
    inputs = ([("tom.png", TOM_HANKS)], ("long.mp4", video), {"segment_seconds": 0.5})
    settings = {"models_dir": str(tmp_path / "models"), "threads": 1}
    config = make_config(tmp_path / "split", devices=DEVICES, worker_settings=settings, **LEASES)
    assert config.split_video is True
    async with Scheduler(config) as scheduler:
        await scheduler.executor.wait_ready()
        job = await scheduler.submit("alice", *inputs)
        done = await wait_for(scheduler, job.id, timeout=120)
        assert done.status is JobStatus.SUCCEEDED, done.error
        history = await scheduler.history(job.id)
        split_output = scheduler.output_path(done)
        split_frames = decoded_frames(split_output)
    events = [entry.event for entry in history]
    assert events.index("stage") < events.index("segment"), events
    stage = next(entry.detail for entry in history if entry.event == "stage")
    assert stage["outcome"] == "succeeded" and stage["gate"] == "passed"
    notes = segment_notes(history)
    assert sorted(note["index"] for note in notes) == list(range(6))
    assert {note["device"] for note in notes} == set(DEVICES)
    assert not any(note["reused"] for note in notes)
    assert done.result["segments"] == 6 and done.result["devices"] == sorted(DEVICES)

    whole = make_config(
        tmp_path / "whole", devices={"cpu:0": 1}, worker_settings=settings, **LEASES
    )
    async with Scheduler(whole) as scheduler:
        await scheduler.executor.wait_ready()
        job = await scheduler.submit("alice", *inputs)
        done = await wait_for(scheduler, job.id, timeout=120)
        assert done.status is JobStatus.SUCCEEDED, done.error
        assert "segments" not in done.result  # one slot: the job ran whole
        assert segment_notes(await scheduler.history(job.id)) == []
        whole_frames = decoded_frames(scheduler.output_path(done))
    assert len(split_frames) == len(whole_frames) == 30
    for split_frame, whole_frame in zip(split_frames, whole_frames, strict=True):
        assert (split_frame == whole_frame).all()


async def test_a_refused_video_never_starts_a_segment(tmp_path: Path):
    """The content gate runs in the whole-video stage and completes before any segment."""
    video = make_video(tmp_path / "long.mp4", seconds=3.0, fps=10, size=(320, 240))
    config = make_config(
        tmp_path / "data",
        devices=DEVICES,
        worker_settings={
            "models_dir": str(tmp_path / "models"),
            "threads": 1,
            "content_threshold": 0.0001,  # every input is refused
        },
        **LEASES,
    )
    async with Scheduler(config) as scheduler:
        await scheduler.executor.wait_ready()
        job = await scheduler.submit(
            "alice", [("tom.png", TOM_HANKS)], ("long.mp4", video), {"segment_seconds": 0.5}
        )
        done = await wait_for(scheduler, job.id, timeout=120)
        history = await scheduler.history(job.id)
        for _ in range(200):  # the deletion follows the failure's commit
            if history[-1].event == "inputs_deleted":
                break
            await asyncio.sleep(0.05)
            history = await scheduler.history(job.id)
        work = scheduler.files.job_dir(job.id) / "work"
        segment_files = sorted(work.glob("segment-*")) if work.exists() else []
        inputs_left = scheduler.files.inputs_dir(job.id).exists()
    assert done.status is JobStatus.FAILED and done.error.code == "content_policy", done.error
    assert done.attempts <= 1  # a refusal is permanent: never retried
    stage = [entry.detail for entry in history if entry.event == "stage"]
    assert stage and stage[0]["outcome"] == "failed" and stage[0]["error"] == "content_policy"
    assert segment_notes(history) == []
    assert segment_files == []
    # Refused content is deleted at once; the refusal stays visible on the job.
    assert not inputs_left and history[-1].event == "inputs_deleted"
