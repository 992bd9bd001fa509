"""Files reach a Gradio event only through an upload of the same browser.

Gradio mounted into another app (``gr.mount_gradio_app``) skips its own check
that a ``FileData`` path in an event's input was uploaded by a client: a crafted
``POST /gradio_api/queue/join`` could name ``/etc/passwd``, ``/dev/zero`` or
another person's job input. Gradio offers no supported switch to restore that
check for a mounted app, and its check would not be enough anyway (it accepts
any file in the shared cache, whoever uploaded it). So this ASGI middleware
sits in front of every Gradio route and keeps, per owner, the files Gradio
stored for that owner:

* ``POST /gradio_api/upload``: the paths Gradio answers with are recorded as
  the caller's uploads;
* event outputs (``/gradio_api/queue/data`` and the other event routes): every
  file Gradio put into its cache for the caller (face crops, say) is recorded
  as the caller's, so only the caller can fetch it back;
* event inputs: every value that Gradio would treat as a file (a dict with a
  string ``path``) must be one of the caller's recorded files, a regular file
  (never a device, FIFO, directory or symlink) inside the cache and within the
  upload limit; anything else is refused with our error object before Gradio
  reads a byte;
* ``GET /gradio_api/file=…``: served only to the file's owner.

A new event therefore cannot forget the check: it happens before Gradio sees
the request, for every event. Gradio routes the studio does not use (proxies,
streams, recordings, run history, dev tools) are closed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request

from studio.http_guard import send_error

API = "/gradio_api"
UPLOAD_ROUTE = f"{API}/upload"
FILE_ROUTES = (f"{API}/file=", f"{API}/file/")
# Routes whose JSON body carries event inputs (and may name files).
EVENT_INPUT_ROUTES = (
    f"{API}/queue/join",
    f"{API}/run/",
    f"{API}/api/",
    f"{API}/call/",
    f"{API}/stream/",
)
# Routes whose responses carry event outputs (and may name cached files).
EVENT_OUTPUT_ROUTES = (f"{API}/queue/data", f"{API}/call/", f"{API}/run/", f"{API}/api/")
# Gradio features the studio does not use: closed, so they cannot read or fetch anything.
CLOSED_ROUTES = (
    f"{API}/proxy=",
    f"{API}/stream/",
    f"{API}/process_recording",
    f"{API}/run-history",
    f"{API}/runs",
    f"{API}/dev/",
    f"{API}/vibe-",
    f"{API}/undo-vibe-edit",
    f"{API}/mcp",
    "/gradio_api/mcp",
    "/monitoring",
    "/runs",
    "/vibe-",
    "/undo-vibe-edit",
)
MAX_EVENT_BODY = 4 * 1024 * 1024
MAX_WALK_DEPTH = 64
MAX_RECORDED = 100_000
SPOOL_FILE_AGE = 120.0  # seconds without a write before a top-level spool file is swept

OwnerOf = Callable[[Request], str | None]


class RefusedFile(Exception):
    """A file value in an event's input that was not the caller's upload."""


@dataclass(frozen=True)
class CachedFile:
    owner: str
    kind: str  # "upload" | "output"
    at: float
    size: int


class CacheRegistry:
    """Which owner each file in Gradio's cache belongs to, and when it came.

    In memory: the cache is emptied whenever the server starts, so nothing in it
    outlives the registry. Thread-safe, since Gradio runs sync events in threads.
    """

    def __init__(self, cache_dir: Path, max_age_seconds: float, max_bytes: int) -> None:
        self.cache_dir = Path(os.path.abspath(cache_dir))
        self.max_age = max_age_seconds
        self.max_bytes = max_bytes  # all owners together: strangers cannot fill the disk
        self._files: dict[str, CachedFile] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Empty the cache: files of a previous run have no owner any more."""
        with self._lock:
            self._files.clear()
        if self.cache_dir.is_dir():
            for child in self.cache_dir.iterdir():
                _remove(child)
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def record(self, owner: str, path: str, kind: str) -> None:
        key = self.key(path)
        if key is None:
            return
        with self._lock:
            known = self._files.get(key)
            if known is not None and known.owner != owner:
                # The same bytes uploaded by two browsers land on one path (Gradio names
                # uploads by their hash); whoever uploaded them may use them.
                kind = known.kind
            try:
                size = os.lstat(key).st_size
            except OSError:
                size = 0
            self._files[key] = CachedFile(owner, kind, time.time(), size)
            if len(self._files) > MAX_RECORDED:
                oldest = min(self._files, key=lambda k: self._files[k].at)
                self._files.pop(oldest)

    def has_room(self, incoming: int) -> bool:
        with self._lock:
            used = sum(entry.size for entry in self._files.values())
        return used + incoming <= self.max_bytes

    def owns(self, owner: str | None, path: str) -> bool:
        key = self.key(path)
        if owner is None or key is None:
            return False
        with self._lock:
            entry = self._files.get(key)
        return entry is not None and entry.owner == owner

    def key(self, path: str) -> str | None:
        """The normalised absolute path, or None when it is not inside the cache."""
        if not isinstance(path, str) or not path or "\x00" in path:
            return None
        absolute = os.path.abspath(path)
        if not absolute.startswith(str(self.cache_dir) + os.sep):
            return None
        return absolute

    def release(self, owner: str, paths: list[str] | None = None) -> int:
        """Delete files of an owner: the given ones, or all of them."""
        with self._lock:
            if paths is None:
                keys = [k for k, v in self._files.items() if v.owner == owner]
            else:
                keys = [k for k in map(self.key, paths) if k and self._owned(k, owner)]
            for key in keys:
                self._files.pop(key, None)
        for key in keys:
            self._delete(key)
        return len(keys)

    def outputs_of(self, owner: str) -> list[str]:
        with self._lock:
            return [k for k, v in self._files.items() if v.owner == owner and v.kind == "output"]

    def expire(self, now: float | None = None) -> int:
        """Delete every file older than the maximum age (the cache's schedule), and the
        spool files Gradio leaves at the cache's top level for parts it did not keep."""
        now = now or time.time()
        horizon = now - self.max_age
        with self._lock:
            keys = [k for k, v in self._files.items() if v.at < horizon]
            for key in keys:
                self._files.pop(key, None)
        for key in keys:
            self._delete(key)
        return len(keys) + self._sweep_spool_files(now - SPOOL_FILE_AGE)

    def _sweep_spool_files(self, written_before: float) -> int:
        """Top-level files are Gradio's spool files: an upload in progress writes its own
        continuously, so one untouched for a while was abandoned (a rejected part)."""
        removed = 0
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.cache_dir):
                if entry.is_file(follow_symlinks=False) and (
                    entry.stat(follow_symlinks=False).st_mtime < written_before
                ):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def _owned(self, key: str, owner: str) -> bool:
        entry = self._files.get(key)
        return entry is not None and entry.owner == owner

    def _delete(self, key: str) -> None:
        path = Path(key)
        with contextlib.suppress(OSError):
            path.unlink()
        # Gradio keeps each file in a folder named by its hash; drop the folder with it.
        parent = path.parent
        if parent != self.cache_dir and self.cache_dir in parent.parents:
            with contextlib.suppress(OSError):
                parent.rmdir()


def check_input_file(registry: CacheRegistry, owner: str | None, path: Any, max_bytes: int):
    """Accept one file value of an event input, or raise ``RefusedFile``. Reads nothing."""
    if not isinstance(path, str) or not registry.owns(owner, path):
        raise RefusedFile("this file was not uploaded in this browser session; upload it again")
    try:
        info = os.lstat(path)
    except OSError:
        raise RefusedFile("this upload has expired; upload the file again") from None
    if not stat.S_ISREG(info.st_mode):
        raise RefusedFile("only regular uploaded files are accepted")
    if info.st_size > max_bytes:
        raise RefusedFile(f"the file is larger than the upload limit of {max_bytes / 1e6:.0f} MB")
    real = os.path.realpath(path)
    if not real.startswith(str(registry.cache_dir) + os.sep):
        raise RefusedFile("only regular uploaded files are accepted")


def file_values(value: Any, depth: int = 0) -> Iterator[dict]:
    """Every dict Gradio would treat as a file (a string ``path``), however deep."""
    if depth > MAX_WALK_DEPTH:
        raise RefusedFile("the event data is nested too deeply")
    if isinstance(value, dict):
        if "path" in value and value.get("path") is not None:
            yield value
        for item in value.values():
            yield from file_values(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from file_values(item, depth + 1)


def output_paths(value: Any) -> Iterator[str]:
    """Cached files named in an event's output (a ``path`` served under ``/file=``)."""
    for item in file_values(value):
        path, url = item.get("path"), item.get("url")
        if isinstance(path, str) and isinstance(url, str) and "/file=" in url:
            yield path


Send = Callable[[dict], Awaitable[None]]


class GradioFileGuard:
    """ASGI middleware enforcing the rules in this module's docstring on Gradio's routes."""

    def __init__(
        self,
        app,
        registry: CacheRegistry,
        owner_of: OwnerOf,
        max_file_bytes: int,
        max_upload_bytes: int,
    ) -> None:
        self.app = app
        self.registry = registry
        self.owner_of = owner_of
        self.max_file_bytes = max_file_bytes
        self.max_upload_bytes = max_upload_bytes  # one upload request, all its files

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(CLOSED_ROUTES):
            await send_error(send, 404, "not_found", "this endpoint is not available")
            return
        if path.startswith(FILE_ROUTES):
            await self._serve_file(scope, receive, send, path)
            return
        takes_inputs = method == "POST" and path.startswith(EVENT_INPUT_ROUTES)
        gives_outputs = path.startswith(EVENT_OUTPUT_ROUTES)
        if not (takes_inputs or gives_outputs or path == UPLOAD_ROUTE):
            await self.app(scope, receive, send)  # pages, assets, config: no files involved
            return
        owner = self.owner_of(Request(scope))
        if path == UPLOAD_ROUTE and method == "POST":
            await self._upload(scope, receive, send, owner)
            return
        if takes_inputs:
            body = await _read_body(receive, MAX_EVENT_BODY)
            if body is None:
                await send_error(send, 413, "too_large", "the event data is too large")
                return
            problem = self._check_inputs(body, owner)
            if problem is not None:
                await send_error(send, 422, *problem)
                return
            receive = _replay(body, receive)
        if gives_outputs and owner is not None:
            send = self._recording_outputs(send, owner)
        await self.app(scope, receive, send)

    def _check_inputs(self, body: bytes, owner: str | None) -> tuple[str, str] | None:
        """None when every file in the event's data is the caller's; else (code, message)."""
        try:
            data = json.loads(body) if body else None
        except (ValueError, RecursionError):
            # What this check cannot read is not passed on for Gradio to read otherwise.
            return "invalid_input", "the event data is not valid JSON"
        try:
            for item in file_values(data):
                check_input_file(self.registry, owner, item.get("path"), self.max_file_bytes)
        except RefusedFile as exc:
            return "file_refused", f"file refused: {exc}"
        return None

    async def _serve_file(self, scope, receive, send, path: str) -> None:
        prefix = next(p for p in FILE_ROUTES if path.startswith(p))
        wanted = unquote(path[len(prefix) :])
        owner = self.owner_of(Request(scope))
        if not self.registry.owns(owner, wanted):
            await send_error(send, 404, "not_found", "no such file")
            return
        await self.app(scope, receive, send)

    async def _upload(self, scope, receive, send, owner: str | None) -> None:
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_upload_bytes:
            limit = self.max_upload_bytes / 1e6
            await send_error(send, 413, "too_large", f"one upload may carry {limit:.0f} MB")
            return
        if not self.registry.has_room(int(declared) if declared.isdigit() else 0):
            await send_error(
                send, 429, "cache_full", "the server has no room for uploads now; try again later"
            )
            return
        receive = _bounded(receive, self.max_upload_bytes)
        captured = _Captured()
        held: list[dict] = []  # a server error's messages, until we know its cause

        async def capture(message: dict) -> None:
            captured.feed(message)
            if captured.status >= 500:
                held.append(message)
            else:
                await send(message)

        try:
            await self.app(scope, receive, capture)
        except TypeError:
            # Gradio's upload raises TypeError for a part that is not a file (a text field):
            # the client's mistake, not the server's. Its 500 answer was held back.
            if captured.status not in (0, 500):
                raise
            await send_error(send, 422, "invalid_input", "an upload carries files only")
            return
        except BaseException:
            await _send_all(send, held)
            raise
        await _send_all(send, held)
        if owner is None or captured.status != 200:
            return
        try:
            paths = json.loads(captured.body)
        except ValueError:
            return
        for item in paths if isinstance(paths, list) else []:
            self.registry.record(owner, item, "upload")

    def _recording_outputs(self, send: Send, owner: str) -> Send:
        scanner = _OutputScanner(lambda p: self.registry.record(owner, p, "output"))

        async def recording(message: dict) -> None:
            scanner.feed(message)
            await send(message)

        return recording


class _Captured:
    def __init__(self) -> None:
        self.status = 0
        self.body = b""

    def feed(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body" and len(self.body) < MAX_EVENT_BODY:
            self.body += message.get("body", b"")


class _OutputScanner:
    """Reads an event response (JSON or Server-Sent Events) for the cached files it names.

    Recording happens before the message is passed on, so a file is the caller's
    before the browser can ask for it."""

    def __init__(self, record: Callable[[str], None]) -> None:
        self.record = record
        self.streaming = False
        self.pending = b""

    def feed(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers") or [])
            self.streaming = b"text/event-stream" in headers.get(b"content-type", b"")
            return
        if message["type"] != "http.response.body":
            return
        self.pending += message.get("body", b"")
        if self.streaming:
            *lines, self.pending = self.pending.split(b"\n")
            for line in lines:
                if line.startswith(b"data:"):
                    self._scan(line[5:])
        elif not message.get("more_body", False):
            self._scan(self.pending)
            self.pending = b""
        if len(self.pending) > MAX_EVENT_BODY:
            self.pending = b""

    def _scan(self, raw: bytes) -> None:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return
        with contextlib.suppress(RefusedFile):
            for path in output_paths(data):
                self.record(path)


async def _read_body(receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_all(send: Send, messages: list[dict]) -> None:
    for message in messages:
        await send(message)


def _bounded(receive, limit: int):
    """The client's messages until the body passes ``limit``; then a disconnect, which
    ends the upload (a body without Content-Length cannot grow without bound)."""
    received = 0

    async def bounded() -> dict:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                return {"type": "http.disconnect"}
        return message

    return bounded


def _replay(body: bytes, receive):
    """The body already read, then the client's own messages (its disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
