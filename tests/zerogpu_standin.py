"""ZeroGPU on a machine without one, for tests: a stand-in ``GPU`` decorator, a fake of
the platform's device API that the real ``spaces`` package talks to, and a visitor's
browser (its Gradio requests carry an ``X-IP-Token``).

``GPU`` behaves as ``spaces.GPU`` does on a ZeroGPU Space (spaces 0.51.3,
``spaces/zero/wrappers.py``):

- every call runs in a child forked from the caller (``fork`` context), never in it;
- the arguments cross to the child pickled, and so does every value it returns or
  yields (a ``PicklingError`` reaches the caller);
- the call is charged to the visitor of the Gradio request in the caller's context
  (its ``X-IP-Token`` header); each call is appended to ``$ZEROGPU_STANDIN_LOG`` as a
  JSON line (parent and child pid, duration, token, outcome) and to ``CALLS``;
- a call that runs past its ``duration`` is killed (the platform does that on
  ZeroGPU) and the caller gets ``gr.Error("GPU task aborted")``, as from spaces;
- an exception other than ``gr.Error`` reaches the caller as its class name only;
- a generator's values stream as they come; closing the caller's generator asks the
  child to stop (after its next value) and kills it if it does not;
- the GPU is visible only inside a call: decorating sets ``CUDA_VISIBLE_DEVICES=""`` in
  the caller's process, and the child gets ``CUDA_VISIBLE_DEVICES=GPU-standin-0`` (what
  spaces' ``torch.init`` sets), so work that ran outside a call would pick the CPU.

``FakeDeviceAPI`` serves the routes ``spaces/zero/api.py`` calls (``/schedule``,
``/allow``, ``/release``, ``/startup-report``) on 127.0.0.1, records them, and kills a
call's process when it runs past the duration it scheduled, as the platform would.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import inspect
import json
import multiprocessing
import os
import pickle
import secrets
import signal
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOG_ENV = "ZEROGPU_STANDIN_LOG"
STANDIN_UUID = "GPU-standin-0"
DEFAULT_DURATION = 60  # spaces/zero/client.py DEFAULT_SCHEDULE_DURATION
CALLS: list[dict[str, Any]] = []
_LOCK = threading.Lock()


def hide_gpu() -> None:
    """No GPU outside a call."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ""


def GPU(task: Any = None, *, duration: Any = None, size: str | None = None, **_: Any) -> Any:
    """``@GPU``, ``@GPU(duration=…)``; ``duration`` may be a callable of the call's arguments."""
    hide_gpu()
    if task is None or not callable(task):
        return functools.partial(_wrap, duration=duration)
    return _wrap(task, duration)


def _wrap(task: Any, duration: Any) -> Any:
    if inspect.isgeneratorfunction(task):

        @functools.wraps(task)
        def streaming(*args: Any, **kwargs: Any) -> Any:
            yield from _Call(task, args, kwargs, duration).stream()

        return streaming

    @functools.wraps(task)
    def regular(*args: Any, **kwargs: Any) -> Any:
        values = list(_Call(task, args, kwargs, duration).stream())
        return values[0] if values else None

    return regular


def _seconds(duration: Any, args: tuple, kwargs: dict) -> float:
    if callable(duration):
        duration = duration(*args, **kwargs)
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    return float(duration or DEFAULT_DURATION)


def _aborted() -> Exception:
    import gradio as gr

    return gr.Error("GPU task aborted", title="ZeroGPU worker error", print_exception=False)


def _current_token() -> str | None:
    try:
        from gradio.context import LocalContext
    except ImportError:
        return None
    request = LocalContext.request.get(None)
    return request.headers.get("x-ip-token") if request is not None else None


class _Call:
    def __init__(self, task: Any, args: tuple, kwargs: dict, duration: Any) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.seconds = _seconds(duration, args, kwargs)

    def stream(self) -> Any:
        record: dict[str, Any] = {
            "task": self.task.__name__,
            "parent": os.getpid(),
            "duration": self.seconds,
            "token": _current_token(),
        }
        payload = pickle.dumps((self.args, self.kwargs))  # unpicklable arguments fail here
        context = multiprocessing.get_context("fork")
        reader, writer = context.Pipe(duplex=False)
        stop = context.Event()
        process = context.Process(
            target=_child, args=(self.task, payload, writer, stop), daemon=True
        )
        process.start()
        writer.close()
        record["child"] = process.pid
        outcome = "ok"
        deadline = time.monotonic() + self.seconds
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    outcome = "aborted"  # past its duration: the platform ends the call
                    raise _aborted()
                if not reader.poll(min(left, 0.05)):
                    continue
                try:
                    kind, value = pickle.loads(reader.recv_bytes())
                except EOFError:
                    outcome = "died"
                    raise _aborted() from None
                if kind == "end":
                    return
                if kind == "error":
                    import gradio as gr

                    outcome = "error"
                    raise gr.Error(value, title="ZeroGPU worker error", print_exception=False)
                try:
                    yield value
                except GeneratorExit:
                    outcome = "closed"
                    stop.set()
                    _drain(reader, 10.0)
                    raise
        finally:
            if process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
            process.join(10)
            reader.close()
            record["outcome"] = outcome
            _record(record)


def _drain(reader: Any, timeout: float) -> None:
    """Read what a stopping child still sends, until it ends (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not reader.poll(0.05):
            continue
        try:
            kind, _ = pickle.loads(reader.recv_bytes())
        except EOFError:
            return
        if kind in ("end", "error"):
            return


def _child(task: Any, payload: bytes, writer: Any, stop: Any) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = STANDIN_UUID  # the GPU is attached to this call
    try:
        args, kwargs = pickle.loads(payload)
        if inspect.isgeneratorfunction(task):
            generator = task(*args, **kwargs)
            for value in generator:
                writer.send_bytes(pickle.dumps(("ok", value)))
                if stop.is_set():
                    generator.close()
                    break
        else:
            writer.send_bytes(pickle.dumps(("ok", task(*args, **kwargs))))
        writer.send_bytes(pickle.dumps(("end", None)))
    except Exception as exc:
        import gradio as gr

        # spaces passes a gr.Error on and otherwise only the exception's class name
        message = exc.message if isinstance(exc, gr.Error) else type(exc).__name__
        with contextlib.suppress(Exception):
            writer.send_bytes(pickle.dumps(("error", str(message))))
    finally:
        writer.close()


def _record(record: dict[str, Any]) -> None:
    with _LOCK:
        CALLS.append(record)
        path = os.environ.get(LOG_ENV)
        if path:
            with open(path, "a") as log:
                log.write(json.dumps(record) + "\n")


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    with contextlib.suppress(FileNotFoundError), open(path) as log:
        return [json.loads(line) for line in log if line.strip()]
    return []


def make_token(seconds: float = 3600.0, user: str = "visitor") -> str:
    """A JWT-shaped ``X-IP-Token`` (unsigned) that expires in ``seconds``."""

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    payload = {"user": user, "exp": int(time.time() + seconds)}
    return f"{part({'alg': 'none'})}.{part(payload)}.sig"


# -- the platform's device API, for the real spaces package -----------------------------


class FakeDeviceAPI:
    """``SPACES_ZERO_DEVICE_API_URL`` for tests; ``records`` lists each request."""

    def __init__(self, idle: bool = True) -> None:
        self.idle = idle
        self.records: list[dict[str, Any]] = []
        self.killed: list[int] = []
        self._grants: dict[str, dict[str, Any]] = {}  # allow token -> {duration, pid, timer}
        self._pid: int | None = None  # the process the GPU is attached to (spaces reuses it)
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                status, body = api.handle(url.path, params)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeDeviceAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            for grant in self._grants.values():
                if grant.get("timer"):
                    grant["timer"].cancel()

    def of(self, route: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.records if r["route"] == route]

    def handle(self, route: str, params: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            self.records.append({"route": route, **params, "at": time.time()})
            if route == "/startup-report":
                return 200, None
            if route == "/schedule":
                token = secrets.token_hex(8)
                duration = float(params.get("durationSeconds") or DEFAULT_DURATION)
                grant: dict[str, Any] = {"duration": duration}
                self._grants[token] = grant
                idle = self.idle and self._pid is not None
                if idle:  # spaces reuses its forked worker: the clock starts now
                    self._arm(grant, self._pid)
                return 200, {
                    "idle": idle,
                    "nvidiaIndex": 0,
                    "nvidiaUUID": "GPU-fake-0",
                    "allowToken": token,
                }
            if route == "/allow":
                grant = self._grants.get(params.get("allowToken", ""))
                if grant is None:
                    return 404, None
                self._pid = int(params["pid"])
                self._arm(grant, self._pid)
                return 200, None
            if route == "/release":
                grant = self._grants.pop(params.get("allowToken", ""), None)
                if grant is None:
                    return 404, None
                if grant.get("timer"):
                    grant["timer"].cancel()
                if params.get("fail") in ("true", "True"):
                    self._pid = None  # a failed call's worker is not reused
                return 200, None
        return 404, None

    def _arm(self, grant: dict[str, Any], pid: int | None) -> None:
        if pid is None:
            return
        if grant.get("timer"):
            grant["timer"].cancel()
        timer = threading.Timer(grant["duration"], self._kill, args=(pid,))
        timer.daemon = True
        grant["timer"] = timer
        timer.start()

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            self.killed.append(pid)


def visitor_request(token: str | None = None) -> Any:
    """A ``gr.Request`` as Gradio makes for an event, with the visitor's ``X-IP-Token``."""
    import gradio as gr
    from starlette.requests import Request

    headers = [(b"x-ip-token", token.encode())] if token else []
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    return gr.Request(Request(scope))


# -- a visitor's browser on a ZeroGPU Space (the studio tests) -------------------------


def browser(process: Any, token: str) -> Any:
    """A visitor's browser on a ZeroGPU Space: its Gradio requests carry an X-IP-Token."""
    import httpx

    headers = {"Origin": process.url, "X-IP-Token": token}
    return httpx.Client(base_url=process.url, timeout=60, headers=headers)


def submit_from_page(client: Any, source: Path, *targets: Path) -> list[str]:
    """Upload and submit through the Create tab's Gradio events; the new jobs' ids."""
    from tests.gradio_protocol import GradioPage

    page = GradioPage.open(client)
    before = {job["id"] for job in client.get("/api/v1/jobs").json()["jobs"]}
    submit = page.event_for("fs-submit", "click")
    data = [page.default_value(i) for i in submit.input_ids]
    data[0], data[1], data[3] = page.upload(source), page.upload(*targets), True
    done = page.run(submit, data)
    assert done["success"] and "✅" in str(done["output"]["data"][0]), done
    jobs = client.get("/api/v1/jobs").json()["jobs"]
    return [job["id"] for job in jobs if job["id"] not in before]


def wait_finished(client: Any, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def three_segment_media(root: Path) -> dict[str, Path]:
    """A source, a group photo, and a 21 s video at 4 fps: three segments of the default
    10 s, so three GPU calls."""
    import cv2

    from tests.assets import T1, TOM_HANKS
    from tests.media import make_video

    image = root / "group.jpg"
    cv2.imwrite(str(image), cv2.resize(cv2.imread(str(T1)), (480, 332)))
    video = make_video(root / "clip.mp4", seconds=21.0, fps=4, size=(160, 120), audio=False)
    return {"source": TOM_HANKS, "image": image, "video": Path(video)}
