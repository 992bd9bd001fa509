"""Expiring, HMAC-signed share links to one job's result.

A token names the job and its expiry and is signed with an installation
secret, so the server keeps no table of links and cannot be tricked into
serving another job: changing any byte breaks the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ShareGrant:
    job_id: str
    expires_at: float


class ShareSigner:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"fusion-studio-share:" + secret.encode()).digest()

    def token(self, job_id: str, ttl_seconds: float, now: float | None = None) -> str:
        """A token for ``job_id`` valid for ``ttl_seconds``."""
        expires = int((now if now is not None else time.time()) + ttl_seconds)
        body = f"{job_id}.{expires}"
        return f"{_b64(body.encode())}.{_b64(self._sign(body))}"

    def verify(self, token: str, now: float | None = None) -> ShareGrant | None:
        """The grant a token carries, or None when it is forged, malformed or expired."""
        try:
            encoded, signature = token.split(".")
            body = _unb64(encoded).decode()
            job_id, expires_text = body.rsplit(".", 1)
            expires = int(expires_text)
            given = _unb64(signature)
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(given, self._sign(body)):
            return None
        if expires < (now if now is not None else time.time()):
            return None
        return ShareGrant(job_id=job_id, expires_at=float(expires))

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not text or len(text) > 512:
        raise ValueError("bad token part")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
