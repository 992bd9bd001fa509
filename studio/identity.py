"""Who is asking: API keys, the browser owner cookie, the UI login, the open local mode.

Owner ids, the scheduler's unit of isolation:

* ``key:<id>``   an API client (``Authorization: Bearer <key>``); the id is random,
  so a revoked key's name can be reused without inheriting its jobs;
* ``web:<hash>`` a browser without login: a random HttpOnly cookie, of which only a
  hash is ever used as the owner id (owner ids appear in logs; cookies must not);
* ``user:<name>`` a person logged in through ``--auth``;
* ``local``      anyone on this machine when the server is loopback-only and no key
  or login is configured.

Keys are stored as SHA-256 hashes: they are 256-bit random tokens, so a slow
password hash would add nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

from engine.errors import InvalidOptions
from studio.db import StudioDB

KEY_PREFIX = "fsk_"
COOKIE_NAME = "fs_owner"
COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest lifetime browsers accept
LOCAL_OWNER = "local"
_COOKIE_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
# Paths whose responses never mint an owner cookie: API clients use keys, and an
# API request without credentials must stay anonymous (open local mode, or 401).
_NO_COOKIE_PREFIXES = ("/api/", "/metrics")


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    owner: str
    kind: str  # "key" | "browser" | "user" | "local"
    key_name: str | None = None
    operator: bool = False  # may act for the installation (download models)


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    created_at: float
    revoked_at: float | None
    admin: bool = False  # the operator's: may download models on a public server

    @property
    def owner(self) -> str:
        return f"key:{self.id}"


@dataclass(frozen=True)
class CreatedKey:
    """A new key; ``token`` is shown once and never stored."""

    key: ApiKey
    token: str
    webhook_secret: str


_KEY_COLUMNS = "id, name, prefix, created_at, revoked_at, admin"


def _key(row: tuple) -> ApiKey:
    return ApiKey(*row[:5], admin=bool(row[5]))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class KeyStore:
    """API keys in the studio database: create, list, revoke, authenticate."""

    def __init__(self, db: StudioDB) -> None:
        self.db = db

    def create(self, name: str, admin: bool = False) -> CreatedKey:
        if not _NAME_RE.match(name or ""):
            raise InvalidOptions(
                f"invalid key name {name!r}: use 1-64 letters, digits, '.', '_', '-' or '@'"
            )
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=secrets.token_urlsafe(9),
            name=name,
            prefix=token[: len(KEY_PREFIX) + 6],
            created_at=time.time(),
            revoked_at=None,
            admin=admin,
        )
        webhook_secret = new_webhook_secret()
        try:
            with self.db.transaction() as db:
                db.execute(
                    "INSERT INTO api_keys(id, name, hash, prefix, webhook_secret, created_at, admin)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        key.id,
                        name,
                        hash_token(token),
                        key.prefix,
                        webhook_secret,
                        key.created_at,
                        int(admin),
                    ),
                )
        except sqlite3.IntegrityError:
            raise InvalidOptions(
                f"an active key named {name!r} exists; revoke it first or pick another name"
            ) from None
        return CreatedKey(key=key, token=token, webhook_secret=webhook_secret)

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        rows = self.db.query(f"SELECT {_KEY_COLUMNS} FROM api_keys {where} ORDER BY created_at")
        return [_key(row) for row in rows]

    def revoke(self, name: str) -> ApiKey:
        with self.db.transaction() as db:
            row = db.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE name = ? AND revoked_at IS NULL",
                (name,),
            ).fetchone()
            if row is None:
                raise InvalidOptions(f"no active key named {name!r}")
            now = time.time()
            db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now, row[0]))
        return dataclasses.replace(_key(row), revoked_at=now)

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key whose token this is, or None."""
        if not token.startswith(KEY_PREFIX):
            return None
        rows = self.db.query(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE hash = ? AND revoked_at IS NULL",
            (hash_token(token),),
        )
        return _key(rows[0]) if rows else None

    def active(self, name: str) -> ApiKey | None:
        """The active key of this name (a UI login made with a key names it)."""
        rows = self.db.query(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE name = ? AND revoked_at IS NULL",
            (name,),
        )
        return _key(rows[0]) if rows else None

    def any_active(self) -> bool:
        return bool(self.db.query("SELECT 1 FROM api_keys WHERE revoked_at IS NULL LIMIT 1"))

    def webhook_secret(self, owner: str) -> str:
        """The signing secret for an owner's callbacks: the key's own, else the installation's."""
        if owner.startswith("key:"):
            rows = self.db.query("SELECT webhook_secret FROM api_keys WHERE id = ?", (owner[4:],))
            if rows:
                return rows[0][0]
        rows = self.db.query("SELECT value FROM meta WHERE key = 'webhook_secret'")
        if rows:
            return rows[0][0]
        with self.db.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('webhook_secret', ?)",
                (new_webhook_secret(),),
            )
            return db.execute("SELECT value FROM meta WHERE key = 'webhook_secret'").fetchone()[0]


def browser_owner(cookie: str | None) -> str | None:
    """The owner id of a browser cookie (a hash of it), or None for a missing or bad one."""
    if not cookie or not _COOKIE_RE.match(cookie):
        return None
    digest = hashlib.sha256(b"fusion-studio-owner:" + cookie.encode()).digest()
    return "web:" + base64.urlsafe_b64encode(digest[:18]).decode()


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class OwnerCookieMiddleware:
    """ASGI middleware giving every browser a random, HttpOnly owner cookie.

    The cookie is minted on the first page load (any path outside the API) and
    also placed into that request's headers, so the page and Gradio's own calls
    see one owner from the very first request. ``same_site`` is ``lax`` by
    default; on a Hugging Face Space the app runs in a cross-site iframe, where
    only ``none`` (with ``Secure``) cookies are sent.
    """

    def __init__(self, app, same_site: str = "lax", secure: bool = False) -> None:
        self.app = app
        self.same_site = same_site
        self.secure = secure or same_site == "none"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(_NO_COOKIE_PREFIXES):
            await self.app(scope, receive, send)
            return
        if _COOKIE_RE.match(cookie_from_headers(scope["headers"]) or ""):
            await self.app(scope, receive, send)
            return
        token = secrets.token_urlsafe(32)
        headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
        existing = b"; ".join(v for k, v in scope["headers"] if k == b"cookie")
        cookie = f"{COOKIE_NAME}={token}".encode()
        headers.append((b"cookie", existing + b"; " + cookie if existing else cookie))
        scope = dict(scope, headers=headers)
        set_cookie = self.header_value(token).encode()

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"set-cookie", set_cookie)]
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def header_value(self, token: str) -> str:
        parts = [
            f"{COOKIE_NAME}={token}",
            "Path=/",
            f"Max-Age={COOKIE_MAX_AGE}",
            "HttpOnly",
            f"SameSite={self.same_site.capitalize()}",
        ]
        if self.secure:
            parts.append("Secure")
        if self.same_site == "none":
            parts.append("Partitioned")
        return "; ".join(parts)


def cookie_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The owner cookie's value from raw ASGI headers (parsed by hand: one odd cookie of
    another app must not hide ours, as it would with ``http.cookies``)."""
    for key, value in headers:
        if key != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            name, sep, content = part.strip().partition("=")
            if sep and name == COOKIE_NAME:
                return content.strip().strip('"')
    return None
