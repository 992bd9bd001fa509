"""The ZeroGPU executor with the real ``spaces`` package (0.51.3).

Outside a ZeroGPU Space (``SPACES_ZERO_GPU`` unset) ``spaces.GPU`` returns the function
itself, so calls run in the server process: jobs still run, with progress. On "ZeroGPU"
(``SPACES_ZERO_GPU=true``, the platform's device API faked on 127.0.0.1 by
``tests/zerogpu_standin.FakeDeviceAPI``) the package's own code schedules each call with
the visitor's token, forks a child of the server for it, and releases the GPU after.
"""

from __future__ import annotations

import time

import pytest
import spaces
from gradio.context import LocalContext
from spaces.config import Config

from engine.models.manager import default_models_dir
from scheduler.events import PROGRESS
from scheduler.jobs import JobStatus
from scheduler.service import SchedulerConfig
from scheduler.zerogpu import ZeroGPUSettings, zerogpu_scheduler
from tests import zerogpu_standin as standin
from tests.live_studio import StudioProcess
from tests.media import make_video
from tests.scheduler_server import wait_for
from tests.zerogpu_standin import browser, submit_from_page, wait_finished

pytestmark = pytest.mark.timeout(300)


def test_outside_zerogpu_the_decorator_is_the_function_itself():
    def step(call):
        yield call

    assert not Config.zero_gpu
    assert spaces.GPU(step) is step
    assert spaces.GPU(duration=lambda call: 5)(step) is step


async def test_jobs_run_with_the_real_package_outside_zerogpu(tmp_path, media, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    data = tmp_path / "data"
    settings = {
        "models_dir": str(default_models_dir(data)),
        "data_dir": str(data),
        "content_threshold": 0.8,
        "priority": "normal",
    }
    config = SchedulerConfig(data_dir=data, worker_settings=settings)
    scheduler = zerogpu_scheduler(config, ZeroGPUSettings(decorator="spaces:GPU"))
    await scheduler.start()
    try:
        assert "outside ZeroGPU" in scheduler.executor.describe()["decorator"]
        events = scheduler.subscribe()
        reset = LocalContext.request.set(standin.visitor_request(standin.make_token()))
        try:
            sources = [("me.png", media["source"])]
            image = await scheduler.submit("alice", sources, ("g.jpg", media["image"]), {})
            video = await scheduler.submit("alice", sources, ("c.mp4", media["video"]), {})
        finally:
            LocalContext.request.reset(reset)
        image = await wait_for(scheduler, image.id, timeout=120)
        video = await wait_for(scheduler, video.id, timeout=180)
        seen = set()
        while (event := await events.get(timeout=0.1)) is not None:
            if event.type == PROGRESS and event.progress and event.progress.fraction is not None:
                seen.add(event.job_id)
        events.close()
    finally:
        await scheduler.stop()
    for job in (image, video):
        assert job.status is JobStatus.SUCCEEDED, job.error
        assert job.result["charged_to"] == "visitor" and job.result["gpu_calls"] >= 1
    assert video.result["frames"] == 84 and video.result["segments"] == 3
    assert seen == {image.id, video.id}


@pytest.fixture(scope="module")
def zerogpu_studio(tmp_path_factory):
    """A studio that believes it is on ZeroGPU: it picks the backend by itself."""
    root = tmp_path_factory.mktemp("spaces-zerogpu")
    with standin.FakeDeviceAPI() as api:
        env = {
            "SPACES_ZERO_GPU": "true",
            "SPACES_ZERO_DEVICE_API_URL": api.url,
            "FUSION_ZEROGPU_SEGMENTS_PER_CALL": "1",
        }
        process = StudioProcess(root / "data", [], env=env)
        process.start(timeout=90)
        try:
            yield process, api
        finally:
            process.stop()


def test_on_zerogpu_page_jobs_are_scheduled_with_the_visitors_token(zerogpu_studio, media):
    process, api = zerogpu_studio
    assert len(api.of("/startup-report")) == 1  # sent at start (the app never calls launch)
    token = standin.make_token()
    with browser(process, token) as client:
        ids = submit_from_page(client, media["source"], media["image"], media["video"])
        jobs = [wait_finished(client, job_id) for job_id in ids]
    assert [job["status"] for job in jobs] == ["succeeded", "succeeded"], jobs
    assert sorted(job["result"]["frames"] for job in jobs) == [1, 84]
    schedules = api.of("/schedule")
    assert len(schedules) == 1 + 3  # the image, then one call per video segment
    assert {s["token"] for s in schedules} == {token}
    assert {s["durationSeconds"] for s in schedules} == {"60"}
    allowed = {int(a["pid"]) for a in api.of("/allow")}
    assert allowed and process.process.pid not in allowed  # a forked child got the GPU
    releases = api.of("/release")
    assert len(releases) == len(schedules) and all(r["fail"] == "false" for r in releases)
    # The child was pointed at the GPU it was given (spaces does so only with PyTorch).
    assert "CUDA_VISIBLE_DEVICES=GPU-fake-0" in process.log_path.read_text()


def test_on_zerogpu_a_canceled_job_releases_its_gpu(zerogpu_studio, media, tmp_path):
    process, api = zerogpu_studio
    # Long enough to be caught running: segments only swap (the tracks are found once).
    video = make_video(tmp_path / "long.mp4", seconds=60.0, fps=4, size=(160, 120), audio=False)
    with browser(process, standin.make_token()) as client:
        (job_id,) = submit_from_page(client, media["source"], video)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] == "running" and (job["progress"] or 0) > 0:
                break
            time.sleep(0.05)
        assert client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
        assert wait_finished(client, job_id, timeout=60)["status"] == "canceled"
    deadline = time.monotonic() + 10
    while len(api.of("/release")) < len(api.of("/schedule")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(api.of("/release")) == len(api.of("/schedule"))  # nothing holds a GPU
    assert api.killed == []  # no call ran past its duration
