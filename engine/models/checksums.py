"""Checksums of model files, FaceFusion's ``.hash`` files, and the ``.verified`` sidecar.

One read of a file gives both its SHA-256 and its zlib CRC32, so whichever check a
catalogue entry pins (``sha256``, ``crc32``, or the CRC32 in FaceFusion's ``.hash``
file beside the model), the SHA-256 of the exact file is known too and can be
recorded: jobs pin that. The sidecar ``<file>.verified`` caches both digests with the
file's size and mtime_ns, so a 500 MB model is hashed once; it is trusted only while
size and mtime_ns still match. It caches what the file *is*; whether that passes a
check is decided by the caller against the catalogue each time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from engine.progress import CancelToken

CHUNK_SIZE = 1 << 20
SIDECAR_SUFFIX = ".verified"
HASH_SUFFIX = ".hash"
MAX_HASH_FILE_BYTES = 64
_CRC32 = re.compile(r"[0-9a-f]{8}")


@dataclass(frozen=True)
class Digests:
    """A file's SHA-256 and CRC32, as lower-case hex (64 and 8 digits)."""

    sha256: str
    crc32: str

    def get(self, check: str) -> str:
        """The digest a check compares: ``sha256``, else the CRC32 (``crc32``, ``hash-file``);
        ``""`` where it is not known."""
        return self.sha256 if check == "sha256" else self.crc32


def file_digests(path: Path, cancel: CancelToken | None = None) -> Digests:
    """SHA-256 and CRC32 of a file in one pass, in chunks so large models do not fill memory."""
    sha = hashlib.sha256()
    crc = 0
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            if cancel is not None:
                cancel.raise_if_canceled()
            sha.update(chunk)
            crc = zlib.crc32(chunk, crc)
    return Digests(sha.hexdigest(), f"{crc & 0xFFFFFFFF:08x}")


# -- FaceFusion's .hash files -----------------------------------------------------------


def hash_path(file: Path) -> Path:
    """Where the ``.hash`` of a model lives: ``X.onnx`` → ``X.hash`` (FaceFusion's layout)."""
    return file.with_suffix(HASH_SUFFIX)


def hash_url(url: str) -> str:
    """The ``.hash`` beside a model URL: ``…/X.onnx`` → ``…/X.hash``."""
    parts = urlsplit(url)
    path = parts.path
    path = path[: -len(".onnx")] if path.endswith(".onnx") else path
    return urlunsplit(parts._replace(path=path + HASH_SUFFIX))


def parse_crc32(text: str | bytes) -> str | None:
    """The CRC32 a ``.hash`` file holds (8 hex digits, whitespace around allowed), or None."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    value = text.strip().lower()
    return value if _CRC32.fullmatch(value) else None


def read_hash_file(file: Path) -> tuple[str | None, str | None]:
    """(crc32, problem) from the ``.hash`` beside ``file``: (None, None) when there is none,
    (None, why) when it is unreadable or does not hold a CRC32."""
    path = hash_path(file)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_HASH_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path}: {exc}"
    crc = parse_crc32(data) if len(data) <= MAX_HASH_FILE_BYTES else None
    if crc is None:
        return None, f"{path} does not hold a CRC32 (8 hex digits)"
    return crc, None


def write_text_atomically(path: Path, text: str) -> None:
    """Write a small file in one step (a reader sees the old file or the new one)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


# -- the .verified sidecar --------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """What the sidecar knows about one exact file (size and mtime_ns identify it).

    ``check``: the check it last passed (``sha256``, ``crc32``, ``hash-file``, ``none``
    for a file accepted without a published checksum, ``""`` for none passed).
    ``fits``: ``kind/family`` pairs whose tensors the file was checked to fit.
    """

    size: int
    mtime_ns: int
    digests: Digests
    check: str = ""
    fits: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "sha256": self.digests.sha256,
            "crc32": self.digests.crc32,
            "check": self.check,
            "fits": list(self.fits),
        }


def sidecar_path(file: Path) -> Path:
    return file.with_name(file.name + SIDECAR_SUFFIX)


def read_sidecar(file: Path, stat: os.stat_result) -> Record | None:
    """The sidecar's record, if it still describes this exact file. A sidecar written
    before CRC32s were recorded has a SHA-256 only: its ``crc32`` is ``""`` (unknown)."""
    try:
        data = json.loads(sidecar_path(file).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("size") != stat.st_size or data.get("mtime_ns") != stat.st_mtime_ns:
        return None
    sha, crc = data.get("sha256"), data.get("crc32", "")
    if not isinstance(sha, str) or not isinstance(crc, str):
        return None
    fits = data.get("fits")
    return Record(
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        digests=Digests(sha, crc),
        check=str(data.get("check") or ""),
        fits=tuple(str(f) for f in fits) if isinstance(fits, list) else (),
    )


def write_sidecar(file: Path, record: Record) -> None:
    """Record what a file is, atomically; a read-only models dir just means hashing again.

    ``fits`` already recorded for the same exact file are kept."""
    with contextlib.suppress(OSError):
        old = read_sidecar(file, file.stat())
        if old is not None and old.digests == record.digests:
            record = replace(record, fits=tuple(dict.fromkeys((*old.fits, *record.fits))))
    with contextlib.suppress(OSError):
        write_text_atomically(sidecar_path(file), json.dumps(record.to_dict()))


def digests_of(
    file: Path, stat: os.stat_result, cancel: CancelToken | None = None, check: str = ""
) -> tuple[Digests, Record | None]:
    """The file's digests: from the sidecar when it matches and knows the digest ``check``
    compares (both, without a ``check``; record returned too), else computed now
    (record None: the caller writes one)."""
    record = read_sidecar(file, stat)
    if record is not None:
        known = record.digests.get(check) if check else record.digests.crc32
        if record.digests.sha256 and known:
            return record.digests, record
    return file_digests(file, cancel), None


__all__ = [
    "Digests",
    "Record",
    "digests_of",
    "file_digests",
    "hash_path",
    "hash_url",
    "parse_crc32",
    "read_hash_file",
    "read_sidecar",
    "sidecar_path",
    "write_sidecar",
    "write_text_atomically",
]
