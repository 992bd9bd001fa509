"""The watermark payload: which installation made an output, and for which job.

The payload is 48 bits, packed big-endian into 6 bytes::

    bits 47..32  installation tag  (16 bits, random, chosen once per installation)
    bits 31..0   job tag           (32 bits, random, chosen once per job)

Neither tag is derived from a secret or from the job id, so a payload read from a
file tells an outsider nothing except "these two outputs came from the same
installation / job". Only the installation that made an output can turn the job
tag back into its job id, through a small SQLite registry kept in its data dir:

    DATA_DIR/provenance/installation.json   {"id": "...", "tag": 1234, "created_at": ...}
    DATA_DIR/provenance/job-tags.sqlite3    job_tags(tag PRIMARY KEY, job_id UNIQUE, created_at)

A tag read from a watermark names a job of *this* installation only when the
installation tag matches and the job tag is in the registry; the 16-bit
installation tag alone could collide between two installations (1 in 65 536).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.atomic import write_atomic
from engine.errors import InvalidInput, InvalidOptions

PAYLOAD_BYTES = 6
INSTALLATION_TAG_BITS = 16
JOB_TAG_BITS = 32
INSTALLATION_FILE = "installation.json"
REGISTRY_FILE = "job-tags.sqlite3"


def provenance_dir(data_dir: str | Path) -> Path:
    """``DATA_DIR/provenance``: installation id, job tags and signing credentials."""
    return Path(data_dir) / "provenance"


@dataclass(frozen=True)
class Payload:
    """The 48 bits carried by the invisible watermark."""

    installation_tag: int
    job_tag: int

    def __post_init__(self) -> None:
        if not 0 <= self.installation_tag < 1 << INSTALLATION_TAG_BITS:
            raise InvalidOptions(f"installation tag {self.installation_tag} is not a 16-bit number")
        if not 0 <= self.job_tag < 1 << JOB_TAG_BITS:
            raise InvalidOptions(f"job tag {self.job_tag} is not a 32-bit number")

    def to_bytes(self) -> bytes:
        return ((self.installation_tag << JOB_TAG_BITS) | self.job_tag).to_bytes(
            PAYLOAD_BYTES, "big"
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Payload:
        if len(data) != PAYLOAD_BYTES:
            raise InvalidInput(f"a watermark payload is {PAYLOAD_BYTES} bytes, not {len(data)}")
        value = int.from_bytes(data, "big")
        return cls(
            installation_tag=value >> JOB_TAG_BITS, job_tag=value & ((1 << JOB_TAG_BITS) - 1)
        )

    @property
    def hex(self) -> str:
        return self.to_bytes().hex()


@dataclass(frozen=True)
class Installation:
    """This installation's identity, created on first use and kept in the data dir."""

    id: str
    tag: int
    created_at: float


def load_installation(data_dir: str | Path) -> Installation | None:
    """The installation recorded in ``data_dir``, or None when there is none yet."""
    path = provenance_dir(data_dir) / INSTALLATION_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text("utf-8"))
        return Installation(
            id=str(record["id"]), tag=int(record["tag"]), created_at=float(record["created_at"])
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path} is damaged ({exc}); restore it from a backup") from None


def ensure_installation(data_dir: str | Path) -> Installation:
    """Load this installation's identity, creating it (once, even across processes) if needed."""
    directory = provenance_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    existing = load_installation(data_dir)
    if existing is not None:
        return existing
    with file_lock(directory / ".installation.lock"):
        existing = load_installation(data_dir)
        if existing is not None:
            return existing
        installation = Installation(
            id=uuid.uuid4().hex, tag=secrets.randbits(INSTALLATION_TAG_BITS), created_at=time.time()
        )
        write_atomic(directory / INSTALLATION_FILE, json.dumps(asdict(installation)).encode())
        return installation


class JobTagRegistry:
    """Maps job tags (in watermarks) to job ids, for this installation only.

    Each call opens its own short-lived connection, so one registry object can be
    used from any thread, and several worker processes can share the file.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.path = provenance_dir(data_dir) / REGISTRY_FILE

    def register(self, job_id: str) -> int:
        """The job's tag, choosing a fresh random one the first time (idempotent)."""
        if not job_id:
            raise InvalidOptions("a job id is required to register a watermark tag")
        with self._connect(create=True) as db:
            row = db.execute("SELECT tag FROM job_tags WHERE job_id = ?", (job_id,)).fetchone()
            if row:
                return int(row[0])
            for _ in range(32):
                tag = secrets.randbits(JOB_TAG_BITS)
                try:
                    db.execute(
                        "INSERT INTO job_tags (tag, job_id, created_at) VALUES (?, ?, ?)",
                        (tag, job_id, time.time()),
                    )
                    return tag
                except sqlite3.IntegrityError:
                    row = db.execute(
                        "SELECT tag FROM job_tags WHERE job_id = ?", (job_id,)
                    ).fetchone()
                    if row:  # another process registered the same job meanwhile
                        return int(row[0])
        raise InvalidInput(f"could not find a free watermark tag for job {job_id}")

    def lookup(self, tag: int) -> str | None:
        """The job id of a tag, or None when this installation never issued it."""
        if not self.path.is_file():
            return None
        with self._connect(create=False) as db:
            row = db.execute("SELECT job_id FROM job_tags WHERE tag = ?", (int(tag),)).fetchone()
        return str(row[0]) if row else None

    def forget(self, job_id: str) -> None:
        """Drop a job's tag (for retention); its outputs then verify without a job id."""
        if not self.path.is_file():
            return
        with self._connect(create=False) as db:
            db.execute("DELETE FROM job_tags WHERE job_id = ?", (job_id,))

    @contextlib.contextmanager
    def _connect(self, create: bool) -> Iterator[sqlite3.Connection]:
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout = 30000")
            if create:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS job_tags ("
                    " tag INTEGER PRIMARY KEY, job_id TEXT NOT NULL UNIQUE, created_at REAL NOT NULL)"
                )
            yield db
        finally:
            db.close()


def payload_for_job(data_dir: str | Path, job_id: str) -> Payload:
    """The payload to embed in every output of ``job_id`` (registers the job's tag)."""
    installation = ensure_installation(data_dir)
    return Payload(installation.tag, JobTagRegistry(data_dir).register(job_id))


def job_for_payload(data_dir: str | Path, payload: Payload) -> str | None:
    """The job id a payload names, when this installation made it; else None."""
    installation = load_installation(data_dir)
    if installation is None or installation.tag != payload.installation_tag:
        return None
    return JobTagRegistry(data_dir).lookup(payload.job_tag)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so that two workers starting together agree on one identity."""
    import fcntl

    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
