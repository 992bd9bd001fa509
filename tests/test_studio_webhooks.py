"""Webhook delivery from a live studio to a real receiver on 127.0.0.1 (allowed by the test flag)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import httpx
import pytest

from tests.assets import T1, TOM_HANKS
from tests.live_studio import StudioProcess, create_key

pytestmark = pytest.mark.timeout(240)


class Receiver:
    """An HTTP server that records every POST and answers from a per-path script."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                    )
                    codes = receiver.script.get(self.path, [])
                    code = codes.pop(0) if len(codes) > 1 else (codes[0] if codes else 200)
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", "/redirect-target")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()

    def on(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def wait(self, path: str, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = self.on(path)
            if len(hits) >= count:
                return hits
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.on(path))} of {count} deliveries arrived")


def valid_signature(secret: str, request: dict) -> bool:
    """Standard Webhooks verification, written independently of studio.webhooks."""
    headers = {k.lower(): v for k, v in request["headers"].items()}
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + request["body"]
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [part.split(",", 1)[1] for part in headers["webhook-signature"].split()]
    return any(hmac.compare_digest(expected, g) for g in given)


@pytest.fixture(scope="module")
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    data = tmp_path_factory.mktemp("hooks")
    key = create_key(data, "hooks")
    flags = [
        "--webhook-allow",
        "127.0.0.1",
        "--webhook-retry-base",
        "0.2",
        "--webhook-max-attempts",
        "4",
    ]
    process = StudioProcess(data, flags).start()
    yield process, key, data, flags
    process.stop()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "group.jpg"
    cv2.imwrite(str(path), cv2.resize(cv2.imread(str(T1)), (320, 221)))
    return path


def http_for(studio) -> httpx.Client:
    process, key, *_ = studio
    return httpx.Client(
        base_url=process.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def submit(http: httpx.Client, image, callback: str | None, **extra) -> httpx.Response:
    options = {"callback_url": callback, **extra} if callback else extra
    return http.post(
        "/api/v1/jobs",
        files=[
            ("source", ("me.png", TOM_HANKS.read_bytes())),
            ("target", ("group.jpg", image.read_bytes())),
        ],
        data={"options": json.dumps(options)},
    )


def test_delivery_is_signed_for_every_final_status(studio, receiver, image):
    with http_for(studio) as http:
        secret = http.get("/api/v1/me").json()["webhook_secret"]
        assert secret.startswith("whsec_")
        job = submit(http, image, f"{receiver.url}/hook").json()
        (delivery,) = receiver.wait("/hook", 1)
        headers = {k.lower(): v for k, v in delivery["headers"].items()}
        assert headers["webhook-id"].startswith("msg_")
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 120
        assert headers["webhook-signature"].startswith("v1,")
        assert valid_signature(secret, delivery)
        assert not valid_signature("whsec_" + base64.b64encode(b"x" * 24).decode(), delivery)
        payload = json.loads(delivery["body"])
        assert payload["type"] == "job.succeeded"
        assert payload["data"]["id"] == job["id"] and payload["data"]["status"] == "succeeded"
        assert payload["data"]["result_url"].endswith(f"/api/v1/jobs/{job['id']}/result")
        # a canceled job is reported too
        job2 = submit(http, image, f"{receiver.url}/cancel-hook", priority=-5).json()
        http.post(f"/api/v1/jobs/{job2['id']}/cancel")
        (canceled,) = receiver.wait("/cancel-hook", 1)
        assert json.loads(canceled["body"])["type"] == "job.canceled"
        assert valid_signature(secret, canceled)


def test_retries_with_backoff_after_500(studio, receiver, image):
    receiver.script["/flaky"] = [500, 500, 200]
    with http_for(studio) as http:
        secret = http.get("/api/v1/me").json()["webhook_secret"]
        job = submit(http, image, f"{receiver.url}/flaky").json()
        attempts = receiver.wait("/flaky", 3)
        ids = {r["headers"].get("webhook-id") or r["headers"].get("Webhook-Id") for r in attempts}
        assert len(ids) == 1  # one message, delivered at least once
        assert all(valid_signature(secret, r) for r in attempts)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            hooks = http.get(f"/api/v1/jobs/{job['id']}/history").json()["webhooks"]
            if hooks and hooks[0]["status"] == "delivered":
                break
            time.sleep(0.1)
        assert hooks[0]["status"] == "delivered" and hooks[0]["attempts"] == 3
        metrics = httpx.get(f"{studio[0].url}/metrics").text
        failures = [
            x for x in metrics.splitlines() if x.startswith("fusion_webhook_failures_total")
        ]
        assert float(failures[0].split()[-1]) >= 2


def test_redirects_are_not_followed(studio, receiver, image):
    receiver.script["/moved"] = [302]
    with http_for(studio) as http:
        job = submit(http, image, f"{receiver.url}/moved").json()
        receiver.wait("/moved", 4)  # every attempt answered 302, then it gives up
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            hooks = http.get(f"/api/v1/jobs/{job['id']}/history").json()["webhooks"]
            if hooks and hooks[0]["status"] == "failed":
                break
            time.sleep(0.1)
        assert hooks[0]["status"] == "failed" and hooks[0]["last_status"] == 302
        assert receiver.on("/redirect-target") == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10:8080/hook", "private"),
        ("http://[::1]:9/hook", "loopback"),
        ("http://169.254.10.1/hook", "link-local"),
        ("http://100.64.0.1/hook", "non-public"),
        ("http://[::ffff:10.0.0.1]/hook", "private"),
        ("ftp://example.com/hook", "http://"),
        ("http://user:pw@example.com/hook", "user name"),
    ],
)
def test_private_and_metadata_callbacks_are_refused_at_submit(studio, image, url, reason):
    with http_for(studio) as http:
        before = len(http.get("/api/v1/jobs").json()["jobs"])
        response = submit(http, image, url)
        assert response.status_code == 422, response.text
        assert reason in response.json()["error"]["message"]
        assert len(http.get("/api/v1/jobs").json()["jobs"]) == before


def test_outbox_survives_a_restart(tmp_path, receiver, image):
    data = tmp_path / "data"
    key = create_key(data, "restart")
    flags = ["--webhook-allow", "127.0.0.1", "--webhook-retry-base", "2"]
    receiver.script["/later"] = [503]
    with StudioProcess(data, flags) as first, http_for((first, key)) as http:
        job = submit(http, image, f"{receiver.url}/later").json()
        receiver.wait("/later", 1)
    # the first attempt failed and the retry is due in about 2 s: the server is down by then
    receiver.script["/later"] = [200]
    with StudioProcess(data, flags) as second, http_for((second, key)) as http:
        receiver.wait("/later", 2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            hooks = http.get(f"/api/v1/jobs/{job['id']}/history").json()["webhooks"]
            if hooks and hooks[0]["status"] == "delivered":
                break
            time.sleep(0.1)
        assert hooks[0]["status"] == "delivered" and hooks[0]["attempts"] >= 2
    ids = {r["headers"].get("webhook-id") for r in receiver.on("/later")}
    assert len(ids) == 1
