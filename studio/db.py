"""The studio's own small SQLite database: API keys, installation secrets, webhook outbox.

Job state belongs to the scheduler's store; this file only holds what the
presentation layer owns. Every statement is a short indexed lookup or write,
so a plain ``sqlite3`` connection guarded by a lock is enough; WAL mode lets
the ``keys`` command write while a server reads.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    webhook_secret TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name
    ON api_keys(name) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    url TEXT NOT NULL,
    event_type TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    last_status INTEGER,
    created_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due
    ON webhook_outbox(status, next_attempt_at);
"""
# Migrations from each older version, in order (index 0 upgrades version 1 to 2).
_MIGRATIONS = (
    # 2: admin keys (`keys create NAME --admin`) may download models on a public server.
    "ALTER TABLE api_keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;",
)


class StudioDB:
    """A thread-safe handle on ``<data_dir>/studio/studio.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version < 1:
                db.executescript_safe(_SCHEMA)
                version = 1
            for script in _MIGRATIONS[version - 1 :]:
                db.executescript_safe(script)
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[_Tx]:
        """One ``BEGIN IMMEDIATE`` transaction, committed on success."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _Tx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple = ()) -> int:
        """Run one write statement; returns the number of rows changed."""
        with self._lock:
            return self._conn.execute(sql, params).rowcount

    def secret(self, name: str, nbytes: int = 32) -> str:
        """A random installation secret, created on first use and kept."""
        rows = self.query("SELECT value FROM meta WHERE key = ?", (name,))
        if rows:
            return rows[0][0]
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                (name, secrets.token_urlsafe(nbytes)),
            )
            return db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _Tx:
    """The connection inside a transaction (``executescript`` would commit, so split it)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    def executescript_safe(self, script: str) -> None:
        for statement in script.split(";"):
            if statement.strip():
                self._conn.execute(statement)


def open_db(studio_dir: Path) -> StudioDB:
    return StudioDB(Path(studio_dir) / "studio.sqlite")
