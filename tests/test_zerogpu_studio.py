"""A studio on ``--backend zerogpu`` with the stand-in decorator (tests/zerogpu_standin.py),
end to end over HTTP on 127.0.0.1: jobs submitted from the web page run in GPU calls made
in the submitting visitor's request (their ``X-IP-Token``), API jobs run on the CPU, and
a job running when the studio stops is finished after the restart."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests import zerogpu_standin as standin
from tests.live_studio import StudioProcess
from tests.media import make_video
from tests.zerogpu_standin import browser, submit_from_page, wait_finished

pytestmark = pytest.mark.timeout(300)

CPU_NOTE = "ran on the CPU"


def studio_env(log: Path) -> dict[str, str]:
    return {
        "FUSION_ZEROGPU_DECORATOR": "tests.zerogpu_standin:GPU",
        "FUSION_ZEROGPU_SEGMENTS_PER_CALL": "1",  # one call per segment, whatever the speed
        standin.LOG_ENV: str(log),
    }


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("zerogpu-studio")
    log = root / "calls.jsonl"
    process = StudioProcess(root / "data", ["--backend", "zerogpu"], env=studio_env(log))
    process.start(timeout=90)
    yield process, log
    process.stop()


def test_page_jobs_run_in_gpu_calls_of_the_submitting_visitor(studio, media):
    process, log = studio
    token = standin.make_token()
    with browser(process, token) as client:
        ids = submit_from_page(client, media["source"], media["image"], media["video"])
        assert len(ids) == 2
        jobs = [wait_finished(client, job_id) for job_id in ids]
        for job in jobs:
            assert job["status"] == "succeeded", job
            assert CPU_NOTE not in " ".join(job["result"]["warnings"])
            assert client.get(job["result_url"]).status_code == 200
        assert sorted(job["result"]["frames"] for job in jobs) == [1, 84]
    calls = [c for c in standin.read_log(log) if c["token"] == token]
    # One call for the image, one per segment for the video; each in a child of the server.
    assert len(calls) == 1 + 3
    assert all(c["parent"] == process.process.pid != c["child"] for c in calls)
    assert all(c["outcome"] == "ok" for c in calls)


def test_api_jobs_run_on_the_cpu(studio, media):
    process, log = studio
    before = len(standin.read_log(log))
    files = [
        ("source", ("me.png", media["source"].read_bytes())),
        ("target", ("group.jpg", media["image"].read_bytes())),
    ]
    with httpx.Client(base_url=process.url, timeout=60) as api:  # open local mode: no key
        job = api.post("/api/v1/jobs", files=files).json()
        job = wait_finished(api, job["id"])
    assert job["status"] == "succeeded", job
    assert any(CPU_NOTE in warning for warning in job["result"]["warnings"]), job
    assert len(standin.read_log(log)) == before  # no GPU call


def test_a_running_page_job_is_finished_after_a_restart(tmp_path, media):
    data, log = tmp_path / "data", tmp_path / "calls.jsonl"
    token = standin.make_token()
    args = ["--backend", "zerogpu"]
    first = StudioProcess(data, args, env=studio_env(log))
    # Long enough to be caught running: segments only swap (the tracks are found once).
    video = make_video(tmp_path / "long.mp4", seconds=60.0, fps=4, size=(160, 120), audio=False)
    with first, browser(first, token) as client:
        (job_id,) = submit_from_page(client, media["source"], video)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] == "running" and (job["progress"] or 0) > 0:
                break
            time.sleep(0.05)
        assert job["status"] == "running", job
        cookies = dict(client.cookies)
    second = StudioProcess(data, args, port=first.port, env=studio_env(log))
    with second, browser(second, token) as client:
        client.cookies.update(cookies)  # the same browser
        job = wait_finished(client, job_id)
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 0 and job["result"]["frames"] == 240
        # Its visitor's request did not survive the restart: the CPU finished it.
        assert any(CPU_NOTE in warning for warning in job["result"]["warnings"]), job
        history = client.get(f"/api/v1/jobs/{job_id}/history").json()["history"]
        events = [entry["event"] for entry in history]
        assert events.count("released") == 1 and events.count("succeeded") == 1, events
    # Every GPU call was the visitor's, made before the restart.
    assert {c["token"] for c in standin.read_log(log)} == {token}
