"""Responsible use over the REST API: consent recorded, content gate at submit, verify."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import httpx
import pytest

from studio.testing import StudioProcess
from tests.assets import T1, TOM_HANKS

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("media") / "group.jpg"
    image = cv2.imread(str(T1))
    cv2.imwrite(str(path), cv2.resize(image, (480, 332), interpolation=cv2.INTER_AREA))
    return path


def submit(client: httpx.Client, target: Path, options: str) -> httpx.Response:
    files = [
        ("source", ("face.png", TOM_HANKS.read_bytes(), "image/png")),
        ("target", ("group.jpg", target.read_bytes(), "image/jpeg")),
    ]
    return client.post("/api/v1/jobs", files=files, data={"options": options})


def wait_done(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish")


def test_consent_recorded_and_output_verifies_as_trusted(tmp_path, target):
    with (
        StudioProcess(tmp_path / "data", []) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        response = submit(client, target, '{"consent": true}')
        assert response.status_code == 202, response.text
        job = wait_done(client, response.json()["id"])
        assert job["status"] == "succeeded", job
        history = client.get(f"/api/v1/jobs/{job['id']}/history").json()["history"]
        consent = history[0]["detail"]["consent"]
        assert consent == {"asserted": True, "owner": "local", "at": consent["at"]}

        result = client.get(f"/api/v1/jobs/{job['id']}/result")
        assert result.status_code == 200
        verdict = client.post(
            "/api/v1/verify", files={"file": ("result.jpg", result.content, "image/jpeg")}
        ).json()
        assert verdict["c2pa"]["status"] == "trusted"
        assert verdict["watermark"]["job_id"] == job["id"]
        assert verdict["metadata"]["digital_source_type"].endswith(
            "compositeWithTrainedAlgorithmicMedia"
        )

        # Without consent the API still runs the job, and the history says none was given.
        response = submit(client, target, "{}")
        assert response.status_code == 202
        history = client.get(f"/api/v1/jobs/{response.json()['id']}/history").json()["history"]
        assert history[0]["detail"]["consent"] == {"asserted": False}

        bad = submit(client, target, '{"consent": "yes"}')
        assert bad.status_code == 422
        assert "consent" in bad.json()["error"]["message"]


def test_content_gate_refuses_at_submit_and_stores_nothing(tmp_path, target):
    data = tmp_path / "data"
    with (
        StudioProcess(data, ["--content-threshold", "0.0001"]) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        response = submit(client, target, '{"consent": true}')
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "content_policy"
        assert "content policy" in error["message"]
        assert client.get("/api/v1/jobs").json()["jobs"] == []
    jobs_dir = data / "jobs"
    assert not jobs_dir.exists() or not any(jobs_dir.iterdir())
