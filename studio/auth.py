"""``Authenticator``: who sent a request (API key, ``--auth`` login, browser cookie).

One object decides for the REST API and the Gradio UI alike, so both front ends
agree on owners. Cross-site and foreign-host requests never get here
(``studio.http_guard``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from studio.config import StudioConfig
from studio.errors import ApiError
from studio.identity import (
    COOKIE_NAME,
    LOCAL_OWNER,
    KeyStore,
    Principal,
    bearer_token,
    browser_owner,
)


class Authenticator:
    """The principal of API requests and UI routes, and Gradio's login check.

    ``gradio_app`` is a callable because Gradio is mounted after the studio exists
    (its tokens map ``--auth`` logins to user names)."""

    def __init__(self, config: StudioConfig, keys: KeyStore, gradio_app: Callable[[], Any]) -> None:
        self.config = config
        self.keys = keys
        self._gradio_app = gradio_app

    def principal(self, request) -> Principal:
        """Who sent an API request; raises 401 ``ApiError`` otherwise.

        Cross-site and foreign-host requests never get here (``studio.http_guard``)."""
        token = bearer_token(request.headers.get("authorization"))
        if token is not None:
            key = self.keys.authenticate(token)
            if key is None:
                raise ApiError(
                    401,
                    "unauthorized",
                    "invalid or revoked API key",
                    {"WWW-Authenticate": "Bearer"},
                )
            return Principal(key.owner, "key", key.name, operator=key.admin)
        principal = self.ui_principal(request.cookies, self._gradio_user(request))
        if principal is not None:
            return principal
        if self.open_local_mode():
            return Principal(LOCAL_OWNER, "local", operator=True)
        raise ApiError(
            401,
            "unauthorized",
            "an API key is required: send 'Authorization: Bearer <key>' "
            "(create one with: python app.py keys create NAME)",
            {"WWW-Authenticate": "Bearer"},
        )

    def open_local_mode(self) -> bool:
        """Loopback-only, no key, no login: whoever can connect is on this machine."""
        return self.config.api_open and not self.keys.any_active()

    def ui_principal(self, cookies, username: str | None) -> Principal | None:
        """The owner of a browser: its login (``--auth`` or an API key), else its cookie.

        Under ``--auth`` or ``--require-api-key`` a cookie alone is never an owner."""
        if self.config.ui_login:
            if not username:
                return None
            if username in dict(self.config.auth):
                return Principal(f"user:{username}", "user", operator=True)
            key = self.keys.active(username)
            if key is None:  # revoked since the login
                return None
            return Principal(key.owner, "key", key.name, operator=key.admin)
        owner = browser_owner(cookies.get(COOKIE_NAME))
        if owner is None:
            return None
        return Principal(owner, "browser", operator=self.open_local_mode())

    def browser_owner(self, cookies, username: str | None) -> str | None:
        """The owner id of a browser (see ``ui_principal``), or None."""
        principal = self.ui_principal(cookies, username)
        return principal.owner if principal else None

    def ui_owner(self, request) -> str | None:
        """The owner of a request to the UI's own routes (Gradio's uploads and events)."""
        return self.browser_owner(request.cookies, self._gradio_user(request))

    def check_login(self, username: str, password: str) -> bool:
        """Gradio's login form: an ``--auth`` user, or an API key's name and the key."""
        users = dict(self.config.auth)
        if username in users:
            return hmac.compare_digest(users[username].encode(), password.encode())
        if not self.config.require_api_key:
            return False
        key = self.keys.authenticate(password)
        return key is not None and key.name == username

    def _gradio_user(self, request) -> str | None:
        """The ``--auth`` user name behind Gradio's access-token cookie, if logged in."""
        app = self._gradio_app()
        if not self.config.ui_login or app is None:
            return None
        cookie_id = getattr(app, "cookie_id", "")
        token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
            f"access-token-unsecure-{cookie_id}"
        )
        return app.tokens.get(token) if token else None
