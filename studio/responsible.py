"""Responsible-use checks run on every submission: consent and the content gate.

The content gate classifies every source and an image target before the job is
stored (a refused submission stores nothing). A video target's sampled frames
(one per second) are classified by the worker as the job's first stage, before
any frame is processed, so that submitting stays fast; such a job fails at once
with the same ``content_policy`` error. The threshold is the operator's
(``--content-threshold``), never the submitter's.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

from engine.errors import InvalidOptions
from engine.runtime import SessionCache

if TYPE_CHECKING:
    from studio.core import SubmitRequest


def check_consent_option(options: dict) -> None:
    """``options.consent`` is optional for API clients, but when present it must be a boolean."""
    if "consent" in options and not isinstance(options["consent"], bool):
        raise InvalidOptions("consent must be true or false")


class SubmitContentGate:
    """The content gate as a studio submit check, with one warm CPU session."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._gate = None
        self._lock = threading.Lock()

    def gate(self):
        with self._lock:
            if self._gate is None:
                from engine.safety.gate import ContentGate

                self._gate = ContentGate(SessionCache("cpu"), self.threshold)
            return self._gate

    def check_images(self, request: SubmitRequest) -> None:
        from engine import imageio
        from engine.safety.gate import is_image_file

        named = [
            (f"source {number} ({item.original})", imageio.load_image(item.path))
            for number, item in enumerate(request.sources, start=1)
        ]
        if request.target is not None and is_image_file(request.target.path):
            named.append(
                (f"target ({request.target.original})", imageio.load_image(request.target.path))
            )
        self.gate().check_images(named)  # one batched inference for the whole submission

    async def __call__(self, request: SubmitRequest) -> None:
        check_consent_option(request.options)
        await asyncio.to_thread(self.check_images, request)
