"""The models directory: what is installed, whether it is the pinned file, and downloads.

Policy for a file that fails its check: ``require`` never deletes anything. The
downloader only renames a file into place after its SHA-256 matched, so a bad file
under a model's final name was put there (or changed) by someone else, possibly the
user; ``require`` rejects it with an error naming the file, the expected and actual
hashes and the fix. ``download`` replaces such a file, since the user asked for a
fresh copy. A bad ``.part`` (our own unfinished download) is deleted by the downloader.

A verified file gets a sidecar ``<file>.verified`` holding its size, mtime_ns and
SHA-256, so a 500 MB model is hashed once, not at every start. The verdict is trusted
only while size and mtime_ns still match.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelUnavailable
from engine.models.download import (
    download,
    manual_instructions,
    part_path,
    sha256_file,
)
from engine.models.registry import REGISTRY, ModelSpec, mtcnn_files
from engine.progress import CancelToken, Progress, ProgressCallback

MODELS_DIR_ENV = "FUSION_MODELS_DIR"
SIDECAR_SUFFIX = ".verified"
PROGRESS_INTERVAL = 0.1


def default_models_dir(data_dir: Path | str) -> Path:
    """``$FUSION_MODELS_DIR`` if set, else ``<data_dir>/models``."""
    configured = os.environ.get(MODELS_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(data_dir) / "models"


@dataclass(frozen=True)
class ModelStatus:
    """What the models panel and ``models list`` show for one model (cheap: no hashing)."""

    name: str
    kind: str
    installed: bool
    path: Path | None
    size: int
    license: str
    embedded: bool
    verified: bool
    description: str = ""
    partial_bytes: int = 0
    problem: str | None = None

    @property
    def state(self) -> str:
        """``embedded``, ``installed``, ``invalid``, ``partial`` or ``missing``."""
        if self.embedded:
            return "embedded" if self.installed else "missing"
        if self.installed:
            return "installed"
        if self.problem:
            return "invalid"
        return "partial" if self.partial_bytes else "missing"


class ModelManager:
    """Installed state and downloads for one models directory.

    ``registry`` may be replaced (tests use stand-in files with their own real hashes).
    Download settings (``timeout``, ``attempts``, ``backoff``, ``allow_http_hosts``) are
    passed to :func:`engine.models.download.download`.
    """

    def __init__(
        self,
        models_dir: Path | str,
        registry: Mapping[str, ModelSpec] = REGISTRY,
        *,
        timeout: float = 30.0,
        attempts: int = 3,
        backoff: float = 0.5,
        allow_http_hosts: Sequence[str] = (),
    ) -> None:
        self.models_dir = Path(models_dir)
        self.registry: dict[str, ModelSpec] = dict(registry)
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.allow_http_hosts = tuple(allow_http_hosts)
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()

    # -- lookup -----------------------------------------------------------------------

    def spec(self, name: str) -> ModelSpec:
        """The registry entry; an unknown name is an error that lists the known ones."""
        try:
            return self.registry[name]
        except KeyError:
            known = ", ".join(sorted(self.registry))
            raise ModelUnavailable(f"unknown model '{name}'; known models: {known}") from None

    def file_path(self, name: str) -> Path:
        """Where a downloadable model lives (whether or not it is there)."""
        spec = self.spec(name)
        if spec.embedded:
            raise ModelUnavailable(f"model {name} is built in and has no file in the models dir")
        return self.models_dir / spec.filename

    def _lock(self, name: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.RLock())

    # -- state --------------------------------------------------------------------------

    def status(self, name: str) -> ModelStatus:
        spec = self.spec(name)
        if spec.embedded:
            return self._embedded_status(spec)
        file = self.models_dir / spec.filename
        partial = _size_or_zero(part_path(file))
        try:
            stat = file.stat()
        except FileNotFoundError:
            return self._status(spec, False, None, spec.size, False, partial, None)
        problem = _size_problem(spec, file, stat.st_size)
        cached = _read_sidecar(file, stat)
        if problem is None and cached is not None and cached != spec.sha256:
            problem = f"{file} failed its checksum (sha256 {cached}, expected {spec.sha256})"
        installed = problem is None
        verified = installed and cached == spec.sha256
        return self._status(spec, installed, file, stat.st_size, verified, partial, problem)

    @staticmethod
    def _status(
        spec: ModelSpec,
        installed: bool,
        path: Path | None,
        size: int,
        verified: bool,
        partial: int,
        problem: str | None,
    ) -> ModelStatus:
        return ModelStatus(
            name=spec.name,
            kind=spec.kind,
            installed=installed,
            path=path,
            size=size,
            license=spec.license,
            embedded=False,
            verified=verified,
            description=spec.description,
            partial_bytes=partial,
            problem=problem,
        )

    def _embedded_status(self, spec: ModelSpec) -> ModelStatus:
        path: Path | None = None
        size = 0
        problem = None
        if spec.name == "mtcnn":
            try:
                files = mtcnn_files()
            except ModelUnavailable as exc:
                problem = exc.message
            else:
                path = files["pnet"].parent
                size = sum(f.stat().st_size for f in files.values())
        return ModelStatus(
            name=spec.name,
            kind=spec.kind,
            installed=problem is None,
            path=path,
            size=size,
            license=spec.license,
            embedded=True,
            verified=problem is None,
            description=spec.description,
            problem=problem,
        )

    def is_installed(self, name: str) -> bool:
        """Present with the pinned size and not known to be corrupt (no hashing here)."""
        return self.status(name).installed

    def path(self, name: str) -> Path | None:
        """The installed file (embedded mtcnn: the folder of its nets), else None."""
        status = self.status(name)
        return status.path if status.installed else None

    def best(self, kind: str, preferences: Sequence[str]) -> str | None:
        """The first of ``preferences`` that is a ``kind`` model and installed."""
        for name in preferences:
            spec = self.registry.get(name)
            if spec is not None and spec.kind == kind and self.is_installed(name):
                return name
        return None

    # -- require / verify ---------------------------------------------------------------

    def check_present(self, name: str) -> None:
        """``ModelUnavailable`` (the same messages as ``require``) unless ``name`` is
        installed by the cheap test of ``is_installed``: the pinned size, and no cached
        verdict against it. Nothing is hashed; ``require`` verifies when the file loads."""
        spec = self.spec(name)
        status = self.status(name)
        if status.installed:
            return
        if spec.embedded:
            raise ModelUnavailable(status.problem or f"model {name} is not available")
        file = self.models_dir / spec.filename
        if status.problem is None:
            raise ModelUnavailable(self._missing_message(spec, file))
        raise ModelUnavailable(f"{status.problem}. {self._fix(spec, file)}")

    def require(self, name: str, cancel: CancelToken | None = None) -> Path:
        """The verified file of ``name``, or ``ModelUnavailable`` saying how to get it."""
        spec = self.spec(name)
        if spec.embedded:
            if spec.name == "mtcnn":
                return mtcnn_files()["pnet"].parent
            raise ModelUnavailable(f"model {name} is built in and has no file to load")
        file = self.models_dir / spec.filename
        with self._lock(name):
            try:
                stat = file.stat()
            except FileNotFoundError:
                raise ModelUnavailable(self._missing_message(spec, file)) from None
            problem = _size_problem(spec, file, stat.st_size)
            if problem:
                raise ModelUnavailable(f"{problem}. {self._fix(spec, file)}")
            actual = _read_sidecar(file, stat)
            if actual is None:
                actual = sha256_file(file, cancel)
                _write_sidecar(file, stat, actual)
            if actual != spec.sha256:
                raise ModelUnavailable(
                    f"model file {file} failed its checksum: expected sha256 {spec.sha256}, "
                    f"got {actual}; it is not the {name} file this program pins (the file "
                    f"was left in place). {self._fix(spec, file)}"
                )
            return file

    def _missing_message(self, spec: ModelSpec, file: Path) -> str:
        partial = _size_or_zero(part_path(file))
        waiting = (
            f" (a partial download of {partial} of {spec.size} bytes is waiting to resume)"
            if partial
            else ""
        )
        return (
            f"model {spec.name} is not installed{waiting}: run "
            f"`python app.py models download {spec.name}`, or by hand: "
            f"{manual_instructions(spec.urls, file)}; licence: {spec.license}"
        )

    @staticmethod
    def _fix(spec: ModelSpec, file: Path) -> str:
        return (
            f"Delete it and run `python app.py models download {spec.name}` (which replaces "
            f"it), or by hand: {manual_instructions(spec.urls, file)}"
        )

    # -- download -----------------------------------------------------------------------

    def download(
        self,
        name: str,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Path:
        """Install ``name`` (no-op when already verified); reports bytes as ``Progress``.

        Threads asking for the same model wait for one download; other processes are
        kept apart by the downloader's file lock.
        """
        spec = self.spec(name)
        if spec.embedded:
            return self.require(name)
        file = self.models_dir / spec.filename
        report = _ByteReporter(name, progress)
        with self._lock(name):
            with contextlib.suppress(ModelUnavailable):
                if self.status(name).installed:
                    path = self.require(name, cancel)
                    report(spec.size, spec.size)
                    return path
            download(
                spec,
                file,
                progress=report,
                cancel=cancel,
                timeout=self.timeout,
                attempts=self.attempts,
                backoff=self.backoff,
                allow_http_hosts=self.allow_http_hosts,
            )
            _write_sidecar(file, file.stat(), spec.sha256)
            report.finish()
            return file

    def list(self) -> builtins.list[ModelStatus]:
        """Every known model's status, in registry order."""
        return [self.status(name) for name in self.registry]


class _ByteReporter:
    """Turns the downloader's (done, total) bytes into throttled ``Progress`` reports."""

    def __init__(self, name: str, progress: ProgressCallback | None) -> None:
        self.name = name
        self.progress = progress
        self.start: float | None = None
        self.start_bytes = 0
        self.last_sent = 0.0
        self.last: tuple[int, int | None] | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if self.start is None:
            self.start, self.start_bytes = now, done
        self.last = (done, total)
        if done != total and now - self.last_sent < PROGRESS_INTERVAL:
            return
        self.last_sent = now
        self._send(done, total, now)

    def finish(self) -> None:
        if self.progress is not None and self.last is not None:
            self._send(*self.last, time.monotonic())

    def _send(self, done: int, total: int | None, now: float) -> None:
        assert self.progress is not None
        elapsed = now - (self.start or now)
        rate = (done - self.start_bytes) / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 and total is not None else None
        message = f"{self.name}: {done / 1e6:.1f} of " + (
            f"{total / 1e6:.1f} MB" if total is not None else "? MB"
        )
        if rate > 0:
            message += f" at {rate / 1e6:.1f} MB/s"
        self.progress(
            Progress(
                stage="download",
                done=done,
                total=total,
                eta_seconds=eta,
                message=message,
            )
        )


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _size_problem(spec: ModelSpec, file: Path, size: int) -> str | None:
    if size == spec.size:
        return None
    return (
        f"model file {file} is {size} bytes but {spec.name} is {spec.size} bytes "
        f"(incomplete, or not the file this program pins)"
    )


def _sidecar(file: Path) -> Path:
    return file.with_name(file.name + SIDECAR_SUFFIX)


def _read_sidecar(file: Path, stat: os.stat_result) -> str | None:
    """The cached SHA-256 of ``file``, if the sidecar still describes this exact file."""
    try:
        record = json.loads(_sidecar(file).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("size") != stat.st_size or record.get("mtime_ns") != stat.st_mtime_ns:
        return None
    sha = record.get("sha256")
    return sha if isinstance(sha, str) else None


def _write_sidecar(file: Path, stat: os.stat_result, sha256: str) -> None:
    """Record a verdict atomically; a read-only models dir just means hashing again."""
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
    target = _sidecar(file)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(record))
        os.replace(tmp, target)
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


__all__ = [
    "MODELS_DIR_ENV",
    "ModelManager",
    "ModelStatus",
    "default_models_dir",
]
