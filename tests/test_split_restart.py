"""A long video on ``--devices cpu:0,cpu:1``, through the studio a person runs.

It is split by default (no flag), its segments run on both devices, and after the
server is killed with SIGKILL mid-job the restarted server finishes it without
processing any finished segment again; the job's history says so.
"""

from __future__ import annotations

import json
import signal
import time

import av
import httpx
import pytest

from tests.assets import TOM_HANKS
from tests.live_studio import StudioProcess
from tests.media import make_video

pytestmark = pytest.mark.timeout(300)

DEVICES = ["--devices", "cpu:0,cpu:1", "--threads-per-slot", "1"]
SEGMENTS = 12  # 6 s at 10 fps, cut every 0.5 s


def history(http: httpx.Client, job_id: str) -> list[dict]:
    return http.get(f"/api/v1/jobs/{job_id}/history").json()["history"]


def segments(entries: list[dict]) -> list[dict]:
    return [entry["detail"] for entry in entries if entry["event"] == "segment"]


def wait_finished(http: httpx.Client, job_id: str, timeout: float = 200.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_split_by_default_survives_sigkill_without_redoing_a_segment(tmp_path):
    video = make_video(tmp_path / "long.mp4", seconds=6.0, fps=10, size=(256, 192))
    data = tmp_path / "data"
    files = [
        ("source", ("me.png", TOM_HANKS.read_bytes())),
        ("target", ("long.mp4", video.read_bytes())),
    ]
    first = StudioProcess(data, DEVICES).start()
    try:
        http = httpx.Client(base_url=first.url, timeout=30)  # open local mode: no key
        response = http.post(
            "/api/v1/jobs", files=files, data={"options": json.dumps({"segment_seconds": 0.5})}
        )
        assert response.status_code in (200, 201, 202), response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(segments(history(http, job_id))) < 2:
            time.sleep(0.05)
        before = segments(history(http, job_id))
        assert 2 <= len(before) < SEGMENTS, before
        http.close()
    finally:
        assert first.process is not None
        first.process.send_signal(signal.SIGKILL)  # no graceful release: a crash
        first.process.wait(30)

    with StudioProcess(data, DEVICES, port=first.port) as second:
        http = httpx.Client(base_url=second.url, timeout=30)
        job = wait_finished(http, job_id)
        assert job["status"] == "succeeded", job
        entries = history(http, job_id)
        done = segments(entries)
        processed = [note["index"] for note in done if not note["reused"]]
        reused = [note["index"] for note in done if note["reused"]]
        # Every segment was processed exactly once over both runs; what the first run
        # finished, the second took as it was.
        assert sorted(processed) == list(range(SEGMENTS)), done
        assert {note["index"] for note in before} <= set(reused)
        assert {note["device"] for note in done} == {"cpu:0", "cpu:1"}
        stages = [entry for entry in entries if entry["event"] == "stage"]
        assert len(stages) == 2 and all(s["detail"]["gate"] == "passed" for s in stages)
        result = http.get(job["result_url"])
        assert result.status_code == 200
        output = tmp_path / "result.mp4"
        output.write_bytes(result.content)
        with av.open(str(output)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 10 * SEGMENTS // 2
        http.close()
