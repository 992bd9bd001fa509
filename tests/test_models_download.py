"""The model downloader against a real HTTP server on 127.0.0.1 that misbehaves on request."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from engine.errors import Canceled, ModelUnavailable
from engine.models.download import download, download_file, part_path
from engine.progress import CancelToken

LOCAL = ("127.0.0.1",)


@dataclass
class Route:
    """How the test server answers one path."""

    data: bytes = b""
    status: int = 200
    fail_first: int = 0  # answer HTTP 500 to this many requests first
    cut_after: int | None = None  # send this many body bytes, then drop the connection
    cuts: int = 1  # how many requests get cut
    ignore_range: bool = False  # answer 200 with the whole file even to a Range request
    redirect: str | None = None
    stall: float = 0.0  # wait this long after the headers before the body
    length: int | None = None  # Content-Length to claim, when not len(body)


class ModelServer:
    """A threaded HTTP server with Range support and scripted failures; records requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.scripts: dict[str, list[Route]] = {}  # one route per request; the last one stays
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append((self.path, dict(self.headers)))
                    script = server.scripts.get(self.path)
                    if script:
                        route = script.pop(0) if len(script) > 1 else script[0]
                    else:
                        route = server.routes.get(self.path)
                    failing = route is not None and route.fail_first > 0
                    if failing:
                        route.fail_first -= 1
                    cut = route is not None and route.cut_after is not None and route.cuts > 0
                    if cut:
                        route.cuts -= 1
                if route is None:
                    self.send_error(404)
                    return
                if failing or route.status >= 400:
                    self.send_error(500 if failing else route.status)
                    return
                if route.redirect:
                    self.send_response(302)
                    self.send_header("Location", route.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._send_body(route, cut)

            def _send_body(self, route: Route, cut: bool) -> None:
                data = route.data
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if match and not route.ignore_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                length = route.length if route.length is not None else len(body)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if route.stall:
                    time.sleep(route.stall)
                if cut:
                    self.wfile.write(body[: route.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def requests_for(self, path: str) -> list[dict[str, str]]:
        return [headers for p, headers in self.requests if p == path]

    def __enter__(self) -> ModelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def payload(size: int = 200_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def crc(data: bytes) -> str:
    """FaceFusion's ``.hash`` content: zlib CRC32 of the whole file, 8 lower-case hex digits."""
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def closed_port_url(path: str) -> str:
    """A URL on a port that nothing listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


@pytest.fixture
def server():
    with ModelServer() as srv:
        yield srv


def fetch(urls, dest: Path, data: bytes, **kwargs) -> Path:
    kwargs.setdefault("allow_http_hosts", LOCAL)
    kwargs.setdefault("backoff", 0.0)
    kwargs.setdefault("timeout", 5.0)
    kwargs.setdefault("name", "toy_model")
    return download(urls, dest, sha(data), len(data), **kwargs)


def test_full_download_verifies_and_renames(server, tmp_path):
    data = payload()
    server.routes["/m.onnx"] = Route(data)
    dest = tmp_path / "models" / "m.onnx"
    assert fetch(server.url("/m.onnx"), dest, data) == dest
    assert dest.read_bytes() == data
    assert not part_path(dest).exists()
    [headers] = server.requests_for("/m.onnx")
    assert "Range" not in headers


def test_resume_after_cut_connection_sends_range(server, tmp_path):
    data = payload()
    server.routes["/m.onnx"] = Route(data, cut_after=70_000)
    dest = tmp_path / "m.onnx"
    fetch(server.url("/m.onnx"), dest, data, chunk_size=4096)
    first, second = server.requests_for("/m.onnx")
    assert "Range" not in first
    assert second["Range"] == "bytes=70000-"
    assert dest.read_bytes() == data


def test_partial_file_survives_a_failed_run_and_resumes_next_time(server, tmp_path):
    data = payload()
    server.scripts["/m.onnx"] = [Route(data, cut_after=50_000), Route(status=503)]
    dest = tmp_path / "m.onnx"
    with pytest.raises(ModelUnavailable, match="toy_model"):
        fetch(server.url("/m.onnx"), dest, data, attempts=1)
    assert part_path(dest).stat().st_size == 50_000
    assert not dest.exists()
    server.scripts["/m.onnx"] = [Route(data)]
    fetch(server.url("/m.onnx"), dest, data)
    assert server.requests_for("/m.onnx")[-1]["Range"] == "bytes=50000-"
    assert dest.read_bytes() == data


def test_server_that_ignores_range_restarts_cleanly(server, tmp_path):
    data = payload()
    server.routes["/m.onnx"] = Route(data, cut_after=30_000, ignore_range=True)
    dest = tmp_path / "m.onnx"
    fetch(server.url("/m.onnx"), dest, data, chunk_size=4096)
    assert server.requests_for("/m.onnx")[1]["Range"] == "bytes=30000-"
    assert dest.read_bytes() == data


def test_hash_mismatch_removes_file_and_names_both_hashes(server, tmp_path):
    data = payload()
    wrong = payload(seed=1)  # same size, other bytes
    server.routes["/m.onnx"] = Route(wrong)
    dest = tmp_path / "m.onnx"
    with pytest.raises(ModelUnavailable) as info:
        fetch(server.url("/m.onnx"), dest, data)
    message = info.value.message
    assert "toy_model" in message
    assert sha(data) in message and sha(wrong) in message
    assert not dest.exists() and not part_path(dest).exists()


def test_mismatch_after_resume_retries_once_from_scratch(server, tmp_path):
    data = payload()
    dest = tmp_path / "m.onnx"
    part_path(dest).write_bytes(payload(seed=2)[:10_000])  # stale bytes of another file
    server.routes["/m.onnx"] = Route(data)
    fetch(server.url("/m.onnx"), dest, data)
    resumed, fresh = server.requests_for("/m.onnx")
    assert resumed["Range"] == "bytes=10000-"
    assert "Range" not in fresh
    assert dest.read_bytes() == data


def test_server_down_fails_with_model_url_and_manual_path(tmp_path):
    data = payload(1000)
    url = closed_port_url("/m.onnx")
    dest = tmp_path / "models" / "m.onnx"
    with pytest.raises(ModelUnavailable) as info:
        fetch(url, dest, data, attempts=2)
    message = info.value.message
    assert "toy_model" in message
    assert url in message
    assert str(dest) in message and "m.onnx" in message
    assert "cannot connect" in message


def test_mirror_used_when_primary_is_missing(server, tmp_path):
    data = payload()
    server.routes["/mirror/m.onnx"] = Route(data)
    dest = tmp_path / "m.onnx"
    fetch([server.url("/primary/m.onnx"), server.url("/mirror/m.onnx")], dest, data)
    assert len(server.requests_for("/primary/m.onnx")) == 1  # a 404 is not retried
    assert dest.read_bytes() == data


def test_http_500_is_retried(server, tmp_path):
    data = payload()
    server.routes["/m.onnx"] = Route(data, fail_first=2)
    dest = tmp_path / "m.onnx"
    fetch(server.url("/m.onnx"), dest, data, attempts=3)
    assert len(server.requests_for("/m.onnx")) == 3
    assert dest.read_bytes() == data


def test_persistent_500_gives_up_with_status(server, tmp_path):
    data = payload(1000)
    server.routes["/m.onnx"] = Route(data, fail_first=100)
    with pytest.raises(ModelUnavailable, match="HTTP 500"):
        fetch(server.url("/m.onnx"), tmp_path / "m.onnx", data, attempts=2)
    assert len(server.requests_for("/m.onnx")) == 2


def test_progress_is_monotone_and_reaches_size(server, tmp_path):
    data = payload()
    server.routes["/m.onnx"] = Route(data)
    seen: list[tuple[int, int | None]] = []
    fetch(
        server.url("/m.onnx"),
        tmp_path / "m.onnx",
        data,
        chunk_size=8192,
        progress=lambda done, total: seen.append((done, total)),
    )
    done = [d for d, _ in seen]
    assert len(seen) > 5
    assert done == sorted(done)
    assert done[-1] == len(data)
    assert {total for _, total in seen} == {len(data)}


def test_wrong_length_is_refused_before_downloading(server, tmp_path):
    data = payload()
    server.routes["/m.onnx"] = Route(data + b"extra")
    dest = tmp_path / "m.onnx"
    with pytest.raises(ModelUnavailable, match=f"server offers {len(data) + 5} bytes"):
        fetch(server.url("/m.onnx"), dest, data)
    assert not part_path(dest).exists()


def test_plain_http_is_refused_unless_allowed(server, tmp_path):
    data = payload(1000)
    server.routes["/m.onnx"] = Route(data)
    with pytest.raises(ModelUnavailable, match="only https"):
        fetch(server.url("/m.onnx"), tmp_path / "m.onnx", data, allow_http_hosts=())
    assert server.requests == []


def test_redirects_are_followed_but_checked(server, tmp_path):
    data = payload(5000)
    server.routes["/m.onnx"] = Route(data)
    server.routes["/go"] = Route(redirect="/m.onnx")
    server.routes["/away"] = Route(redirect="http://example.com/m.onnx")
    dest = tmp_path / "m.onnx"
    fetch(server.url("/go"), dest, data)
    assert dest.read_bytes() == data
    with pytest.raises(ModelUnavailable, match="only https"):
        fetch(server.url("/away"), tmp_path / "other.onnx", data)


def test_cancel_stops_and_keeps_partial_file(server, tmp_path):
    data = payload()
    server.routes["/m.onnx"] = Route(data)
    token = CancelToken()
    dest = tmp_path / "m.onnx"

    def cancel_midway(done: int, _total: int | None) -> None:
        if done >= 40_000:
            token.cancel()

    with pytest.raises(Canceled):
        fetch(
            server.url("/m.onnx"), dest, data, chunk_size=4096, cancel=token, progress=cancel_midway
        )
    assert 40_000 <= part_path(dest).stat().st_size < len(data)
    assert not dest.exists()


def test_stalled_server_times_out_instead_of_hanging(server, tmp_path):
    data = payload(1000)
    server.routes["/m.onnx"] = Route(data, stall=3.0)
    with pytest.raises(ModelUnavailable, match="timed out"):
        fetch(server.url("/m.onnx"), tmp_path / "m.onnx", data, attempts=1, timeout=0.3)


# -- CRC32 and FaceFusion's .hash files -------------------------------------------------


def test_crc32_pin_accepts_the_file_and_records_its_sha256(server, tmp_path):
    data = payload()
    server.routes["/m.onnx"] = Route(data)
    dest = tmp_path / "m.onnx"
    done = download_file(
        server.url("/m.onnx"), dest, crc32=crc(data), name="toy_model",
        allow_http_hosts=LOCAL, backoff=0.0,
    )  # fmt: skip
    assert done.path == dest and dest.read_bytes() == data
    assert done.check == "crc32"
    assert done.digests.sha256 == sha(data) and done.digests.crc32 == crc(data)
    assert server.requests_for("/m.hash") == []  # a pinned CRC32 needs no .hash


def test_crc32_pin_refuses_a_corrupt_file(server, tmp_path):
    data = payload()
    wrong = bytearray(data)
    wrong[1234] ^= 0x40
    server.routes["/m.onnx"] = Route(bytes(wrong))
    dest = tmp_path / "m.onnx"
    with pytest.raises(ModelUnavailable) as info:
        download_file(
            server.url("/m.onnx"), dest, crc32=crc(data), name="toy_model",
            allow_http_hosts=LOCAL, backoff=0.0,
        )  # fmt: skip
    message = info.value.message
    assert f"expected crc32 {crc(data)}" in message and crc(bytes(wrong)) in message
    assert not dest.exists() and not part_path(dest).exists()


def test_without_a_pin_the_hash_file_beside_the_model_is_the_check(server, tmp_path):
    data = payload()
    server.routes["/tag/m.onnx"] = Route(data)
    server.routes["/tag/m.hash"] = Route(crc(data).encode())
    dest = tmp_path / "m.onnx"
    seen: list[tuple[int, int | None]] = []
    done = download_file(
        server.url("/tag/m.onnx"), dest, name="toy_model", allow_http_hosts=LOCAL,
        backoff=0.0, progress=lambda d, t: seen.append((d, t)),
    )  # fmt: skip
    assert done.check == "hash-file" and dest.read_bytes() == data
    assert (tmp_path / "m.hash").read_text() == crc(data)  # kept beside, FaceFusion's layout
    assert [path for path, _ in server.requests] == ["/tag/m.hash", "/tag/m.onnx"]
    # No size pinned: progress counts against the server's Content-Length.
    assert seen[-1] == (len(data), len(data))


def test_a_hash_file_that_does_not_match_is_refused(server, tmp_path):
    data = payload()
    server.routes["/m.onnx"] = Route(data)
    server.routes["/m.hash"] = Route(b"0badc0de\n")
    dest = tmp_path / "m.onnx"
    with pytest.raises(ModelUnavailable) as info:
        download_file(server.url("/m.onnx"), dest, name="toy_model", allow_http_hosts=LOCAL)
    message = info.value.message
    assert "expected crc32 0badc0de" in message and crc(data) in message
    assert server.url("/m.hash") in message
    assert not dest.exists() and not (tmp_path / "m.hash").exists()


def test_no_hash_file_means_no_download(server, tmp_path):
    """A checksum is never made up: a mirror without a .hash is skipped, the next used."""
    data = payload()
    server.routes["/a/m.onnx"] = Route(data)  # no /a/m.hash
    server.routes["/b/m.onnx"] = Route(data)
    server.routes["/b/m.hash"] = Route(b"<html>not a checksum</html>")
    dest = tmp_path / "m.onnx"
    with pytest.raises(ModelUnavailable) as info:
        download_file(
            [server.url("/a/m.onnx"), server.url("/b/m.onnx")], dest, name="toy_model",
            allow_http_hosts=LOCAL,
        )  # fmt: skip
    assert "no checksum published: HTTP 404" in info.value.message
    assert "does not hold a CRC32" in info.value.message
    assert server.requests_for("/a/m.onnx") == [] and server.requests_for("/b/m.onnx") == []
    server.routes["/b/m.hash"] = Route(crc(data).encode())
    done = download_file(
        [server.url("/a/m.onnx"), server.url("/b/m.onnx")], dest, name="toy_model",
        allow_http_hosts=LOCAL,
    )  # fmt: skip
    assert done.path.read_bytes() == data and server.requests_for("/a/m.onnx") == []


def test_unknown_size_resumes_and_verifies_a_complete_part(server, tmp_path):
    data = payload()
    server.routes["/m.onnx"] = Route(data)
    dest = tmp_path / "m.onnx"
    part_path(dest).write_bytes(data)  # finished earlier, never renamed
    done = download_file(
        server.url("/m.onnx"), dest, crc32=crc(data), name="toy_model",
        allow_http_hosts=LOCAL, backoff=0.0,
    )  # fmt: skip
    assert done.path.read_bytes() == data
    [request] = server.requests_for("/m.onnx")
    assert request["Range"] == f"bytes={len(data)}-"  # answered 416: the hash decides
