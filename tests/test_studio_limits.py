"""Operator limits above their defaults take effect everywhere, through the public surface.

Each limit is checked once, at submit, and travels with the job (``JobSpec.limits``),
so no later layer (the scheduler's validator, the worker's decoders) refuses what the
operator allowed.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.assets import T1, TOM_HANKS
from tests.gradio_protocol import GradioPage
from tests.live_studio import StudioProcess

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    data = tmp_path_factory.mktemp("limits")
    args = ["--max-megapixels", "60", "--max-sources", "12", "--max-batch", "2"]
    process = StudioProcess(data, args).start()
    yield process
    process.stop()


def api(process: StudioProcess) -> httpx.Client:
    return httpx.Client(base_url=process.url, timeout=120)


def finished(client: httpx.Client, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


def test_a_50_megapixel_photo_is_accepted_under_max_megapixels_60(studio, tmp_path):
    big = np.full((6000, 8400, 3), 200, np.uint8)  # 50.4 MP, over the built-in 40
    big[:886, :1280] = cv2.imread(str(T1))
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 80])
    with api(studio) as client:
        submitted = client.post(
            "/api/v1/jobs",
            files=[
                ("source", ("me.png", TOM_HANKS.read_bytes())),
                ("target", ("big.jpg", path.read_bytes())),
            ],
            data={"options": '{"consent": true}'},
        )
        assert submitted.status_code == 202, submitted.text
        job = finished(client, submitted.json()["id"])
        assert job["status"] == "succeeded", job
        result = client.get(f"/api/v1/jobs/{job['id']}/result")
    image = cv2.imdecode(np.frombuffer(result.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (6000, 8400)


def test_ten_sources_are_accepted_under_max_sources_12(studio):
    face = TOM_HANKS.read_bytes()
    with api(studio) as client:
        files = [("source", (f"s{n}.png", face)) for n in range(10)]
        files.append(("target", ("t.jpg", T1.read_bytes())))
        submitted = client.post("/api/v1/jobs", files=files, data={"options": '{"consent": true}'})
        assert submitted.status_code == 202, submitted.text
        assert finished(client, submitted.json()["id"])["status"] == "succeeded"
        files = [("source", (f"s{n}.png", face)) for n in range(13)]
        files.append(("target", ("t.jpg", T1.read_bytes())))
        refused = client.post("/api/v1/jobs", files=files, data={"options": '{"consent": true}'})
        assert refused.status_code == 422
        assert "at most 12 source images" in refused.json()["error"]["message"]


def test_a_batch_over_max_batch_is_refused_at_submit(studio, tmp_path):
    options = '{"consent": true, "batch_id": "b1"}'
    files = [
        ("source", ("me.png", TOM_HANKS.read_bytes())),
        ("target", ("t.jpg", T1.read_bytes())),
    ]
    with api(studio) as client:
        for _ in range(2):
            ok = client.post("/api/v1/jobs", files=files, data={"options": options})
            assert ok.status_code == 202, ok.text
        third = client.post("/api/v1/jobs", files=files, data={"options": options})
        assert third.status_code == 422
        assert "at most 2 targets" in third.json()["error"]["message"]
    # The UI: three targets in one submission are refused before any job exists.
    targets = []
    for n in range(3):
        path = tmp_path / f"t{n}.jpg"
        path.write_bytes(T1.read_bytes())
        targets.append(path)
    with httpx.Client(base_url=studio.url, timeout=60, headers={"Origin": studio.url}) as client:
        page = GradioPage.open(client)
        sources = page.upload(Path(TOM_HANKS))
        uploaded = page.upload(*targets)
        submit = page.event_for("fs-submit", "click")
        data = [page.default_value(i) for i in submit.input_ids]
        data[0], data[1], data[3] = sources, uploaded, True
        done = page.run(submit, data)
        assert "at most 2 targets" in str(done["output"]["data"][0]), done
        assert client.get("/api/v1/jobs").json()["jobs"] == []
