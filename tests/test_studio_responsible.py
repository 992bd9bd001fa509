"""Responsible use over the REST API: consent recorded, content gate at submit, verify."""

from __future__ import annotations

import io
import time
from pathlib import Path

import cv2
import httpx
import pytest

from engine.imageio import decode_image, load_image
from engine.runtime import SessionCache
from engine.safety import ContentGate
from engine.safety.gate import INPUT_SIDE
from studio.responsible import ScoreCache, SubmitContentGate
from tests.assets import T1, TOM_HANKS
from tests.live_studio import StudioProcess

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


def test_content_gate_at_dispatch_refuses_before_processing_and_deletes_inputs(tmp_path, target):
    """The default: the submit is cheap (no inference in the request); the job's first
    stage refuses, its inputs are deleted at once, and the refusal shows on the job."""
    data = tmp_path / "data"
    with (
        StudioProcess(data, ["--content-threshold", "0.0001"]) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        response = submit(client, target, '{"consent": true}')
        assert response.status_code == 202, response.text
        job = wait_done(client, response.json()["id"])
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "content_policy"
        assert "content policy" in job["error"]["message"]
        assert client.get(f"/api/v1/jobs/{job['id']}/result").status_code in (404, 409)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            history = client.get(f"/api/v1/jobs/{job['id']}/history").json()["history"]
            if history[-1]["event"] == "inputs_deleted":
                break
            time.sleep(0.1)
        events = [entry["event"] for entry in history]
        assert events[-2:] == ["failed", "inputs_deleted"], events
    job_dir = data / "jobs" / job["id"]
    assert not (job_dir / "inputs").exists()
    assert not (job_dir / "outputs").exists() or not any((job_dir / "outputs").iterdir())


def test_content_gate_at_submit_refuses_and_stores_nothing(tmp_path, target):
    data = tmp_path / "data"
    with (
        StudioProcess(
            data, ["--content-threshold", "0.0001", "--content-gate", "submit"]
        ) as server,
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


# -- the content gate at submit, without a server -----------------------------------------


def jpeg_bytes(image, orientation: int | None = None) -> bytes:
    from PIL import Image

    rgb = Image.fromarray(image[:, :, ::-1])
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    with io.BytesIO() as buffer:
        rgb.save(buffer, "JPEG", quality=92, exif=exif)
        return buffer.getvalue()


def test_reduced_decoding_keeps_enough_pixels_and_the_orientation():
    big = cv2.resize(cv2.imread(str(T1)), (3000, 2077), interpolation=cv2.INTER_CUBIC)
    data = jpeg_bytes(big, orientation=6)  # "rotate 90° clockwise to display"
    full = decode_image(data, "photo.jpg")
    reduced = decode_image(data, "photo.jpg", reduce_to=INPUT_SIDE)
    assert full.shape == (3000, 2077, 3)  # upright: portrait
    assert reduced.shape[0] > reduced.shape[1]
    assert INPUT_SIDE <= min(reduced.shape[:2]) < min(full.shape[:2]) // 2
    png = cv2.imencode(".png", big)[1].tobytes()  # not a JPEG: decoded in full
    assert decode_image(png, "photo.png", reduce_to=INPUT_SIDE).shape == (2077, 3000, 3)


def test_submit_gate_scores_close_to_a_full_decode_and_remembers_files(tmp_path):
    big = cv2.resize(cv2.imread(str(T1)), (3000, 2077), interpolation=cv2.INTER_CUBIC)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(big))
    face = tmp_path / "face.png"
    face.write_bytes(TOM_HANKS.read_bytes())
    same_face = tmp_path / "same-face.png"
    same_face.write_bytes(TOM_HANKS.read_bytes())

    submit_gate = SubmitContentGate(threshold=0.8, max_pixels=40_000_000)
    try:
        scores = submit_gate.score_files(
            [("target (photo.jpg)", photo), ("source 1", face), ("source 2", same_face)]
        )
        reference = ContentGate(SessionCache("cpu", intra_op_threads=1))
        assert scores[0] == pytest.approx(reference.score(load_image(photo)), abs=0.02)
        assert scores[1] == pytest.approx(reference.score(load_image(face)), abs=1e-5)
        assert scores[2] == scores[1]
        assert len(submit_gate.scores) == 2  # the same bytes under two names: one entry
        assert submit_gate.score_files([("source 1", face)]) == [scores[1]]
    finally:
        submit_gate.close()


def test_score_cache_forgets_the_least_recently_used():
    cache = ScoreCache(size=2)
    cache.put("a", 0.1)
    cache.put("b", 0.2)
    assert cache.get("a") == 0.1  # "a" is now the most recent
    cache.put("c", 0.3)
    assert cache.get("b") is None and cache.get("a") == 0.1 and cache.get("c") == 0.3
    assert len(cache) == 2
