"""Fetch one model file: resumable, checksummed, cancellable, and never silent about failure.

The file grows in ``<dest>.part``; an interrupted download resumes from there with an
HTTP ``Range`` request. Mirrors are tried in order. Only a file that passes its check
is renamed (atomically) to ``dest``. The check is the pinned SHA-256 if there is one,
else the pinned CRC32, else (``hash-file``) the CRC32 in FaceFusion's ``X.hash`` that
the same host serves beside ``X.onnx``: it is fetched first, from each mirror in turn
(it belongs to that mirror's byte stream), and saved beside the model once the model
matched it. No check is ever skipped or made up. A size of 0 or None means unknown:
the server's Content-Length is used for progress and for the disk-space check. Every
failure ends in ``ModelUnavailable`` naming the model, the URLs tried and where to put
the file by hand.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from engine.errors import ModelUnavailable
from engine.models.checksums import (
    MAX_HASH_FILE_BYTES,
    Digests,
    file_digests,
    hash_path,
    hash_url,
    parse_crc32,
    write_text_atomically,
)
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


@dataclass(frozen=True)
class Downloaded:
    """A verified download: where it is, its digests, and the check it passed
    (``sha256``, ``crc32`` or ``hash-file``)."""

    path: Path
    digests: Digests
    check: str


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
    **options,
) -> Path:
    """``download_file`` returning only the path."""
    return download_file(source, dest, sha256, size, **options).path


def download_file(
    source: ModelSpec | str | Sequence[str],
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    *,
    crc32: str | None = None,
    name: str | None = None,
    progress: ByteProgress | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 30.0,
    attempts: int = 3,
    backoff: float = 0.5,
    allow_http_hosts: Collection[str] = (),
    chunk_size: int = CHUNK_SIZE,
) -> Downloaded:
    """Download ``source`` (a spec, one URL, or URLs in mirror order) to ``dest``.

    ``sha256``, ``crc32`` and ``size`` default to the spec's pins; with neither checksum
    the ``.hash`` beside each URL is the check (and is saved at ``hash_path(dest)``).
    ``attempts`` counts failures in a row on one URL (a retry that made progress starts
    the count again); the wait between them doubles from ``backoff`` seconds.
    ``timeout`` bounds connecting and each read. Only https is followed, plus plain
    http to ``allow_http_hosts`` (tests use 127.0.0.1). Cancelling raises ``Canceled``
    and keeps the ``.part`` file for a later resume.
    """
    if isinstance(source, ModelSpec):
        urls: tuple[str, ...] = source.urls
        sha256 = sha256 or source.sha256
        crc32 = crc32 or source.crc32
        size = size if size is not None else source.size
        name = name or source.name
    elif isinstance(source, str):
        urls = (source,)
    else:
        urls = tuple(source)
    label = name or dest.name
    if not urls:
        raise ModelUnavailable(f"model {label} has no download URL")
    check = "sha256" if sha256 else "crc32" if crc32 else "hash-file"
    dest = Path(dest)
    job = _Transfer(
        label=label,
        part=part_path(dest),
        check=check,
        expected=(sha256 or crc32 or "").lower(),
        size=size or None,
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
        _check_disk_space(job)
        failures: list[str] = []
        mismatch: str | None = None
        with _client(timeout) as client:
            for url in urls:
                try:
                    if check == "hash-file":
                        job.expected, job.source = _remote_crc32(
                            client, url, job, attempts, backoff
                        )
                    digests = _from_url(client, url, job, attempts, backoff)
                except _HashMismatch as exc:
                    mismatch = exc.actual
                    failures.append(f"{url}: checksum mismatch (got {job.field} {exc.actual})")
                    continue
                except (_Retry, _Skip) as exc:
                    failures.append(f"{url}: {exc}")
                    continue
                _commit(job.part, dest, label)
                if check == "hash-file":
                    _save_hash_file(dest, job.expected)
                return Downloaded(dest, digests, check)
    manual = "To install it by hand, " + manual_instructions(urls, dest)
    if mismatch is not None:
        raise ModelUnavailable(
            f"downloaded file for model {label} failed its checksum: expected {job.field} "
            f"{job.expected}{job.source}, got {mismatch}; the file was removed. Tried: "
            f"{'; '.join(failures)}. {manual}"
        )
    raise ModelUnavailable(f"could not download model {label}: {'; '.join(failures)}. {manual}")


def fetch_hash(
    urls: Sequence[str],
    *,
    name: str,
    timeout: float = 30.0,
    attempts: int = 3,
    backoff: float = 0.5,
    allow_http_hosts: Collection[str] = (),
    cancel: CancelToken | None = None,
) -> str:
    """The CRC32 in the ``.hash`` beside the first of ``urls`` that serves one, or
    ``ModelUnavailable`` naming the URLs tried (for a model file installed by hand)."""
    job = _Transfer(
        label=name,
        part=Path(os.devnull),
        check="hash-file",
        expected="",
        size=None,
        progress=None,
        cancel=cancel,
        chunk_size=CHUNK_SIZE,
        allow_http_hosts=frozenset(allow_http_hosts),
    )
    failures: list[str] = []
    with _client(timeout) as client:
        for url in urls:
            try:
                return _remote_crc32(client, url, job, attempts, backoff)[0]
            except (_Retry, _Skip) as exc:
                failures.append(f"{url}: {exc}")
    raise ModelUnavailable(
        f"could not fetch the .hash file of model {name}: {'; '.join(failures) or 'no URL'}"
    )


def _client(timeout: float) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        follow_redirects=False,
    )


class _Transfer:
    """State of one file's download: where it grows, what it must match, who listens.

    ``check``: ``sha256``, ``crc32`` or ``hash-file``; ``expected``: the digest it must
    have (for ``hash-file``, set from each mirror's ``.hash``; ``source`` then says
    where it came from, for messages)."""

    def __init__(
        self,
        *,
        label: str,
        part: Path,
        check: str,
        expected: str,
        size: int | None,
        progress: ByteProgress | None,
        cancel: CancelToken | None,
        chunk_size: int,
        allow_http_hosts: frozenset[str],
    ) -> None:
        self.label = label
        self.part = part
        self.check = check
        self.expected = expected
        self.source = ""
        self.size = size
        self.progress = progress
        self.cancel = cancel
        self.chunk_size = chunk_size
        self.allow_http_hosts = allow_http_hosts

    @property
    def field(self) -> str:
        """The digest compared: ``sha256`` or ``crc32``."""
        return "sha256" if self.check == "sha256" else "crc32"

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


def _check_disk_space(job: _Transfer, size: int | None = None) -> None:
    """Refuse a download the disk cannot hold (``size``: the whole file, default the pin;
    with neither, the server's length is checked when it answers)."""
    size = size if size is not None else job.size
    if size is None:
        return
    needed = size - job.offset()
    folder = job.part.parent
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise ModelUnavailable(
            f"not enough disk space for model {job.label}: {needed} bytes needed in "
            f"{folder}, {free} free"
        )


def _remote_crc32(
    client: httpx.Client, url: str, job: _Transfer, attempts: int, backoff: float
) -> tuple[str, str]:
    """(crc32, " (from <url>)") read from the ``.hash`` beside ``url``, retrying what may pass."""
    location = hash_url(url)
    failures = 0
    while True:
        job.check_cancel()
        try:
            response = _open(client, location, job, {})
            try:
                status = response.status_code
                if status == 429 or status >= 500:
                    raise _Retry(f"HTTP {status} for {location}")
                if status != 200:
                    raise _Skip(f"no checksum published: HTTP {status} for {location}")
                body = b""
                for piece in response.iter_raw():
                    body += piece
                    if len(body) > MAX_HASH_FILE_BYTES:
                        break
            finally:
                response.close()
        except (_Retry, httpx.TransportError) as exc:
            failures += 1
            if failures >= attempts:
                raise _Retry(_describe(exc)) from exc
            _sleep(backoff * 2 ** (failures - 1), job)
            continue
        crc = parse_crc32(body) if len(body) <= MAX_HASH_FILE_BYTES else None
        if crc is None:
            raise _Skip(f"{location} does not hold a CRC32 (8 hex digits)")
        return crc, f" (from {location})"


def _save_hash_file(dest: Path, crc32: str) -> None:
    """Keep the ``.hash`` the model matched beside it, as FaceFusion lays them out."""
    target = hash_path(dest)
    try:
        write_text_atomically(target, crc32)
    except OSError as exc:
        raise ModelUnavailable(
            f"model {dest.name} was verified but its checksum file {target} cannot be "
            f"written: {exc}"
        ) from exc


def _from_url(
    client: httpx.Client, url: str, job: _Transfer, attempts: int, backoff: float
) -> Digests:
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
            return _verify(job)
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
        if response.status_code == 416 and offset and job.size is None:
            return True  # maybe complete already (size unknown); the hash check decides
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
    if job.size is None:
        _check_disk_space(job, total)
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


def _verify(job: _Transfer) -> Digests:
    """Both digests of the finished ``.part`` in one read; the check's must match."""
    digests = file_digests(job.part, job.cancel)
    actual = digests.get(job.check)
    if actual != job.expected:
        raise _HashMismatch(actual)
    return digests


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
