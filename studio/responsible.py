"""Responsible-use checks run on every submission: consent and the content gate.

The content gate classifies every source and an image target before the job is
stored (a refused submission stores nothing). A video target's sampled frames
(one per second) are classified by the worker as the job's first stage, before
any frame is processed, so that submitting stays fast; such a job fails at once
with the same ``content_policy`` error. The threshold is the operator's
(``--content-threshold``), never the submitter's.

Submitting must stay fast (well under 100 ms), so the gate here:

- decodes JPEGs at reduced scale (the model sees 256×256);
- scores the images of one submission side by side, each on one thread, rather
  than in one batch on a pool of threads: ONNX Runtime's intra-op threads meet
  at a barrier after every operator, so when jobs or the event loop take one
  core away the whole batch waits; independent single-threaded runs do not;
- keeps its session warm from the server's start;
- remembers the scores of recent files by their SHA-256, so a batch of targets
  for one face classifies that face once.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import InvalidOptions
from engine.runtime import SessionCache

if TYPE_CHECKING:
    from engine.safety.gate import ContentGate
    from studio.submit import SubmitRequest

SCORE_CACHE_SIZE = 1024


def check_consent_option(options: dict) -> None:
    """``options.consent`` is optional for API clients, but when present it must be a boolean."""
    if "consent" in options and not isinstance(options["consent"], bool):
        raise InvalidOptions("consent must be true or false")


class ScoreCache:
    """Content scores of recently seen files, by SHA-256 of their bytes (thread-safe LRU)."""

    def __init__(self, size: int = SCORE_CACHE_SIZE) -> None:
        self.size = size
        self._scores: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._scores)

    def get(self, digest: str) -> float | None:
        with self._lock:
            score = self._scores.get(digest)
            if score is not None:
                self._scores.move_to_end(digest)
            return score

    def put(self, digest: str, score: float) -> None:
        with self._lock:
            self._scores[digest] = score
            self._scores.move_to_end(digest)
            while len(self._scores) > self.size:
                self._scores.popitem(last=False)


class SubmitContentGate:
    """The content gate as a studio submit check, with one warm CPU session."""

    def __init__(self, threshold: float, max_pixels: int) -> None:
        self.threshold = threshold
        self.max_pixels = max_pixels  # the operator's limit, already checked on the headers
        self.scores = ScoreCache()
        self._gate: ContentGate | None = None
        self._lock = threading.Lock()
        self._runs = ThreadPoolExecutor(
            max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="content-gate"
        )

    def gate(self) -> ContentGate:
        with self._lock:
            if self._gate is None:
                from engine.safety.gate import ContentGate

                self._gate = ContentGate(SessionCache("cpu", intra_op_threads=1), self.threshold)
            return self._gate

    def close(self) -> None:
        self._runs.shutdown(wait=False, cancel_futures=True)

    def warm_up(self) -> None:
        """Load and run the model once, so that the first submission does not pay for it."""
        self.gate().score(np.zeros((64, 64, 3), np.uint8))

    def check_images(self, request: SubmitRequest) -> None:
        from engine.safety.gate import is_image_file

        named = [
            (f"source {number} ({item.original})", item.path)
            for number, item in enumerate(request.sources, start=1)
        ]
        if request.target is not None and is_image_file(request.target.path):
            named.append((f"target ({request.target.original})", request.target.path))
        scores = self.score_files(named)
        self.gate().check_scores(
            [(name, score) for (name, _), score in zip(named, scores, strict=True)]
        )

    def score_files(self, named: list[tuple[str, Path]]) -> list[float]:
        """Scores of (label, image file) pairs: known files from the cache, the others side
        by side. A file that cannot be decoded is refused under its label (the uploaded
        name), never under its temporary one."""
        labels = [label for label, _ in named]
        contents = [path.read_bytes() for _, path in named]
        digests = [hashlib.sha256(data).hexdigest() for data in contents]
        scores = [self.scores.get(digest) for digest in digests]
        missing = [index for index, score in enumerate(scores) if score is None]
        fresh = self._runs.map(
            self._score_bytes, [contents[i] for i in missing], [labels[i] for i in missing]
        )
        for index, score in zip(missing, fresh, strict=True):
            scores[index] = score
            self.scores.put(digests[index], score)
        return [float(score) for score in scores if score is not None]

    def _score_bytes(self, data: bytes, name: str) -> float:
        from engine import imageio
        from engine.safety.gate import INPUT_SIDE

        image = imageio.decode_image(data, name, self.max_pixels, reduce_to=INPUT_SIDE)
        return self.gate().score(image)

    async def __call__(self, request: SubmitRequest) -> None:
        await asyncio.to_thread(self.check_images, request)
