"""ONNX Runtime sessions: one per (model file, device), created lazily and kept warm.

A worker process owns one ``SessionCache``; sessions are not shared across
processes. Thread counts are set per session so that several CPU slots on one
machine do not each try to use every core.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from engine.devices import Device
from engine.errors import ModelUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionKey:
    path: str
    device: str
    threads: int


class SessionCache:
    """Creates and caches inference sessions; safe to use from the threads of one worker."""

    def __init__(self, device: str | Device = "cpu", intra_op_threads: int = 0) -> None:
        self.device = device if isinstance(device, Device) else Device.parse(device)
        self.intra_op_threads = intra_op_threads
        self._sessions: dict[SessionKey, ort.InferenceSession] = {}
        self._lock = threading.Lock()

    def get(self, path: str | Path) -> ort.InferenceSession:
        key = SessionKey(str(Path(path).resolve()), str(self.device), self.intra_op_threads)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = self._create(Path(path))
                self._sessions[key] = session
            return session

    def _create(self, path: Path) -> ort.InferenceSession:
        if not path.is_file():
            raise ModelUnavailable(f"model file {path} does not exist")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.intra_op_threads:
            options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = 1
        providers = self.device.providers(ort.get_available_providers())
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            if self.device.kind == "cuda":
                log.warning("CUDA session for %s failed (%s); falling back to CPU", path.name, exc)
                try:
                    session = ort.InferenceSession(
                        str(path), sess_options=options, providers=["CPUExecutionProvider"]
                    )
                except Exception as cpu_exc:
                    raise ModelUnavailable(f"cannot load model {path.name}: {cpu_exc}") from cpu_exc
            else:
                raise ModelUnavailable(f"cannot load model {path.name}: {exc}") from exc
        if self.device.kind == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
            log.warning("model %s runs on CPU: CUDA is not usable on this machine", path.name)
        return session

    def drop(self, path: str | Path) -> None:
        """Forget the sessions of one model file (its memory is freed once no job holds it)."""
        resolved = str(Path(path).resolve())
        with self._lock:
            for key in [key for key in self._sessions if key.path == resolved]:
                del self._sessions[key]

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()
