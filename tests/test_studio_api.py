"""REST API end to end against a live studio process on 127.0.0.1 (real engine, real jobs)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.assets import T1, TOM_HANKS
from tests.live_studio import StudioProcess, create_key, iter_sse
from tests.media import make_video

pytestmark = pytest.mark.timeout(240)

MAX_PER_OWNER = 3


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    target = root / "group.jpg"
    image = cv2.imread(str(T1))
    cv2.imwrite(str(target), cv2.resize(image, (480, 332), interpolation=cv2.INTER_AREA))
    long_video = make_video(root / "long.mp4", seconds=4.0, fps=5, size=(160, 120), audio=False)
    return {
        "source": TOM_HANKS,
        "image": target,
        "video": make_video(root / "clip.mp4", seconds=2.0, fps=10, size=(320, 240)),
        "slow_video": make_video(root / "slow.mp4", seconds=2.5, fps=10, size=(320, 240)),
        "long_video": Path(long_video),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("studio-data")
    keys = {name: create_key(data, name) for name in ("alice", "bob", "flood")}
    process = StudioProcess(
        data,
        [
            "--max-queued-per-owner",
            str(MAX_PER_OWNER),
            "--max-upload-mb",
            "2",
            "--max-megapixels",
            "2",
            "--max-video-seconds",
            "3",
        ],
    ).start()
    yield process, keys
    process.stop()


def client(server, name: str | None = "alice") -> httpx.Client:
    process, keys = server
    headers = {"Authorization": f"Bearer {keys[name]}"} if name else {}
    return httpx.Client(base_url=process.url, headers=headers, timeout=30)


def submit(http: httpx.Client, source: Path, target: Path, options: dict | None = None, **kw):
    files = [
        ("source", (source.name, source.read_bytes())),
        ("target", (target.name, target.read_bytes())),
    ]
    data = {"options": json.dumps(options)} if options is not None else {}
    return http.post("/api/v1/jobs", files=files, data=data, **kw)


def follow(http: httpx.Client, job_id: str, timeout: float = 120) -> list[tuple[str, dict]]:
    """Every SSE event of one job until the stream ends (it ends at a final status)."""
    events = []
    with http.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for name, data in iter_sse(response):
            events.append((name, data))
    return events


def wait_status(http: httpx.Client, job_id: str, statuses: set[str], timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stayed {job['status']}")


def test_image_job_end_to_end(server, media):
    with client(server) as http:
        response = submit(http, media["source"], media["image"], {"selector": "many"})
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["status"] == "queued" and len(job["id"]) >= 16
        assert response.headers["location"] == f"/api/v1/jobs/{job['id']}"
        events = follow(http, job["id"])
        assert events[-1][0] == "job" and events[-1][1]["status"] == "succeeded"
        final = http.get(f"/api/v1/jobs/{job['id']}").json()
        for key in (
            "id",
            "status",
            "progress",
            "stage",
            "eta_seconds",
            "error",
            "attempts",
            "created_at",
            "result_url",
        ):
            assert key in final
        assert final["progress"] == 1.0 and final["error"] is None
        assert final["attempts"] == 0 and final["max_attempts"] == 3
        result = http.get(final["result_url"])
        assert result.status_code == 200
        output = cv2.imdecode(np.frombuffer(result.content, np.uint8), cv2.IMREAD_COLOR)
        original = cv2.imread(str(media["image"]))
        assert output.shape == original.shape
        assert np.abs(output.astype(int) - original.astype(int)).mean() > 0.5  # faces changed
        listed = http.get("/api/v1/jobs").json()["jobs"]
        assert job["id"] in [item["id"] for item in listed]


def test_video_job_streams_progress_and_downloads(server, media, tmp_path):
    import av

    with client(server) as http:
        response = submit(http, media["source"], media["video"])
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        events = follow(http, job_id)
        progress = [data["progress"] for name, data in events if name == "progress"]
        assert len(progress) >= 2, events
        assert any(0 < p < 1 for p in progress if p is not None)
        assert events[-1][1]["status"] == "succeeded"
        result = http.get(f"/api/v1/jobs/{job_id}/result")
        assert result.status_code == 200
        out = tmp_path / "out.mp4"
        out.write_bytes(result.content)
        with av.open(str(out)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames == 20


def test_cancel_and_retry(server, media):
    with client(server) as http:
        job_id = submit(http, media["source"], media["slow_video"]).json()["id"]
        wait_status(http, job_id, {"running"}, timeout=30)
        canceled = http.post(f"/api/v1/jobs/{job_id}/cancel")
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "canceled"
        assert http.get(f"/api/v1/jobs/{job_id}/result").status_code == 409
        again = http.post(f"/api/v1/jobs/{job_id}/cancel")
        assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"
        retried = http.post(f"/api/v1/jobs/{job_id}/retry")
        assert retried.status_code == 200 and retried.json()["status"] == "queued"
        final = wait_status(http, job_id, {"succeeded", "failed"}, timeout=90)
        assert final["status"] == "succeeded"
        history = http.get(f"/api/v1/jobs/{job_id}/history").json()["history"]
        assert [e["event"] for e in history].count("canceled") == 1
        deleted = http.delete(f"/api/v1/jobs/{job_id}")
        assert deleted.status_code == 204
        assert http.get(f"/api/v1/jobs/{job_id}").status_code == 404


def test_other_keys_jobs_are_invisible(server, media):
    with client(server, "alice") as alice, client(server, "bob") as bob:
        job_id = submit(alice, media["source"], media["image"]).json()["id"]
        for method, path in (
            ("GET", f"/api/v1/jobs/{job_id}"),
            ("GET", f"/api/v1/jobs/{job_id}/events"),
            ("GET", f"/api/v1/jobs/{job_id}/result"),
            ("POST", f"/api/v1/jobs/{job_id}/cancel"),
            ("POST", f"/api/v1/jobs/{job_id}/retry"),
            ("DELETE", f"/api/v1/jobs/{job_id}"),
        ):
            response = bob.request(method, path)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_found"
        assert job_id not in [j["id"] for j in bob.get("/api/v1/jobs").json()["jobs"]]
        assert alice.get(f"/api/v1/jobs/{job_id}").status_code == 200
        wait_status(alice, job_id, {"succeeded", "failed"})


def test_missing_or_bad_credentials(server, media):
    process, _ = server
    with httpx.Client(base_url=process.url) as http:
        assert http.get("/api/v1/jobs").status_code == 401  # keys exist: no open mode
        bad = http.get("/api/v1/jobs", headers={"Authorization": "Bearer fsk_nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("source_not_image", "source 1"),
        ("missing_target", "target"),
        ("empty_target", "empty"),
        ("bad_json", "not valid JSON"),
        ("unknown_option", "unknown option"),
        ("bad_selector", "selector"),
        ("too_many_pixels", "megapixels"),
        ("video_too_long", "the limit is 3 s"),
        ("not_a_video", "not a supported image or video"),
        ("truncated_target", "target (t.jpg): the image file is truncated"),
        ("too_large", "upload limit"),
        ("reference_without_model", "arcface_w600k_r50"),
    ],
)
def test_bad_uploads_and_options_are_422(server, media, tmp_path, case, message):
    source, image = media["source"], media["image"]
    files = [("source", ("me.png", source.read_bytes())), ("target", ("t.jpg", image.read_bytes()))]
    options = None
    if case == "source_not_image":
        files[0] = ("source", ("me.png", b"this is not an image at all"))
    elif case == "missing_target":
        files = files[:1]
    elif case == "empty_target":
        files[1] = ("target", ("t.jpg", b""))
    elif case == "bad_json":
        options = "{selector: many"
    elif case == "unknown_option":
        options = json.dumps({"colour": "blue"})
    elif case == "bad_selector":
        options = json.dumps({"selector": "all"})
    elif case == "too_many_pixels":
        big = np.full((1200, 2000, 3), 128, np.uint8)  # 2.4 MP, limit 2 MP
        files[1] = ("target", ("big.png", cv2.imencode(".png", big)[1].tobytes()))
    elif case == "video_too_long":
        files[1] = ("target", ("long.mp4", media["long_video"].read_bytes()))
    elif case == "not_a_video":
        files[1] = ("target", ("clip.mp4", b"\x00\x00\x00\x18ftypmp42" + b"junk" * 500))
    elif case == "truncated_target":  # the header is intact: caught when decoded
        files[1] = ("target", ("t.jpg", image.read_bytes()[: image.stat().st_size // 2]))
    elif case == "too_large":
        files[1] = ("target", ("huge.jpg", b"\xff\xd8\xff" + b"\x00" * (3 * 1024 * 1024)))
    elif case == "reference_without_model":
        options = json.dumps({"selector": "reference", "reference_face_index": 0})
    data = {"options": options} if options is not None else {}
    with client(server, "bob") as http:
        before = len(http.get("/api/v1/jobs").json()["jobs"])
        response = http.post("/api/v1/jobs", files=files, data=data)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert set(error) == {"code", "message"}
        assert message in error["message"], error
        assert len(http.get("/api/v1/jobs").json()["jobs"]) == before  # nothing stored


def test_queue_full_is_429(server, media):
    with client(server, "flood") as http:
        accepted, refused = [], None
        for _ in range(MAX_PER_OWNER + 3):
            response = submit(http, media["source"], media["slow_video"])
            if response.status_code == 429:
                refused = response
                break
            assert response.status_code == 202, response.text
            accepted.append(response.json()["id"])
        assert refused is not None, "the queue never filled"
        assert refused.json()["error"]["code"] == "queue_full"
        assert "Retry-After" in refused.headers
        assert MAX_PER_OWNER <= len(accepted) <= MAX_PER_OWNER + 1
        for job_id in accepted:
            http.post(f"/api/v1/jobs/{job_id}/cancel")
    with client(server, "alice") as other:  # another owner is not affected
        response = submit(other, media["source"], media["image"])
        assert response.status_code == 202
        wait_status(other, response.json()["id"], {"succeeded", "failed"})


def test_share_links_expire_and_cannot_be_forged(server, media):
    process, _ = server
    with client(server) as http:
        job_id = submit(http, media["source"], media["image"]).json()["id"]
        wait_status(http, job_id, {"succeeded"})
        link = http.post(f"/api/v1/jobs/{job_id}/share").json()
        assert link["expires_at"] > time.time() + 3600
    with httpx.Client() as anonymous:
        shared = anonymous.get(link["url"])
        assert shared.status_code == 200 and shared.content[:3] == b"\xff\xd8\xff"
        token = link["url"].rsplit("/", 1)[-1]
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        assert anonymous.get(f"{process.url}/api/v1/shared/{forged}").status_code == 404
        direct = anonymous.get(f"{process.url}/api/v1/jobs/{job_id}/result")
        assert direct.status_code == 401


def test_priority_moves_and_listing_filters(server, media):
    with client(server) as http:
        job_id = submit(http, media["source"], media["image"], {"priority": 3}).json()["id"]
        job = http.post(f"/api/v1/jobs/{job_id}/priority", json={"move": "up"})
        if job.status_code == 200:  # it may have finished already: then 409
            assert job.json()["priority"] == 4
        wait_status(http, job_id, {"succeeded"})
        succeeded = http.get("/api/v1/jobs", params={"status": "succeeded"}).json()["jobs"]
        assert all(item["status"] == "succeeded" for item in succeeded)
        bad = http.get("/api/v1/jobs", params={"status": "done"})
        assert bad.status_code == 422


def test_health_metrics_and_docs(server):
    process, _ = server
    with httpx.Client(base_url=process.url) as http:
        health = http.get("/api/v1/health").json()
        assert health["status"] == "ok" and health["devices"][0]["slots"] == 1
        metrics = http.get("/metrics")
        assert metrics.status_code == 200
        text = metrics.text
        for name in (
            'fusion_jobs{status="succeeded"}',
            "fusion_queue_depth",
            "fusion_job_duration_seconds_bucket",
            "fusion_job_wait_seconds_bucket",
            "fusion_frames_per_second",
            'fusion_device_slots_busy{device="cpu:0"}',
            "fusion_webhook_deliveries_total",
            "fusion_webhook_failures_total",
        ):
            assert name in text, name
        succeeded = [
            line for line in text.splitlines() if line.startswith('fusion_jobs{status="succeeded"}')
        ]
        assert float(succeeded[0].split()[-1]) >= 1
        spec = http.get("/api/v1/openapi.json").json()
        for path in (
            "/api/v1/jobs",
            "/api/v1/jobs/{job_id}",
            "/api/v1/jobs/{job_id}/events",
            "/api/v1/jobs/{job_id}/result",
            "/api/v1/health",
        ):
            assert path in spec["paths"], path
        assert http.get("/api/v1/docs").status_code == 200
        unknown = http.get("/api/v1/nothing-here")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


def test_log_lines_carry_job_ids(server):
    process, _ = server
    lines = [line for line in process.log().splitlines() if "studio.jobs" in line]
    job_lines = [line for line in lines if "submitted" in line or "succeeded" in line]
    assert job_lines and all("job=" in line for line in job_lines)


def test_batch_results_download_as_one_zip(server, media):
    import io
    import zipfile

    with client(server) as http:
        ids = [
            submit(http, media["source"], media["image"], {"batch_id": "holiday-1"}).json()["id"]
            for _ in range(2)
        ]
        early = http.get("/api/v1/batches/holiday-1/download")
        assert early.status_code in (200, 409)
        for job_id in ids:
            wait_status(http, job_id, {"succeeded"})
        response = http.get("/api/v1/batches/holiday-1/download")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            names = archive.namelist()
            assert len(names) == 2 and all(name.endswith(".jpg") for name in names)
            assert all(archive.read(name)[:3] == b"\xff\xd8\xff" for name in names)
    with client(server, "bob") as other:
        assert other.get("/api/v1/batches/holiday-1/download").status_code == 404
    with client(server) as http:
        bad = submit(http, media["source"], media["image"], {"batch_id": "../x"})
        assert bad.status_code == 422
