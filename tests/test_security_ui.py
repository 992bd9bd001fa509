"""Attacks on the UI's own routes, against a live studio on 127.0.0.1.

Every Gradio event that takes a file is found by walking ``/config`` (so a new
event is covered without touching this file) and is fed ``FileData`` paths that
this browser never uploaded. Then: foreign ``Host`` and ``Origin`` headers, a
made-up cookie under ``--require-api-key``, operator-only model downloads, and
a UI submission followed by a deletion that must leave no trace of the faces.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.assets import T1, TOM_HANKS
from tests.gradio_protocol import GradioPage, file_data
from tests.live_studio import StudioProcess, create_key

pytestmark = pytest.mark.timeout(300)

SECRET = b"fusion-studio-test-secret: this file must never be copied or served\n"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """An open local-mode studio (no keys), with its own temp dir to inspect."""
    root = tmp_path_factory.mktemp("security-ui")
    temp = root / "tmp"
    temp.mkdir()
    process = StudioProcess(root / "data", env={"TMPDIR": str(temp)}).start()
    yield process, temp
    process.stop()


def browser(process: StudioProcess) -> httpx.Client:
    return httpx.Client(base_url=process.url, timeout=60, headers={"Origin": process.url})


def cache_dir(process: StudioProcess) -> Path:
    return Path(process.data_dir) / "studio" / "ui-cache"


def files_under(*roots: Path) -> set[Path]:
    return {p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}


def healthy(process: StudioProcess) -> bool:
    return httpx.get(f"{process.url}/api/v1/health", timeout=5).status_code == 200


def unique_face(path: Path, seed: int) -> Path:
    """Tom Hanks with a few random pixels in a corner: bytes never seen before."""
    image = cv2.imread(str(TOM_HANKS))
    rng = np.random.default_rng(seed)
    image[:4, :4] = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return path


def unique_target(path: Path, seed: int) -> Path:
    image = cv2.resize(cv2.imread(str(T1)), (480, 332), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    image[:4, :4] = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return path


def hostile_paths(process: StudioProcess, tmp_path: Path, page: GradioPage) -> dict[str, str]:
    """Paths a browser never uploaded, one per kind of attack."""
    outside = tmp_path / "secret.png"
    outside.write_bytes(SECRET)
    # Another owner's job input: a job submitted over the API by the local owner.
    with httpx.Client(base_url=process.url, timeout=60) as api:
        response = api.post(
            "/api/v1/jobs",
            files=[
                ("source", ("me.png", TOM_HANKS.read_bytes())),
                ("target", ("t.jpg", T1.read_bytes())),
            ],
            data={"options": '{"consent": true}'},
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
    inputs = sorted((Path(process.data_dir) / "jobs" / job_id / "inputs").iterdir())
    assert inputs, "the job's inputs should be on disk"
    # Another browser's upload.
    with browser(process) as other_client:
        other = GradioPage.open(other_client)
        others_upload = other.upload(unique_face(tmp_path / "other.png", 7))[0]["path"]
    # An upload of ours, swapped for a symlink out of the cache after the upload.
    ours = page.upload(unique_face(tmp_path / "ours.png", 8))[0]["path"]
    os.unlink(ours)
    os.symlink(outside, ours)
    cache = cache_dir(process)
    return {
        "outside the data dir": str(outside),
        "system file": "/etc/passwd",
        "another owner's job input": str(inputs[0]),
        "another browser's upload": others_upload,
        "device": "/dev/zero",
        "directory": str(cache),
        "traversal": str(cache / ".." / ".." / "studio.sqlite"),
        "symlink out of the cache": ours,
        "url": "http://127.0.0.1:1/x.png",
    }


def test_every_file_event_refuses_files_never_uploaded(studio, tmp_path):
    process, _ = studio
    with browser(process) as client:
        page = GradioPage.open(client)
        events = [e for e in page.events() if e.takes_files]
        assert len(events) >= 3, "the Create and Verify panels take files"
        attacks = hostile_paths(process, tmp_path, page)
        before = files_under(cache_dir(process))
        for event in page.events():
            for name, path in attacks.items():
                hostile = file_data(path)
                # Every file input gets the path (as one file and as a list); so does the
                # event data (a gallery's select event carries the picked image).
                data = [
                    [hostile] if kind == "file" else hostile if kind in ("image", "video") else None
                    for kind in event.input_types
                ]
                if not event.takes_files and event.trigger != "select":
                    continue
                response = page.join(event, data, {"index": 0, "value": {"image": hostile}})
                assert response.status_code == 422, (event, name, response.text)
                error = response.json()["error"]
                assert error["code"] == "file_refused", (event, name)
                assert path not in error["message"]
        assert healthy(process)
        after = files_under(cache_dir(process))
    assert after == before, f"files copied into the cache: {after - before}"
    for path in after:
        if not path.is_symlink():
            assert SECRET not in path.read_bytes()


def test_cache_files_are_served_only_to_their_browser(studio, tmp_path):
    process, _ = studio
    with browser(process) as mine, browser(process) as theirs:
        uploaded = GradioPage.open(mine).upload(unique_face(tmp_path / "a.png", 11))[0]["path"]
        GradioPage.open(theirs)
        assert mine.get(f"/gradio_api/file={uploaded}").status_code == 200
        refused = theirs.get(f"/gradio_api/file={uploaded}")
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "not_found"
        for path in ("/etc/passwd", str(Path(process.data_dir) / "studio" / "studio.sqlite")):
            response = mine.get(f"/gradio_api/file={path}")
            assert response.status_code == 404, path
            assert b"root:" not in response.content


def test_unused_gradio_routes_are_closed(studio):
    process, _ = studio
    with browser(process) as client:
        for path in (
            "/gradio_api/proxy=http://127.0.0.1:1/",
            "/gradio_api/stream/x/y/1/playlist.m3u8",
            "/monitoring",
        ):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"


def test_malformed_uploads_are_answered_with_the_error_object(studio):
    process, _ = studio
    with browser(process) as client:
        GradioPage.open(client)
        before = files_under(cache_dir(process))
        text_part = client.post(
            "/gradio_api/upload", data={"files": "not a file"}, files={"x": ("x", b"")}
        )
        assert text_part.status_code == 422, text_part.text
        assert text_part.json()["error"]["code"] == "invalid_input"
        no_boundary = client.post(
            "/gradio_api/upload",
            content=b"--x\r\n",
            headers={"content-type": "multipart/form-data"},
        )
        assert 400 <= no_boundary.status_code < 500
        assert "error" in no_boundary.json()
        assert healthy(process)
    # Gradio spools the parts it then rejects at the cache's top level; the schedule
    # sweeps such files (tested without a server in the registry test below).
    stray = files_under(cache_dir(process)) - before
    assert all(path.parent == cache_dir(process) for path in stray)


def test_foreign_host_is_refused_in_open_local_mode(studio):
    process, _ = studio
    for path in ("/api/v1/me", "/", "/config", "/api/v1/jobs"):
        response = httpx.get(process.url + path, headers={"Host": "evil.example"})
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "forbidden_host"
        assert "whsec_" not in response.text
    for host in ("localhost", f"localhost:{process.port}", f"127.0.0.1:{process.port}"):
        response = httpx.get(process.url + "/api/v1/me", headers={"Host": host})
        assert response.status_code == 200, host
        assert response.json()["webhook_secret"].startswith("whsec_")


def test_foreign_origin_on_cookie_and_open_mode_writes_is_refused(studio):
    process, _ = studio
    evil = {"Origin": "http://evil.example"}
    files = [
        ("source", ("me.png", TOM_HANKS.read_bytes())),
        ("target", ("t.jpg", T1.read_bytes())),
    ]
    options = {"options": '{"consent": true}'}
    with browser(process) as client:
        GradioPage.open(client)  # the browser's owner cookie
        submitted = client.post("/api/v1/jobs", files=files, data=options)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        for headers in (
            evil,
            {"Origin": "null"},
            {"Origin": "", "Referer": "http://evil.example/"},
        ):
            attempt = client.post("/api/v1/jobs", files=files, data=options, headers=headers)
            assert attempt.status_code == 403, headers
            assert attempt.json()["error"]["code"] == "forbidden"
            cancel = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers)
            assert cancel.status_code == 403, headers
        # The UI's own kind of request still works.
        assert client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    # Open local mode without any cookie: the same rule.
    with httpx.Client(base_url=process.url, timeout=60) as anonymous:
        refused = anonymous.post("/api/v1/jobs", files=files, data=options, headers=evil)
        assert refused.status_code == 403
        refused = anonymous.post(f"/api/v1/jobs/{job_id}/retry", headers=evil)
        assert refused.status_code == 403
        # A foreign Origin on a Gradio upload is refused too (nothing is stored).
        before = files_under(cache_dir(process))
        upload = anonymous.post(
            "/gradio_api/upload", files=[("files", ("x.png", b"x"))], headers=evil
        )
        assert upload.status_code == 403
        assert files_under(cache_dir(process)) == before


def test_webhook_secret_goes_only_to_authenticated_owners(studio):
    process, _ = studio
    with browser(process) as client:
        GradioPage.open(client)
        me = client.get("/api/v1/me").json()
        assert me["kind"] == "browser"
        assert me["webhook_secret"] is None


def test_ui_submission_and_deletion_leave_no_trace(studio, tmp_path):
    process, temp = studio
    data_dir = Path(process.data_dir)
    source = unique_face(tmp_path / "face.png", 21)
    target = unique_target(tmp_path / "group.jpg", 22)
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (source, target)}
    temp_before = files_under(temp)
    cache_before = files_under(cache_dir(process))
    with browser(process) as client:
        page = GradioPage.open(client)
        sources = page.upload(source)
        targets = page.upload(target)
        # The face galleries create crops in the cache, owned by this browser.
        shown = page.run(page.event_for("fs-sources", "change"), [sources])
        assert shown["success"], shown
        shown = page.run(page.event_for("fs-targets", "change"), [targets])
        assert shown["success"], shown
        ours = files_under(cache_dir(process)) - cache_before
        crops = ours - {Path(f["path"]) for f in sources + targets}
        assert crops, "the face galleries should have made crops"
        submit = page.event_for("fs-submit", "click")
        data = [page.default_value(i) for i in submit.input_ids]
        data[0], data[1], data[3] = sources, targets, True  # sources, targets, consent
        done = page.run(submit, data)
        assert done["success"], done
        assert "Submitted 1" in str(done["output"]["data"][0])
        # The job holds its own copies: Gradio's cached uploads and crops are gone.
        assert files_under(cache_dir(process)) - cache_before == set()
        jobs = client.get("/api/v1/jobs").json()["jobs"]
        assert len(jobs) == 1
        job_id = jobs[0]["id"]
        deadline = time.monotonic() + 180
        while client.get(f"/api/v1/jobs/{job_id}").json()["status"] not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.5)
        assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    time.sleep(1.0)  # the scheduler removes the files right after the deletion commits
    assert not (data_dir / "jobs" / job_id).exists()
    leftovers = files_under(data_dir / "jobs" / job_id, data_dir / "studio" / "uploads")
    assert leftovers == set()
    assert files_under(cache_dir(process)) - cache_before == set()
    new_temp = files_under(temp) - temp_before
    assert new_temp == set(), new_temp
    for path in files_under(data_dir, temp):
        with path.open("rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() not in digests, path


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """A studio under --require-api-key, with an ordinary key and an admin key."""
    data = tmp_path_factory.mktemp("security-locked")
    user_key = create_key(data, "carol")
    admin_key = create_key(data, "root", "--admin")
    process = StudioProcess(data, ["--require-api-key"]).start()
    yield process, user_key, admin_key
    process.stop()


def test_made_up_cookie_is_not_an_owner_under_require_api_key(locked):
    process, _, _ = locked
    forged = {"fs_owner": "A" * 43}
    with httpx.Client(base_url=process.url, cookies=forged, timeout=30) as client:
        listing = client.get("/api/v1/jobs")
        assert listing.status_code == 401
        assert listing.json()["error"]["code"] == "unauthorized"
        submit = client.post(
            "/api/v1/jobs",
            files=[
                ("source", ("me.png", TOM_HANKS.read_bytes())),
                ("target", ("t.jpg", T1.read_bytes())),
            ],
            headers={"Origin": process.url},
        )
        assert submit.status_code == 401
        # The UI itself asks for a login: no events, no uploads without one.
        assert client.get("/config").status_code in (401, 403)
        upload = client.post("/gradio_api/upload", files=[("files", ("x.png", b"x"))])
        assert upload.status_code in (401, 403)


@contextlib.contextmanager
def login(process: StudioProcess, username: str, password: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=process.url, timeout=60, headers={"Origin": process.url}) as client:
        client.get("/")
        response = client.post("/login", data={"username": username, "password": password})
        assert response.status_code == 200, response.text
        yield client


def test_a_key_logs_in_to_the_ui_and_owns_the_same_jobs(locked, tmp_path):
    process, user_key, _ = locked
    wrong = httpx.post(
        f"{process.url}/login",
        data={"username": "carol", "password": "fsk_wrong"},
        headers={"Origin": process.url},
    )
    assert wrong.status_code >= 400
    with login(process, "carol", user_key) as client:
        page = GradioPage.open(client)
        sources = page.upload(unique_face(tmp_path / "k.png", 31))
        targets = page.upload(unique_target(tmp_path / "k.jpg", 32))
        submit = page.event_for("fs-submit", "click")
        data = [page.default_value(i) for i in submit.input_ids]
        data[0], data[1], data[3] = sources, targets, True
        done = page.run(submit, data)
        assert "Submitted 1" in str(done["output"]["data"][0]), done
    api = httpx.get(
        f"{process.url}/api/v1/jobs", headers={"Authorization": f"Bearer {user_key}"}
    ).json()
    assert len(api["jobs"]) == 1


def test_model_downloads_are_the_operators(locked):
    process, user_key, admin_key = locked
    for name, key, operator in (("carol", user_key, False), ("root", admin_key, True)):
        with login(process, name, key) as client:
            page = GradioPage.open(client)
            refresh = page.run(page.event_for("fs-model-refresh", "click"), [])
            choices = refresh["output"]["data"][1]["choices"]
            assert bool(choices) is operator, (name, choices)
            if not operator:
                # A crafted download event is refused all the same.
                download = page.event_for("fs-model-download", "click")
                result = page.run(download, ["inswapper_128"])
                if result["success"]:
                    assert "operator" in str(result["output"]["data"][0]), result
    models_dir = Path(process.data_dir) / "models"
    assert not list(models_dir.glob("inswapper_128*"))


# -- the cache registry on its own (no server) ---------------------------------------


def test_cache_registry_owns_expires_releases_and_bounds(tmp_path):
    from studio.gradio_guard import CacheRegistry, RefusedFile, check_input_file

    registry = CacheRegistry(tmp_path / "cache", max_age_seconds=60, max_bytes=1000)
    registry.reset()
    folder = registry.cache_dir / "abc"
    folder.mkdir()
    mine, theirs = folder / "mine.png", folder / "theirs.png"
    mine.write_bytes(b"m" * 400)
    theirs.write_bytes(b"t" * 400)
    registry.record("web:me", str(mine), "upload")
    registry.record("web:you", str(theirs), "output")
    registry.record("web:me", "/etc/passwd", "upload")  # outside the cache: never recorded
    assert registry.owns("web:me", str(mine)) and not registry.owns("web:you", str(mine))
    assert not registry.owns("web:me", "/etc/passwd")
    assert not registry.owns("web:me", str(folder / ".." / "abc" / ".." / ".." / "x"))
    check_input_file(registry, "web:me", str(mine), max_bytes=500)
    for owner, path, limit in (
        ("web:you", str(mine), 500),  # not theirs
        ("web:me", str(mine), 100),  # over the limit
        ("web:me", "/dev/zero", 500),
    ):
        with pytest.raises(RefusedFile):
            check_input_file(registry, owner, path, max_bytes=limit)
    assert registry.has_room(200) and not registry.has_room(201)
    assert registry.outputs_of("web:you") == [str(theirs)]
    assert registry.release("web:me", [str(theirs)]) == 0  # not the caller's to delete
    assert theirs.exists()
    spool = registry.cache_dir / "tmpabandoned"
    spool.write_bytes(b"a rejected part")
    assert registry.expire(now=time.time() + 61) == 2  # the spool file is still fresh
    assert not mine.exists() and not theirs.exists() and not folder.exists()
    assert spool.exists()
    assert registry.expire(now=time.time() + 600) == 1
    assert not spool.exists()
