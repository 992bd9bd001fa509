"""Previews: the newest preview frame of recent jobs and the CPU engine for face previews.

Both are in memory only: previews are transient, and the engine is loaded on first
use so that a server that never previews never pays for its models.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from engine.models.manager import ModelManager

if TYPE_CHECKING:
    from engine.pipeline import FaceEngine

PREVIEW_CACHE_SIZE = 512


class PreviewCache:
    """The newest preview JPEG of recent jobs, in memory (previews are transient)."""

    def __init__(self, size: int = PREVIEW_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[str, int, bytes]] = OrderedDict()

    def put(self, job_id: str, owner: str, jpeg: bytes) -> int:
        version = self._items[job_id][1] + 1 if job_id in self._items else 1
        self._items[job_id] = (owner, version, jpeg)
        self._items.move_to_end(job_id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return version

    def get(self, job_id: str, owner: str | None) -> tuple[int, bytes] | None:
        item = self._items.get(job_id)
        if item is None or (owner is not None and item[0] != owner):
            return None
        return item[1], item[2]

    def version(self, job_id: str) -> int | None:
        item = self._items.get(job_id)
        return item[1] if item else None

    def drop(self, job_id: str) -> None:
        self._items.pop(job_id, None)


class PreviewEngine:
    """Holds one CPU ``FaceEngine`` for the UI's face previews and submit's model checks.

    Created on first ``get()``: importing and loading the engine costs seconds, which
    a server start (and a server that never previews) should not pay."""

    def __init__(self, models: ModelManager) -> None:
        self.models = models
        self._engine: FaceEngine | None = None

    def get(self) -> FaceEngine:
        """The engine, created on the first call (one CPU thread, beside the workers)."""
        if self._engine is None:
            from engine.pipeline import FaceEngine

            self._engine = FaceEngine(self.models, "cpu", intra_op_threads=1)
        return self._engine
