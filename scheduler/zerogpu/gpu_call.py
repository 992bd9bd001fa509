"""What runs inside one GPU call, in the child ``spaces`` forks for it.

Kept free of the executor: everything in and out is plain picklable data, and
CUDA is touched only here, never in the server process.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.errors import Canceled
from engine.progress import JobProgress, Progress
from scheduler.progress_gate import ProgressGate
from scheduler.retry import error_from_exception

log = logging.getLogger("scheduler.zerogpu")

HEARTBEAT_SECONDS = 0.5  # a call yields at least this often, so a stop is seen at once
SAFETY = 1.5  # a segment is started only if 1.5 times its expected time still fits

_STATE: dict[str, Any] = {}  # warm engines of the process that runs calls (spaces reuses it)
_PRELOADED = False


def call_device(requested: str) -> str:
    """The device for work inside a call: ``requested``, unless this process was told
    that no GPU is attached (``CUDA_VISIBLE_DEVICES`` empty or ``-1``)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if requested.startswith("cuda") and visible is not None and visible.strip() in ("", "-1"):
        return "cpu"
    return requested


def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from pip's ``nvidia-*`` packages, if installed (no CUDA init)."""
    global _PRELOADED
    if _PRELOADED:
        return
    _PRELOADED = True
    import importlib.util

    if importlib.util.find_spec("nvidia") is None:
        return
    try:
        import onnxruntime

        preload = getattr(onnxruntime, "preload_dlls", None)
        if callable(preload):
            preload()
    except Exception as exc:  # the CUDA provider then reports what is missing
        log.warning("could not preload the CUDA libraries: %s", exc)


def gpu_step(call: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One GPU call: runs the work ``call`` describes, yielding plain dicts.

    Everything in and out is picklable: ``spaces`` pickles the arguments and each
    yielded value across the process boundary. Errors never escape (``spaces``
    would pass on only their class name): they are yielded as ``{"type": "error"}``.
    Closing the generator cancels the work (``spaces`` closes it when the caller
    stops reading), and it yields at least every ``HEARTBEAT_SECONDS`` so that a
    stop is noticed at once.
    """
    from engine.progress import CancelToken

    started = time.monotonic()
    device = call_device(call["device"])
    if os.getpid() != call["server_pid"]:  # a child of the server, as on ZeroGPU
        from scheduler.cpu import lower_priority

        lower_priority(str(call["settings"].get("priority", "normal")))
    if device.startswith("cuda"):
        _preload_cuda_libraries()
    items: queue.Queue = queue.Queue()
    token = CancelToken()

    def work() -> None:
        try:
            if call["mode"] == "segments":
                end = _run_segments(call, device, items.put, token, started)
            else:
                end = _run_whole(call, device, items.put, token)
        except Canceled:
            end = {"type": "canceled"}
        except Exception as exc:
            if token.canceled:
                end = {"type": "canceled"}
            else:
                error = error_from_exception(exc)
                end = {
                    "type": "error",
                    "code": error.code,
                    "message": error.message,
                    "permanent": error.permanent,
                }
        items.put(end)

    thread = threading.Thread(target=work, name="zerogpu-work", daemon=True)
    thread.start()
    try:
        yield {
            "type": "started",
            "pid": os.getpid(),
            "device": device,
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        while True:
            try:
                item = items.get(timeout=HEARTBEAT_SECONDS)
            except queue.Empty:
                yield {"type": "heartbeat"}
                continue
            yield item
            if item["type"] in ("done", "paused", "error", "canceled"):
                return
    finally:
        if thread.is_alive():
            token.cancel()
            thread.join(30.0)


def _context(call: dict[str, Any], device: str, progress: Callable, token: Any):
    from scheduler.jobs import JobSpec
    from scheduler.tasks import TaskContext

    attempt = call["attempt"]
    job_dir = Path(attempt["job_dir"])
    values = {
        "job_id": attempt["job_id"],
        "run": attempt["run"],
        "attempt": attempt["attempt"],
        "device": device,
        "spec": JobSpec.from_dict(attempt["spec"]),
        "job_dir": job_dir,
        "output": Path(attempt["output"]),
        "workdir": job_dir / "work",
        "settings": dict(call["settings"]),
        "state": _STATE,
        "progress": progress,
        "cancel": token,
    }
    return TaskContext(**values)


class _Reporter:
    """The progress callback inside a call: throttled, with an occasional JPEG preview."""

    def __init__(self, call: dict[str, Any], put: Callable, segment: int | None = None) -> None:
        self.put = put
        self.segment = segment
        self.gate = ProgressGate(call["progress_interval"], call["preview_interval"])

    def __call__(self, report: Progress) -> None:
        send, preview = self.gate.admit(report)
        if send:
            self.put(
                {
                    "type": "progress",
                    "segment": self.segment,
                    "progress": JobProgress.of(report).to_dict(),
                    "done": report.done,  # frames, for a video's progress over its calls
                    "total": report.total,
                    "preview": preview,
                }
            )


def _run_whole(call: dict[str, Any], device: str, put: Callable, token: Any) -> dict[str, Any]:
    """The whole attempt in this call: an image, a short video, any other task kind."""
    from scheduler.tasks import get_task

    ctx = _context(call, device, _Reporter(call, put), token)
    kind = get_task(call["attempt"]["kind"], call.get("task_modules", ()))
    result = kind.fn(ctx) or {}
    return {"type": "done", "result": dict(result), "output_bytes": _synced_size(ctx.output)}


def _run_segments(
    call: dict[str, Any], device: str, put: Callable, token: Any, started: float
) -> dict[str, Any]:
    """Encode the call's segments in order while the next one still fits in the call."""
    from scheduler.video_split import run_segment, run_stage

    workdir = Path(call["workdir"])
    per_frame = call.get("seconds_per_frame")
    limit = call.get("segments_per_call")
    for done, segment in enumerate(call["segments"]):
        frames = int(segment["end_frame"]) - int(segment["start_frame"])
        if done and limit and done >= limit:
            return {"type": "paused"}
        if done and per_frame is not None:
            expected = per_frame * frames * SAFETY
            if time.monotonic() - started + expected + call["margin"] > call["duration"]:
                return {"type": "paused"}
        began = time.monotonic()
        ctx = _context(call, device, _Reporter(call, put, int(segment["index"])), token)
        if int(segment["index"]) == 0:  # the whole-video stage: segments run in order here
            run_stage(ctx)
        result = run_segment(ctx, segment, workdir)
        seconds = time.monotonic() - began
        per_frame = seconds / max(1, frames)
        put({"type": "segment", "result": result, "frames": frames, "seconds": seconds})
    return {"type": "done", "result": {}, "output_bytes": None}


def _synced_size(path: Path) -> int | None:
    """The output's size after an fsync (the dispatcher then need not), or None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        os.fsync(fd)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)
