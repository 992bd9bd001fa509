"""The studio's building blocks on their own: signing, SSRF guard, keys, cookies, logs, limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import sqlite3
import subprocess
import sys

import cv2
import httpx
import numpy as np
import pytest
from starlette.requests import Request

from engine.errors import InvalidInput, InvalidOptions
from studio import limits, webhooks
from studio.cli import security_warnings
from studio.config import StudioConfig, UploadLimits, env_host, env_port
from studio.core import Studio
from studio.db import open_db
from studio.errors import ApiError
from studio.http_guard import HostAndOriginGuard
from studio.identity import (
    COOKIE_NAME,
    KeyStore,
    OwnerCookieMiddleware,
    Principal,
    browser_owner,
)
from studio.logs import JobIdFilter, JsonFormatter, TextFormatter
from studio.metrics import StudioMetrics
from studio.scheduler_setup import scheduler_config
from studio.sharing import ShareSigner
from studio.ui.i18n import EN, ZH, language, text
from tests.live_studio import REPO
from tests.media import make_video

# -- share links ------------------------------------------------------------------------


def test_share_tokens_round_trip_expire_and_resist_forgery():
    signer = ShareSigner("secret-1")
    token = signer.token("job_ABCdef12345678", 60, now=1000)
    grant = signer.verify(token, now=1030)
    assert grant is not None and grant.job_id == "job_ABCdef12345678"
    assert signer.verify(token, now=1061) is None  # expired
    assert ShareSigner("secret-2").verify(token, now=1030) is None  # other installation
    body, signature = token.split(".")
    other = ShareSigner("secret-1").token("job_OTHER0000000000", 60, now=1000)
    assert signer.verify(f"{other.split('.')[0]}.{signature}", now=1030) is None
    assert signer.verify("garbage", now=1030) is None
    assert signer.verify(f"{body}.", now=1030) is None


# -- webhooks ---------------------------------------------------------------------------


def test_standard_webhooks_signature_matches_an_independent_computation():
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
    body = b'{"type":"job.succeeded"}'
    headers = webhooks.signed_headers(secret, "msg_1", body, now=1_700_000_000)
    assert headers["webhook-timestamp"] == "1700000000"
    expected = hmac.new(
        b"0123456789abcdef01234567", b"msg_1.1700000000." + body, hashlib.sha256
    ).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.1.1", "non-public"),
        ("0.0.0.0", "private"),  # 0.0.0.0/8 ("this network") reaches this host
        ("224.0.0.1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_refusal_names_the_kind_of_address(address, reason):
    result = webhooks.refusal(ipaddress.ip_address(address))
    assert (result is None) if reason is None else (reason in result)


async def test_guard_resolves_checks_and_honours_the_allow_list():
    guard = webhooks.WebhookGuard()
    with pytest.raises(InvalidOptions, match="loopback"):
        await guard.check("http://localhost:8080/hook")  # resolved, then refused
    with pytest.raises(InvalidOptions, match="cannot be resolved"):
        await guard.check("http://no-such-host.invalid/hook")
    allowed = webhooks.WebhookGuard(("127.0.0.0/8", "::1"))
    destination = await allowed.check("http://127.0.0.1:9000/a/b?c=1")
    assert destination.connect_url == "http://127.0.0.1:9000/a/b?c=1"
    assert destination.host_header == "127.0.0.1:9000"
    ipv6 = await allowed.check("https://[::1]/x")
    assert ipv6.connect_url == "https://[::1]:443/x" and ipv6.host_header == "[::1]"
    named = await webhooks.WebhookGuard(("localhost",)).check("http://localhost/hook")
    assert named.address.is_loopback and named.host_header == "localhost"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "http:// or https://"),
        ("http://user:pw@example.com/", "user name"),
        ("http:///nohost", "no host"),
        ("http://example.com/#frag", "fragment"),
        ("http://example.com:99999/", "not a valid URL"),
    ],
)
def test_callback_urls_are_validated(url, message):
    with pytest.raises(InvalidOptions, match=message):
        webhooks.parse_callback_url(url)


# -- keys and owners ----------------------------------------------------------------------


def test_keys_are_stored_hashed_and_can_be_revoked(tmp_path):
    db = open_db(tmp_path)
    keys = KeyStore(db)
    created = keys.create("ci-bot")
    assert created.token.startswith("fsk_") and len(created.token) > 40
    assert keys.authenticate(created.token).owner == created.key.owner
    assert keys.authenticate(created.token + "x") is None
    with pytest.raises(InvalidOptions, match="exists"):
        keys.create("ci-bot")
    with pytest.raises(InvalidOptions, match="invalid key name"):
        keys.create("../etc")
    assert [k.name for k in keys.list()] == ["ci-bot"]
    assert keys.webhook_secret(created.key.owner) == created.webhook_secret
    installation = keys.webhook_secret("web:someone")
    assert installation.startswith("whsec_") and installation != created.webhook_secret
    keys.revoke("ci-bot")
    assert keys.authenticate(created.token) is None
    assert keys.list() == [] and not keys.any_active()
    again = keys.create("ci-bot")  # the name is free again, with a new owner id
    assert again.key.owner != created.key.owner
    db.close()
    raw = (tmp_path / "studio.sqlite").read_bytes()
    assert created.token.encode() not in raw and again.token.encode() not in raw
    rows = sqlite3.connect(tmp_path / "studio.sqlite").execute("SELECT hash FROM api_keys")
    assert hashlib.sha256(again.token.encode()).hexdigest() in {r[0] for r in rows}


def test_keys_command_prints_the_key_alone_on_its_last_line(tmp_path):
    def run(*args: str) -> str:
        code = (
            "import sys; from studio.cli import main; "
            f"sys.exit(main(['keys', '--data-dir', {str(tmp_path)!r}, *{list(args)!r}]))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    token = run("create", "alice").strip().splitlines()[-1]
    assert token.startswith("fsk_") and " " not in token
    listing = run("list")
    assert "alice" in listing and token not in listing
    assert "revoked alice" in run("revoke", "alice")
    assert "no API keys" in run("list")


def test_browser_owner_is_a_hash_of_a_well_formed_cookie():
    cookie = "A" * 43
    owner = browser_owner(cookie)
    assert owner.startswith("web:") and cookie not in owner
    assert owner == browser_owner(cookie) != browser_owner("B" * 43)
    assert browser_owner("short") is None and browser_owner("bad cookie!" * 5) is None
    assert browser_owner(None) is None


def test_same_origin_and_local_name_checks():
    guard = HostAndOriginGuard(None, "127.0.0.1", True, public_url="https://studio.example")
    assert guard.same_origin("http://127.0.0.1:7860", "127.0.0.1:7860")
    assert guard.same_origin("https://studio.example", "127.0.0.1:7860")
    assert not guard.same_origin("https://evil.example", "127.0.0.1:7860")
    assert not guard.same_origin("http://127.0.0.1:7861", "127.0.0.1:7860")
    assert not guard.same_origin("null", "127.0.0.1:7860")
    for host in ("127.0.0.1:7860", "localhost", "[::1]:7860", "127.8.9.1", "studio.example"):
        assert guard.local_name(host), host
    for host in ("evil.example", "evil.example:7860", "", "127.0.0.1.evil.example"):
        assert not guard.local_name(host), host


async def test_owner_cookie_is_minted_httponly_and_seen_by_the_first_request():
    seen: list[str | None] = []

    async def app(scope, receive, send):
        seen.append(Request(scope).cookies.get(COOKIE_NAME))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    transport = httpx.ASGITransport(app=OwnerCookieMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        first = await http.get("/")
        header = first.headers["set-cookie"]
        assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
        assert seen[0] and seen[0] in header
        second = await http.get("/")  # the client sends it back: no new cookie
        assert "set-cookie" not in second.headers and seen[1] == seen[0]
        api = await http.get("/api/v1/jobs")
        assert "set-cookie" not in api.headers
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as fresh:
        assert "set-cookie" not in (await fresh.get("/api/v1/health")).headers


def _request(method: str = "GET", headers: dict | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": method, "path": "/api/v1/jobs", "headers": raw})


def test_principal_rules(tmp_path):
    studio = Studio(StudioConfig(data_dir=tmp_path))  # real SQLite; scheduler not started
    assert studio.principal(_request()).owner == "local"  # loopback, no keys: open
    created = studio.keys.create("alice")
    with pytest.raises(ApiError) as denied:
        studio.principal(_request())  # a key exists now: anonymous calls need one
    assert denied.value.status == 401
    auth = {"Authorization": f"Bearer {created.token}"}
    assert studio.principal(_request(headers=auth)).owner == created.key.owner
    with pytest.raises(ApiError):
        studio.principal(_request(headers={"Authorization": "Bearer fsk_wrong"}))
    cookie = {"Cookie": f"{COOKIE_NAME}={'c' * 43}"}
    assert studio.principal(_request(headers=cookie)).owner == browser_owner("c" * 43)
    # (Cross-site writes never reach here: studio.http_guard refuses them first.)
    exposed = Studio(StudioConfig(data_dir=tmp_path / "b", host="0.0.0.0"))
    with pytest.raises(ApiError):
        exposed.principal(_request())  # not loopback: never open
    locked = Studio(StudioConfig(data_dir=tmp_path / "c", require_api_key=True))
    with pytest.raises(ApiError) as anonymous:
        locked.principal(_request(headers=cookie))  # a cookie alone is never an owner
    assert anonymous.value.status == 401
    assert locked.check_login("alice", "fsk_wrong") is False
    key = locked.keys.create("dora", admin=True)
    assert locked.check_login("dora", key.token) and not locked.check_login("eve", key.token)
    assert locked.ui_principal({}, "dora") == Principal(key.key.owner, "key", "dora", True)
    locked.keys.revoke("dora")
    assert locked.ui_principal({}, "dora") is None  # a revoked key's session ends
    for each in (studio, exposed, locked):
        each.db.close()


def test_config_defaults_follow_gradio_env_and_warn_when_exposed(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    assert env_host() == "0.0.0.0" and env_port() == 7999
    monkeypatch.setenv("GRADIO_SERVER_PORT", "seventy")
    with pytest.raises(InvalidOptions, match="GRADIO_SERVER_PORT"):
        env_port()
    exposed = StudioConfig(data_dir=tmp_path, host="0.0.0.0")
    assert not exposed.api_open
    assert "no API keys" in security_warnings(exposed, keys_configured=False)[0]
    assert security_warnings(exposed, keys_configured=True) == []
    local = StudioConfig(data_dir=tmp_path)
    assert local.api_open and security_warnings(local, keys_configured=False) == []
    assert not StudioConfig(data_dir=tmp_path, share=True).api_open
    with pytest.raises(InvalidOptions):
        StudioConfig(data_dir=tmp_path, port=0)


def test_job_workers_yield_the_cpu_to_the_server_by_default(tmp_path):
    assert scheduler_config(StudioConfig(data_dir=tmp_path)).worker_settings["priority"] == "idle"
    normal = StudioConfig(data_dir=tmp_path, worker_priority="normal")
    assert scheduler_config(normal).worker_settings["priority"] == "normal"
    with pytest.raises(InvalidOptions, match="idle"):
        StudioConfig(data_dir=tmp_path, worker_priority="urgent")


# -- logs -------------------------------------------------------------------------------


def _record(message: str, **extra) -> logging.LogRecord:
    record = logging.LogRecord("studio.jobs", logging.INFO, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    JobIdFilter().filter(record)
    return record


def test_log_lines_carry_the_job_id_in_text_and_json():
    line = TextFormatter().format(_record("running on cpu:0", job_id="abcDEF123456"))
    assert "job=abcDEF123456" in line and "\n" not in line
    data = json.loads(JsonFormatter().format(_record("done", job_id="abcDEF123456", status="x")))
    assert data["job_id"] == "abcDEF123456" and data["message"] == "done"
    assert data["level"] == "info" and data["status"] == "x"
    access = _record('127.0.0.1:5 - "GET /api/v1/jobs/Zx9_-abcdefgh12/result HTTP/1.1" 200')
    assert json.loads(JsonFormatter().format(access))["job_id"] == "Zx9_-abcdefgh12"
    assert "job=" not in TextFormatter().format(_record("server started"))


# -- upload limits ----------------------------------------------------------------------


def test_uploaded_names_never_become_paths():
    assert limits.display_name("../../etc/passwd") == "passwd"
    assert limits.display_name("C:\\Users\\me\\photo.jpg") == "photo.jpg"
    assert "/" not in limits.display_name("a/b\x00c<script>.png")
    assert limits.display_name("") == "upload"


def test_image_pixel_and_video_duration_limits(tmp_path):
    cfg = UploadLimits(max_pixels=100_000, max_video_seconds=1.5, max_file_bytes=10_000_000)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((200, 300, 3), np.uint8))
    assert limits.check_image(small, "source 1", "me.png", cfg).width == 300
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.zeros((400, 400, 3), np.uint8))
    with pytest.raises(InvalidInput, match=r"source 1 \(me.png\).*megapixels"):
        limits.check_image(big, "source 1", "me.png", cfg)
    clip = make_video(tmp_path / "clip.mp4", seconds=2.0, fps=5, size=(160, 120), audio=False)
    with pytest.raises(InvalidInput, match="the limit is 2 s"):
        limits.check_target(clip, "clip.mp4", cfg)
    ok = limits.check_target(clip, "clip.mp4", UploadLimits(max_video_seconds=10))
    assert ok.kind == "video" and ok.duration == pytest.approx(2.0, abs=0.3)
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("hello")
    with pytest.raises(InvalidInput, match="not a supported image or video"):
        limits.check_target(text_file, "notes.mp4", cfg)
    with pytest.raises(InvalidInput, match="upload limit"):
        limits.check_target(big, "big.png", UploadLimits(max_file_bytes=10))


# -- i18n and metrics -------------------------------------------------------------------


def test_translations_are_complete_and_follow_accept_language():
    assert set(EN) == set(ZH)
    assert language("zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert language("en-US,en;q=0.9") == "en" and language(None) == "en"
    assert text("zh-CN", "msg_submitted", count=2).startswith("已提交 2")


def test_metrics_exposition_names():
    metrics = StudioMetrics()
    metrics.job_started(1.5)
    metrics.job_progress("a", 12.0)
    metrics.job_finished("a", "succeeded", 4.0, 40)
    metrics.webhook("retry")
    text_ = metrics.render().decode()
    assert "fusion_job_wait_seconds_count 1.0" in text_
    assert 'fusion_job_duration_seconds_count{status="succeeded"} 1.0' in text_
    assert "fusion_job_fps_sum 10.0" in text_
    assert 'fusion_webhook_deliveries_total{outcome="retry"} 1.0' in text_
    assert "fusion_webhook_failures_total 1.0" in text_
    assert "fusion_frames_per_second 0.0" in text_


async def test_origin_guard_accepts_the_forwarded_host_of_a_proxy():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = HostAndOriginGuard(app, "0.0.0.0", check_host=False)
    transport = httpx.ASGITransport(app=guard)
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:7860") as http:
        space = {"Origin": "https://me-studio.hf.space", "X-Forwarded-Host": "me-studio.hf.space"}
        assert (await http.post("/api/v1/jobs", headers=space)).status_code == 200
        evil = {"Origin": "https://evil.example", "X-Forwarded-Host": "me-studio.hf.space"}
        assert (await http.post("/api/v1/jobs", headers=evil)).status_code == 403
        keyed = {"Origin": "https://evil.example", "Authorization": "Bearer fsk_x"}
        assert (await http.post("/api/v1/jobs", headers=keyed)).status_code == 200
