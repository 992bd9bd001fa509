"""The ZeroGPU executor under a stand-in for ``spaces.GPU`` that behaves like ZeroGPU
(``tests/zerogpu_standin.py``: a forked child per call, pickled arguments and values,
killed past its duration, no GPU outside a call). Real engine, real scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import cv2
import onnxruntime
import pytest
from gradio.context import LocalContext

from engine.models.manager import default_models_dir
from engine.video import probe
from scheduler.events import PROGRESS
from scheduler.jobs import JobStatus
from scheduler.retry import RetryPolicy
from scheduler.service import SchedulerConfig
from scheduler.zerogpu import (
    ABORTED,
    CPU_WARNING,
    Visitors,
    ZeroGPUExecutor,
    ZeroGPUSettings,
    token_expiry,
    zerogpu_scheduler,
)
from tests import zerogpu_standin as standin
from tests.assets import T1, TOM_HANKS
from tests.media import make_video
from tests.scheduler_server import TASKS, pid_alive, read_history, wait_for

pytestmark = pytest.mark.timeout(300)

STANDIN = "tests.zerogpu_standin:GPU"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zerogpu-media")
    image = root / "group.jpg"
    cv2.imwrite(str(image), cv2.resize(cv2.imread(str(T1)), (480, 332)))
    video = make_video(root / "clip.mp4", seconds=3.0, fps=10, size=(160, 120))
    return {"source": TOM_HANKS, "image": image, "video": Path(video)}


@pytest.fixture
def no_gpu(monkeypatch):
    """The stand-in hides the GPU from this process; the variable is restored after."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv(standin.LOG_ENV, raising=False)
    standin.CALLS.clear()


async def last_call(timeout: float = 30.0) -> dict:
    """The stand-in's record of the newest call, waiting for it: a call is recorded when it
    has ended, which may come a moment after its job's status."""
    deadline = time.monotonic() + timeout
    while not standin.CALLS:
        assert time.monotonic() < deadline, "the stand-in recorded no call"
        await asyncio.sleep(0.05)
    return standin.CALLS[-1]


def config(data_dir: Path, **overrides) -> SchedulerConfig:
    values = {
        "data_dir": data_dir,
        "devices": {"cpu": 1},
        "task_modules": TASKS,
        "retry": RetryPolicy(base=0.05, cap=0.2),
        # Long enough that a loaded machine never lets a lease lapse mid-test: no test here
        # is about lease expiry, and a lapse would charge an attempt.
        "lease_seconds": 30.0,
        "heartbeat_seconds": 0.5,
        "recovery_seconds": 0.5,
        "cancel_grace_seconds": 2.0,
        "default_time_limit": 240.0,
        "worker_settings": {
            "models_dir": str(default_models_dir(data_dir)),
            "data_dir": str(data_dir),
            "content_threshold": 0.8,
            "gate_images": True,
            "priority": "normal",
        },
    }
    values.update(overrides)
    return SchedulerConfig(**values)


@contextlib.asynccontextmanager
async def scheduler_on(data_dir: Path, config_overrides=None, **zerogpu):
    zerogpu.setdefault("decorator", STANDIN)
    scheduler = zerogpu_scheduler(
        config(data_dir, **(config_overrides or {})), ZeroGPUSettings(**zerogpu)
    )
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()


@contextlib.contextmanager
def visitor(token: str):
    """Inside a Gradio event of the visitor with this ``X-IP-Token`` (as the UI's submit)."""
    reset = LocalContext.request.set(standin.visitor_request(token))
    try:
        yield
    finally:
        LocalContext.request.reset(reset)


def swap(media: dict[str, Path], target: str) -> tuple[list, tuple]:
    return [("me.png", media["source"])], (media[target].name, media[target])


async def test_image_and_video_jobs_run_in_forked_gpu_calls_of_their_visitor(
    tmp_path, media, no_gpu, monkeypatch
):
    token = standin.make_token()
    sessions = []  # the providers of every ONNX Runtime session made in this process
    original = onnxruntime.InferenceSession

    def recording(*args, **kwargs):
        sessions.append(kwargs.get("providers"))
        return original(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    async with scheduler_on(tmp_path / "data", segments_per_call=1) as scheduler:
        events = scheduler.subscribe()
        with visitor(token):
            image = await scheduler.submit("alice", *swap(media, "image"), {})
            video = await scheduler.submit("alice", *swap(media, "video"), {"segment_seconds": 1})
        image = await wait_for(scheduler, image.id, timeout=120)
        video = await wait_for(scheduler, video.id, timeout=180)
        progress = []
        while (event := await events.get(timeout=0.1)) is not None:
            if event.type == PROGRESS and event.job_id == video.id:
                progress.append((event.progress.fraction, event.progress.stage))
        events.close()
        assert image.status is JobStatus.SUCCEEDED, image.error
        assert video.status is JobStatus.SUCCEEDED, video.error
        # The work saw a GPU (this process has none: it ran in the calls' children),
        # one call for the image, one per segment for the video, charged to the visitor.
        assert image.result["device"] == video.result["device"] == "cuda:0"
        assert image.result["charged_to"] == video.result["charged_to"] == "visitor"
        assert image.result["gpu_calls"] == 1
        assert video.result["segments"] == 3 and video.result["gpu_calls"] == 3
        assert video.result["frames"] == 30 and video.result["faces_swapped"] > 0
        output = scheduler.files.output_path(video.id, video.spec.output)
        assert probe(output).frames == 30
        assert scheduler.files.output_path(image.id, image.spec.output).stat().st_size > 0
    # CUDA was never asked for in this (the server's) process, only in the calls' children.
    assert not any("CUDA" in str(providers) for providers in sessions)
    calls = standin.CALLS
    assert len(calls) == 4
    assert {c["token"] for c in calls} == {token}
    assert all(c["parent"] == os.getpid() != c["child"] for c in calls)
    assert len({c["child"] for c in calls}) == 4  # a fresh child per call
    assert all(c["outcome"] == "ok" for c in calls)
    # Progress across the video's calls only goes forward, then the join.
    fractions = [p for p, _ in progress if p is not None]
    assert fractions == sorted(fractions) and 0 < fractions[len(fractions) // 2] < 1
    assert "swap" in {s for _, s in progress} and progress[-1][1] == "join"


async def test_work_without_a_visitor_runs_on_the_cpu_by_default(tmp_path, media, no_gpu):
    async with scheduler_on(tmp_path / "data") as scheduler:
        job = await scheduler.submit("api-client", *swap(media, "image"), {})  # no Gradio request
        job = await wait_for(scheduler, job.id, timeout=180)
        assert job.status is JobStatus.SUCCEEDED, job.error
        assert job.result["device"] == "cpu" and job.result["gpu_calls"] == 0
        assert CPU_WARNING in job.result["warnings"]
        assert scheduler.executor.describe()["cpu"]["workers"]
    assert standin.CALLS == []


async def test_work_without_a_visitor_may_use_the_spaces_gpu(tmp_path, media, no_gpu):
    async with scheduler_on(tmp_path / "data", unattended="gpu") as scheduler:
        job = await scheduler.submit("api-client", *swap(media, "image"), {})
        job = await wait_for(scheduler, job.id, timeout=120)
        assert job.status is JobStatus.SUCCEEDED, job.error
        assert job.result["charged_to"] == "space" and job.result["device"] == "cuda:0"
    assert [c["token"] for c in standin.CALLS] == [None]


async def test_a_call_that_runs_past_its_duration_is_ended(tmp_path, no_gpu):
    overrides = {"max_attempts": 1}
    async with scheduler_on(tmp_path / "data", overrides, duration=1.0) as scheduler:
        with visitor(standin.make_token()):
            job = await scheduler.submit(
                "alice", [], ("in.txt", b"x"), {"seconds": 30, "steps": 300}, kind="sleep"
            )
        job = await wait_for(scheduler, job.id, timeout=60)
    assert job.status is JobStatus.FAILED
    assert job.error.code == ABORTED and "ran past its 1 s" in job.error.message
    call = await last_call()
    assert call["outcome"] == "aborted"
    assert not pid_alive(call["child"])


async def test_cancel_stops_the_call(tmp_path, no_gpu):
    async with scheduler_on(tmp_path / "data") as scheduler:
        with visitor(standin.make_token()):
            job = await scheduler.submit(
                "alice", [], ("in.txt", b"x"), {"seconds": 60, "steps": 600}, kind="sleep"
            )
        await wait_for(
            scheduler, job.id, (JobStatus.RUNNING,), predicate=lambda j: (j.progress or 0) > 0
        )
        await scheduler.cancel(job.id)
        job = await wait_for(scheduler, job.id, timeout=30)
    assert job.status is JobStatus.CANCELED
    call = await last_call()  # recorded once the closed call has ended, maybe after the job
    assert call["outcome"] == "closed"
    assert not pid_alive(call["child"])


async def test_a_running_and_a_queued_job_finish_after_a_restart(tmp_path, media, no_gpu):
    data = tmp_path / "data"
    token = standin.make_token()
    # Long enough to be caught running: segments only swap (the tracks are found once).
    video = make_video(tmp_path / "long.mp4", seconds=12.0, fps=10, size=(160, 120))
    options = {"segment_seconds": 1}
    async with scheduler_on(data, segments_per_call=1, unattended="gpu") as first:
        with visitor(token):
            running = await first.submit(
                "alice", [("me.png", media["source"])], ("v.mp4", video), options
            )
            queued = await first.submit("alice", *swap(media, "image"), {})
        await wait_for(
            first,
            running.id,
            (JobStatus.RUNNING,),
            timeout=120,
            predicate=lambda j: (j.progress or 0) > 0,
        )
        assert first.executor.describe()["running"][0]["charged_to"] == "visitor"
    # Stopped: the running job went back to the queue without being charged an attempt.
    async with scheduler_on(data, segments_per_call=1, unattended="gpu") as second:
        for job_id in (running.id, queued.id):
            job = await wait_for(second, job_id, timeout=180)
            assert job.status is JobStatus.SUCCEEDED, job.error
            assert job.attempts == 0
            # The visitor's request did not survive the restart: the Space pays.
            assert job.result["charged_to"] == "space"
        assert (await second.get(running.id)).result["frames"] == 120
    events = [h["event"] for h in read_history(data) if h["job_id"] == running.id]
    assert events.count("released") == 1 and events.count("succeeded") == 1, events
    assert {c["token"] for c in standin.CALLS} == {token, None}


def test_a_visitor_counts_only_while_their_token_is_valid():
    visitors = Visitors()
    fresh, stale = standin.make_token(3600), standin.make_token(-10)
    assert token_expiry(fresh) is not None and token_expiry("not-a-jwt") is None
    visitors.remember("a", standin.visitor_request(fresh))
    visitors.remember("b", standin.visitor_request(stale))
    visitors.remember("c", standin.visitor_request(None))  # no token: kept for a while
    assert "a" in visitors and "c" in visitors
    assert visitors.get("b") is None  # expired: the job counts as unattended


def test_settings_come_from_the_environment(no_gpu):
    settings = ZeroGPUSettings.from_env(
        {
            "FUSION_ZEROGPU_DURATION": "120",
            "FUSION_ZEROGPU_UNATTENDED": "GPU",
            "FUSION_ZEROGPU_SEGMENTS_PER_CALL": "2",
        }
    )
    assert (settings.duration, settings.unattended, settings.segments_per_call) == (120, "gpu", 2)
    with pytest.raises(Exception, match="cpu or gpu"):
        ZeroGPUSettings.from_env({"FUSION_ZEROGPU_UNATTENDED": "refuse"})
    executor = ZeroGPUExecutor((), {}, ZeroGPUSettings(decorator=STANDIN))
    assert executor.describe()["decorator"] == STANDIN
