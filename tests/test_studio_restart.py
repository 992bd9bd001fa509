"""A studio restarted between submit and completion: nothing is lost, the job finishes once."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.assets import TOM_HANKS
from tests.live_studio import StudioProcess
from tests.media import make_video

pytestmark = pytest.mark.timeout(240)


def test_restart_between_submit_and_completion(tmp_path):
    video = make_video(tmp_path / "clip.mp4", seconds=5.0, fps=10, size=(320, 240))
    data = tmp_path / "data"
    files = [
        ("source", ("me.png", TOM_HANKS.read_bytes())),
        ("target", ("clip.mp4", video.read_bytes())),
    ]
    with StudioProcess(data, ["--log-format", "json"]) as first:
        http = httpx.Client(base_url=first.url, timeout=30)  # open local mode: no key
        running = http.post("/api/v1/jobs", files=files).json()["id"]
        waiting = http.post("/api/v1/jobs", files=files).json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = http.get(f"/api/v1/jobs/{running}").json()
            if job["status"] == "running" and (job["progress"] or 0) > 0:
                break
            time.sleep(0.05)
        assert job["status"] == "running", job
        http.close()
    # SIGTERM: the running job was released to the queue without charging an attempt
    lines = first.log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]  # every line is JSON
    assert any("released back to the queue" in r["message"] for r in records)
    job_records = [r for r in records if r["logger"] == "studio.jobs" and running in r["message"]]
    assert all(r.get("job_id") == running for r in job_records)
    assert any(r.get("job_id") == running and r.get("status") == "running" for r in records)
    with StudioProcess(data, port=first.port) as second:
        http = httpx.Client(base_url=second.url, timeout=30)
        assert http.get(f"/api/v1/jobs/{running}").json()["status"] in ("queued", "running")
        for job_id in (running, waiting):
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                job = http.get(f"/api/v1/jobs/{job_id}").json()
                if job["status"] in ("succeeded", "failed", "canceled"):
                    break
                time.sleep(0.1)
            assert job["status"] == "succeeded", job
            assert job["attempts"] == 0
            assert http.get(job["result_url"]).status_code == 200
        events = [e["event"] for e in http.get(f"/api/v1/jobs/{running}/history").json()["history"]]
        assert events.count("released") == 1 and events.count("succeeded") == 1, events
        outputs = list((data / "jobs" / running / "outputs").iterdir())
        assert [p.name for p in outputs] == ["result.mp4"]
        http.close()
