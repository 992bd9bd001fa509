"""Fetch one model file: resumable, checksummed, cancellable, and never silent about failure.

The file grows in ``<dest>.part``; an interrupted download resumes from there with an
HTTP ``Range`` request. Mirrors are tried in order. Only a file whose size and SHA-256
match the pin is renamed (atomically) to ``dest``. Every failure ends in
``ModelUnavailable`` naming the model, the URLs tried and where to put the file by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

import httpx

from engine.errors import ModelUnavailable
from engine.models.registry import ModelSpec
from engine.progress import CancelToken

try:  # POSIX: keeps two processes from writing the same .part file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

ByteProgress = Callable[[int, int | None], None]
"""Called with (bytes done, bytes expected or None) as a download advances."""

CHUNK_SIZE = 1 << 20
MAX_REDIRECTS = 8
USER_AGENT = "fusion-studio-model-downloader/1"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Retry(Exception):
    """A failure that may pass: connection error, timeout, cut transfer, HTTP 5xx/429."""


class _Skip(Exception):
    """A failure this URL will not get over (404, wrong size, refused redirect): next mirror."""


class _HashMismatch(Exception):
    def __init__(self, actual: str) -> None:
        super().__init__(actual)
        self.actual = actual


def part_path(dest: Path) -> Path:
    """Where the unfinished download of ``dest`` grows."""
    return dest.with_suffix(dest.suffix + ".part")


def manual_instructions(urls: Sequence[str], dest: Path) -> str:
    """The by-hand step, worded the same way in every error ("download X … place it at Y")."""
    where = " or ".join(urls) if urls else "its publisher"
    return (
        f"download {dest.name} from {where} and place it at {dest} "
        f"(models directory {dest.parent}, file name {dest.name})"
    )


def sha256_file(path: Path, cancel: CancelToken | None = None) -> str:
    """SHA-256 of a file, read in chunks so large models do not fill memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            if cancel is not None:
                cancel.raise_if_canceled()
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock across processes (a no-op where ``fcntl`` is missing)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def download(
    source: ModelSpec | str | Sequence[str],
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    *,
    name: str | None = None,
    progress: ByteProgress | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 30.0,
    attempts: int = 3,
    backoff: float = 0.5,
    allow_http_hosts: Collection[str] = (),
    chunk_size: int = CHUNK_SIZE,
) -> Path:
    """Download ``source`` (a spec, one URL, or URLs in mirror order) to ``dest``.

    ``sha256`` and ``size`` default to the spec's pins. ``attempts`` counts failures in a
    row on one URL (a retry that made progress starts the count again); the wait between
    them doubles from ``backoff`` seconds. ``timeout`` bounds connecting and each read.
    Only https is followed, plus plain http to ``allow_http_hosts`` (tests use 127.0.0.1).
    Cancelling raises ``Canceled`` and keeps the ``.part`` file for a later resume.
    """
    if isinstance(source, ModelSpec):
        urls: tuple[str, ...] = source.urls
        sha256 = sha256 or source.sha256
        size = size if size is not None else source.size
        name = name or source.name
    elif isinstance(source, str):
        urls = (source,)
    else:
        urls = tuple(source)
    label = name or dest.name
    if not sha256:
        raise ValueError("download needs the expected sha256")
    if not urls:
        raise ModelUnavailable(f"model {label} has no download URL")
    dest = Path(dest)
    job = _Transfer(
        label=label,
        part=part_path(dest),
        sha256=sha256.lower(),
        size=size,
        progress=progress,
        cancel=cancel,
        chunk_size=chunk_size,
        allow_http_hosts=frozenset(allow_http_hosts),
    )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelUnavailable(
            f"cannot create the models directory {dest.parent} for model {label}: {exc}"
        ) from exc
    with exclusive(dest.with_suffix(dest.suffix + ".lock")):
        _check_disk_space(job, dest)
        failures: list[str] = []
        mismatch: str | None = None
        client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            follow_redirects=False,
        )
        with client:
            for url in urls:
                try:
                    _from_url(client, url, job, attempts, backoff)
                except _HashMismatch as exc:
                    mismatch = exc.actual
                    failures.append(f"{url}: checksum mismatch (got sha256 {exc.actual})")
                    continue
                except (_Retry, _Skip) as exc:
                    failures.append(f"{url}: {exc}")
                    continue
                _commit(job.part, dest, label)
                return dest
    manual = "To install it by hand, " + manual_instructions(urls, dest)
    if mismatch is not None:
        raise ModelUnavailable(
            f"downloaded file for model {label} failed its checksum: expected sha256 "
            f"{job.sha256}, got {mismatch}; the file was removed. Tried: "
            f"{'; '.join(failures)}. {manual}"
        )
    raise ModelUnavailable(f"could not download model {label}: {'; '.join(failures)}. {manual}")


class _Transfer:
    """State of one file's download: where it grows, what it must match, who listens."""

    def __init__(
        self,
        *,
        label: str,
        part: Path,
        sha256: str,
        size: int | None,
        progress: ByteProgress | None,
        cancel: CancelToken | None,
        chunk_size: int,
        allow_http_hosts: frozenset[str],
    ) -> None:
        self.label = label
        self.part = part
        self.sha256 = sha256
        self.size = size
        self.progress = progress
        self.cancel = cancel
        self.chunk_size = chunk_size
        self.allow_http_hosts = allow_http_hosts

    def check_cancel(self) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_canceled()

    def report(self, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(done, total)

    def offset(self) -> int:
        """Bytes already on disk, dropping a .part that is longer than the pinned size."""
        try:
            have = self.part.stat().st_size
        except FileNotFoundError:
            return 0
        if self.size is not None and have > self.size:
            self.restart()
            return 0
        return have

    def restart(self) -> None:
        self.part.unlink(missing_ok=True)


def _check_disk_space(job: _Transfer, dest: Path) -> None:
    if job.size is None:
        return
    needed = job.size - job.offset()
    free = shutil.disk_usage(dest.parent).free
    if needed > free:
        raise ModelUnavailable(
            f"not enough disk space for model {job.label}: {needed} bytes needed in "
            f"{dest.parent}, {free} free"
        )


def _from_url(
    client: httpx.Client, url: str, job: _Transfer, attempts: int, backoff: float
) -> None:
    """Bring ``job.part`` to a verified file from one URL, retrying what may pass."""
    failures = 0
    clean_retry_used = False
    while True:
        job.check_cancel()
        before = job.offset()
        try:
            resumed = _fetch(client, url, job)
        except (_Retry, httpx.TransportError) as exc:
            failures = 0 if job.offset() > before else failures + 1
            if failures >= attempts:
                raise _Retry(_describe(exc)) from exc
            _sleep(backoff * 2 ** (failures - 1), job)
            continue
        try:
            _verify(job)
            return
        except _HashMismatch:
            job.restart()
            if resumed and not clean_retry_used:
                # Resumed bytes may belong to another version of the file: start clean once.
                clean_retry_used = True
                continue
            raise


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.TransportError):
        return f"connection failed ({type(exc).__name__}: {exc})"
    return str(exc)


def _sleep(seconds: float, job: _Transfer) -> None:
    """Wait before a retry, still answering cancellation."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        job.check_cancel()
        time.sleep(min(0.05, left))


def _check_url(url: str, job: _Transfer) -> httpx.URL:
    parsed = httpx.URL(url)
    if parsed.scheme == "https":
        return parsed
    if parsed.scheme == "http" and parsed.host in job.allow_http_hosts:
        return parsed
    raise _Skip(f"refusing to fetch {url}: only https downloads are allowed")


def _open(
    client: httpx.Client, url: str, job: _Transfer, headers: dict[str, str]
) -> httpx.Response:
    """GET with redirects followed by hand, so every hop's scheme and host are checked."""
    target = _check_url(url, job)
    for _ in range(MAX_REDIRECTS + 1):
        response = client.send(client.build_request("GET", target, headers=headers), stream=True)
        if not response.is_redirect:
            return response
        location = response.headers.get("location", "")
        response.close()
        target = _check_url(str(target.join(location)), job)
    raise _Skip(f"more than {MAX_REDIRECTS} redirects")


def _fetch(client: httpx.Client, url: str, job: _Transfer) -> bool:
    """One request: append to the .part file. Returns whether it resumed earlier bytes."""
    offset = job.offset()
    if job.size is not None and offset == job.size:
        return True  # complete already; the hash check decides
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    response = _open(client, url, job, headers)
    try:
        total = _accept(response, job, offset)
        if response.status_code == 200 and offset:
            job.restart()  # the server ignored the range: start over
            offset = 0
        _stream(response, job, offset, total)
    finally:
        response.close()
    return offset > 0


def _accept(response: httpx.Response, job: _Transfer, offset: int) -> int | None:
    """Check the status and length of a response; return the whole file's length if known."""
    status = response.status_code
    if status == 416 and offset:
        job.restart()
        raise _Retry("server refused to resume (HTTP 416); starting again")
    if status in (429,) or status >= 500:
        raise _Retry(f"HTTP {status}")
    if status not in (200, 206):
        raise _Skip(f"HTTP {status}")
    total: int | None = None
    if status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        if not match or int(match.group(1)) != offset:
            job.restart()
            raise _Retry("server answered the resume with an unexpected range; starting again")
        total = None if match.group(3) == "*" else int(match.group(3))
    elif "content-length" in response.headers:
        total = int(response.headers["content-length"])
    if job.size is not None and total is not None and total != job.size:
        raise _Skip(f"server offers {total} bytes but model {job.label} is {job.size} bytes")
    return total if total is not None else job.size


def _stream(response: httpx.Response, job: _Transfer, offset: int, total: int | None) -> None:
    expected = job.size if job.size is not None else total
    done = offset
    job.report(done, expected)
    try:
        with job.part.open("ab" if offset else "wb") as handle:
            # iter_raw without a size hands over every byte as it arrives, so a cut
            # connection loses nothing that was received; slices keep reports frequent.
            for piece in response.iter_raw():
                for start in range(0, len(piece), job.chunk_size):
                    chunk = piece[start : start + job.chunk_size]
                    job.check_cancel()
                    handle.write(chunk)
                    done += len(chunk)
                    if expected is not None and done > expected:
                        handle.close()
                        job.restart()
                        raise _Skip(f"server sent more than the {expected} bytes expected")
                    job.report(done, expected)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise ModelUnavailable(f"cannot write model {job.label} to {job.part}: {exc}") from exc
    if expected is not None and done < expected:
        raise _Retry(f"connection closed after {done} of {expected} bytes")


def _verify(job: _Transfer) -> None:
    actual = sha256_file(job.part, job.cancel)
    if actual != job.sha256:
        raise _HashMismatch(actual)


def _commit(part: Path, dest: Path, label: str) -> None:
    """Rename the verified file into place in one step, so readers never see half a model."""
    try:
        os.replace(part, dest)
    except OSError as exc:
        raise ModelUnavailable(f"cannot move model {label} into place at {dest}: {exc}") from exc
    with contextlib.suppress(OSError):
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
