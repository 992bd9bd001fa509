"""The models directory: what is installed, whether it is the catalogue's file, and downloads.

The catalogue is the built-in registry plus the user's ``<models dir>/catalogue.json``
(``engine.models.user_catalogue``; its warnings are kept in ``warnings`` and logged
once). An operator's licence filter (``licences``) hides the models of other licence
classes, and the models that need one (a GHOST swapper needs the non-commercial
ArcFace recognizer), from ``list``, ``spec`` and ``best``.

Checks: a model's file must match the catalogue's SHA-256 if it pins one, else its
CRC32, else (``hash-file``) the CRC32 in FaceFusion's ``X.hash`` beside ``X.onnx``,
which the downloader fetches from the same host and saves there. A ``hash-file``
model installed by hand without its ``.hash`` has no published checksum to compare
with: it is usable, shown as ``installed (unchecked)`` with a warning, and
``download`` fetches its ``.hash`` and checks it. A checksum is never made up.

Policy for a file that fails its check: ``require`` never deletes anything. The
downloader only renames a file into place after it passed, so a bad file under a
model's final name was put there (or changed) by someone else, possibly the user;
``require`` rejects it with an error naming the file, the expected and actual digests
and the fix. ``download`` replaces such a file, since the user asked for a fresh copy.
A bad ``.part`` (our own unfinished download) is deleted by the downloader.

Whatever the check, the sidecar ``<file>.verified`` records the file's size, mtime_ns,
SHA-256 and CRC32 (``engine.models.checksums``), so a 500 MB model is hashed once, and
``file_sha256`` gives the SHA-256 a job pins for a model whose catalogue has none.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelUnavailable
from engine.models.checksums import (
    SIDECAR_SUFFIX,
    Record,
    digests_of,
    hash_path,
    read_hash_file,
    read_sidecar,
    write_sidecar,
    write_text_atomically,
)
from engine.models.download import download_file, fetch_hash, manual_instructions, part_path
from engine.models.registry import REGISTRY, ModelSpec, mtcnn_files
from engine.models.user_catalogue import load_user_catalogue
from engine.progress import CancelToken, Progress, ProgressCallback

MODELS_DIR_ENV = "FUSION_MODELS_DIR"
PROGRESS_INTERVAL = 0.1

log = logging.getLogger(__name__)
_logged: set[str] = set()
_logged_guard = threading.Lock()


def default_models_dir(data_dir: Path | str) -> Path:
    """``$FUSION_MODELS_DIR`` if set, else ``<data_dir>/models``."""
    configured = os.environ.get(MODELS_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(data_dir) / "models"


def _warn_once(message: str) -> None:
    """Log a warning once per process (managers are made per request in places)."""
    with _logged_guard:
        if message in _logged:
            return
        _logged.add(message)
    log.warning("%s", message)


@dataclass(frozen=True)
class ModelStatus:
    """What the models panel and ``models list`` show for one model (cheap: no hashing).

    ``size``: the file's bytes when present, else the catalogue's exact size (0 when
    unknown; ``size_hint`` is then a rounded figure). ``check``: the catalogue's check
    (``sha256``, ``crc32``, ``hash-file``, ``none`` for a built-in). ``verified``: the
    file is known (through its sidecar) to pass it. ``unchecked``: installed, but no
    checksum is published to compare with (a hand-placed file without its ``.hash``).
    """

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
    family: str = ""
    check: str = "none"
    licence_class: str = "unknown"
    custom: bool = False
    size_hint: int = 0
    unchecked: bool = False

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


@dataclass(frozen=True)
class _Expected:
    """What a file must match: ``check`` and its digest (``""``: nothing published),
    ``source`` (where a ``.hash`` digest came from, for messages), or a ``problem``."""

    check: str
    value: str = ""
    source: str = ""
    problem: str | None = None

    @property
    def field(self) -> str:
        return "sha256" if self.check == "sha256" else "crc32"


class ModelManager:
    """Installed state and downloads for one models directory.

    ``registry``: the built-in catalogue (tests use stand-in files with their own real
    hashes); the user catalogue of ``models_dir`` is merged after it. ``licences``: the
    licence classes an operator allows (``licences.parse_licence_filter``), None for
    all. Download settings (``timeout``, ``attempts``, ``backoff``,
    ``allow_http_hosts``) are passed to :func:`engine.models.download.download_file`.

    ``catalogue``: every entry; ``registry``: the entries the licence filter lets
    through, which is what everything else sees.
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
        licences: frozenset[str] | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        custom, warnings = load_user_catalogue(self.models_dir, registry)
        self.warnings: builtins.list[str] = warnings
        for warning in warnings:
            _warn_once(warning)
        self.catalogue: dict[str, ModelSpec] = {**registry, **custom}
        self.licences = licences
        self._excluded = self._exclusions()
        self.registry: dict[str, ModelSpec] = {
            name: spec for name, spec in self.catalogue.items() if name not in self._excluded
        }
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.allow_http_hosts = tuple(allow_http_hosts)
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()

    # -- lookup -----------------------------------------------------------------------

    def spec(self, name: str) -> ModelSpec:
        """The catalogue entry; an unknown name is an error that lists the known ones, and
        a model the licence filter hides is an error saying so."""
        spec = self.registry.get(name)
        if spec is not None:
            return spec
        if name in self._excluded:
            raise ModelUnavailable(self._excluded[name])
        known = ", ".join(sorted(self.registry))
        raise ModelUnavailable(f"unknown model '{name}'; known models: {known}")

    def requirements(self, name: str) -> builtins.list[str]:
        """The models ``name`` needs to run (its converter and recognizer, and theirs),
        each once, in the order they are needed."""
        self.spec(name)
        return self._requirements(name)

    def _requirements(self, name: str) -> builtins.list[str]:
        needed: builtins.list[str] = []
        pending = [name]
        while pending:
            spec = self.catalogue.get(pending.pop(0))
            if spec is None:
                continue
            for dep in (spec.converter, spec.recognizer):
                if dep and dep != name and dep not in needed:
                    needed.append(dep)
                    pending.append(dep)
        return needed

    def _exclusions(self) -> dict[str, str]:
        """Model name → why the licence filter hides it (itself, or a model it needs)."""
        if self.licences is None:
            return {}
        allowed = ", ".join(sorted(self.licences))
        excluded: dict[str, str] = {}
        for name in self.catalogue:
            for culprit in (name, *self._requirements(name)):
                spec = self.catalogue.get(culprit)
                if spec is None or spec.licence_class in self.licences:
                    continue
                why = (
                    f"its licence class is {spec.licence_class} ({spec.license})"
                    if culprit == name
                    else f"it needs {culprit}, whose licence class is {spec.licence_class} "
                    f"({spec.license})"
                )
                excluded[name] = (
                    f"model {name} is excluded by the operator's licence filter "
                    f"(allowed classes: {allowed}): {why}"
                )
                break
        return excluded

    def file_path(self, name: str) -> Path:
        """Where a downloadable model lives (whether or not it is there)."""
        spec = self.spec(name)
        if spec.embedded:
            raise ModelUnavailable(f"model {name} is built in and has no file in the models dir")
        return self.models_dir / spec.filename

    def _lock(self, name: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.RLock())

    def _expected(self, spec: ModelSpec, file: Path) -> _Expected:
        if spec.sha256:
            return _Expected("sha256", spec.sha256)
        if spec.crc32:
            return _Expected("crc32", spec.crc32)
        crc, problem = read_hash_file(file)
        return _Expected("hash-file", crc or "", f" (from {hash_path(file)})", problem)

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
        expected = self._expected(spec, file)
        problem = problem or expected.problem
        record = read_sidecar(file, stat)
        cached = (record.digests.get(expected.check) or None) if record is not None else None
        if problem is None and cached is not None and expected.value and cached != expected.value:
            problem = (
                f"{file} failed its checksum ({expected.field} {cached}, expected "
                f"{expected.value}{expected.source})"
            )
        installed = problem is None
        verified = installed and bool(expected.value) and cached == expected.value
        unchecked = installed and not expected.value
        return self._status(
            spec, installed, file, stat.st_size, verified, partial, problem, unchecked
        )

    @staticmethod
    def _status(
        spec: ModelSpec,
        installed: bool,
        path: Path | None,
        size: int,
        verified: bool,
        partial: int,
        problem: str | None,
        unchecked: bool = False,
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
            family=spec.family,
            check=spec.check,
            licence_class=spec.licence_class,
            custom=spec.custom,
            size_hint=spec.size_hint,
            unchecked=unchecked,
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
            family=spec.family,
            check=spec.check,
            licence_class=spec.licence_class,
            custom=spec.custom,
        )

    def is_installed(self, name: str) -> bool:
        """Present (with the pinned size where one is known) and not known to be corrupt
        (no hashing here)."""
        return self.status(name).installed

    def path(self, name: str) -> Path | None:
        """The installed file (embedded mtcnn: the folder of its nets), else None."""
        status = self.status(name)
        return status.path if status.installed else None

    def best(self, kind: str, preferences: Sequence[str]) -> str | None:
        """The first of ``preferences`` that is a ``kind`` model and installed (models the
        licence filter hides are skipped)."""
        for name in preferences:
            spec = self.registry.get(name)
            if spec is not None and spec.kind == kind and self.is_installed(name):
                return name
        return None

    def file_sha256(self, name: str) -> str:
        """The SHA-256 of ``name``'s file as its sidecar recorded it when the file passed
        its check (or, with no checksum published, when ``require`` accepted it
        unchecked); ``""`` for a built-in model, a missing or failing file, or one not yet
        verified (``require`` verifies). Cheap: nothing is hashed. A job pins this."""
        spec = self.spec(name)
        if spec.embedded:
            return ""
        file = self.models_dir / spec.filename
        try:
            stat = file.stat()
        except OSError:
            return ""
        record = read_sidecar(file, stat)
        if record is None or not record.digests.sha256 or _size_problem(spec, file, stat.st_size):
            return ""
        expected = self._expected(spec, file)
        if expected.problem:
            return ""
        if expected.value and record.digests.get(expected.check) != expected.value:
            return ""
        if not expected.value and record.check != "none":
            return ""
        return record.digests.sha256

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
        """The verified file of ``name``, or ``ModelUnavailable`` saying how to get it.

        A ``hash-file`` model without its ``.hash`` is returned unchecked (a warning is
        logged once); its SHA-256 is still recorded, for ``file_sha256``."""
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
            expected = self._expected(spec, file)
            problem = problem or expected.problem
            if problem:
                raise ModelUnavailable(f"{problem}. {self._fix(spec, file)}")
            digests, record = digests_of(file, stat, cancel, expected.check)
            actual = digests.get(expected.check)
            passed = actual == expected.value if expected.value else None
            check = "none" if passed is None else expected.check if passed else ""
            if record is None or record.check != check:
                write_sidecar(file, Record(stat.st_size, stat.st_mtime_ns, digests, check))
            if passed is False:
                raise ModelUnavailable(
                    f"model file {file} failed its checksum: expected {expected.field} "
                    f"{expected.value}{expected.source}, got {actual}; it is not the {name} "
                    f"file this program pins (the file was left in place). "
                    f"{self._fix(spec, file)}"
                )
            if passed is None:
                _warn_once(self.unchecked_message(name))
            return file

    def unchecked_message(self, name: str) -> str:
        """Why an installed ``hash-file`` model without its ``.hash`` is not checked."""
        spec = self.spec(name)
        file = self.models_dir / spec.filename
        return (
            f"model {name} ({file}) is used unchecked: the catalogue publishes no checksum "
            f"for it and {hash_path(file).name} is not beside it; run "
            f"`python app.py models download {name}` to fetch its .hash and check it"
        )

    def _missing_message(self, spec: ModelSpec, file: Path) -> str:
        partial = _size_or_zero(part_path(file))
        of = f" of {spec.size}" if spec.size else ""
        waiting = (
            f" (a partial download of {partial}{of} bytes is waiting to resume)" if partial else ""
        )
        return (
            f"model {spec.name} is not installed{waiting}: run "
            f"`python app.py models download {spec.name}`, or by hand: "
            f"{self._by_hand(spec, file)}; licence: {spec.license}"
        )

    def _fix(self, spec: ModelSpec, file: Path) -> str:
        return (
            f"Delete it and run `python app.py models download {spec.name}` (which replaces "
            f"it), or by hand: {self._by_hand(spec, file)}"
        )

    @staticmethod
    def _by_hand(spec: ModelSpec, file: Path) -> str:
        steps = manual_instructions(spec.urls, file)
        if spec.check == "hash-file":
            steps += (
                f", with its checksum file {hash_path(file).name} from the same place beside "
                "it (without it the file is used unchecked)"
            )
        return steps

    # -- download -----------------------------------------------------------------------

    def download(
        self,
        name: str,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        *,
        with_requirements: bool = True,
    ) -> Path:
        """Install ``name`` and the models it needs (``requirements``), each a no-op when
        already verified; returns ``name``'s file. Reports bytes as ``Progress``, per
        file, each message naming the file.

        Threads asking for the same model wait for one download; other processes are
        kept apart by the downloader's file lock.
        """
        names = [name, *self.requirements(name)] if with_requirements else [name]
        paths = [
            self._download_one(each, progress, cancel, (number, len(names)))
            for number, each in enumerate(names, 1)
        ]
        return paths[0]

    def _download_one(
        self,
        name: str,
        progress: ProgressCallback | None,
        cancel: CancelToken | None,
        step: tuple[int, int],
    ) -> Path:
        spec = self.spec(name)
        if spec.embedded:
            return self.require(name)
        file = self.models_dir / spec.filename
        label = spec.filename if step[1] == 1 else f"[{step[0]}/{step[1]}] {spec.filename}"
        report = _ByteReporter(label, progress)
        with self._lock(name):
            status = self.status(name)
            if status.installed and status.unchecked:
                self._fetch_hash_file(spec, file, cancel)
                status = self.status(name)
            with contextlib.suppress(ModelUnavailable):
                if status.installed:
                    path = self.require(name, cancel)
                    size = path.stat().st_size
                    report(size, size)
                    return path
            fetched = download_file(
                spec,
                file,
                progress=report,
                cancel=cancel,
                timeout=self.timeout,
                attempts=self.attempts,
                backoff=self.backoff,
                allow_http_hosts=self.allow_http_hosts,
            )
            stat = file.stat()
            write_sidecar(
                file, Record(stat.st_size, stat.st_mtime_ns, fetched.digests, fetched.check)
            )
            report.finish()
            return file

    def _fetch_hash_file(self, spec: ModelSpec, file: Path, cancel: CancelToken | None) -> None:
        """Fetch the ``.hash`` of a model installed without it, so ``require`` checks it."""
        crc = fetch_hash(
            spec.urls,
            name=spec.name,
            timeout=self.timeout,
            attempts=self.attempts,
            backoff=self.backoff,
            allow_http_hosts=self.allow_http_hosts,
            cancel=cancel,
        )
        try:
            write_text_atomically(hash_path(file), crc)
        except OSError as exc:
            raise ModelUnavailable(
                f"cannot write the checksum file {hash_path(file)} of model {spec.name}: {exc}"
            ) from exc

    def list(self) -> builtins.list[ModelStatus]:
        """Every model the licence filter lets through, built-ins first, then custom."""
        return [self.status(name) for name in self.registry]


class _ByteReporter:
    """Turns the downloader's (done, total) bytes into throttled ``Progress`` reports."""

    def __init__(self, label: str, progress: ProgressCallback | None) -> None:
        self.label = label
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
        message = f"{self.label}: {done / 1e6:.1f} of " + (
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
    """A wrong size, where the catalogue knows the size (0: unknown, nothing to compare)."""
    if not spec.size or size == spec.size:
        return None
    return (
        f"model file {file} is {size} bytes but {spec.name} is {spec.size} bytes "
        f"(incomplete, or not the file this program pins)"
    )


__all__ = [
    "MODELS_DIR_ENV",
    "SIDECAR_SUFFIX",
    "ModelManager",
    "ModelStatus",
    "default_models_dir",
]
