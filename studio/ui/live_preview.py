"""The Create panel's preview: one frame swapped with the form's options, before Submit.

The frame goes through the studio's preview service (``studio.preview``: the checks
of a submission, consent, one preview per owner, the job engine, provenance marks),
called in this process, not over HTTP. The page shows it over the original frame and
marks it as a preview.

Moving a slider sends many changes; ``Debouncer`` lets only the newest change of a
browser tab run, after ``DEBOUNCE_SECONDS`` of quiet.
"""

from __future__ import annotations

import asyncio
import base64
import html
import threading
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from engine import imageio
from studio.core import Studio
from studio.errors import TooManyRequests
from studio.preview import FrameChoice, preview_service
from studio.submit import SubmitRequest
from studio.ui.faces import jpeg_data_uri

DEBOUNCE_SECONDS = 0.5
BEFORE_MAX_SIDE = 1280  # the "before" image is shown at most this large
MAX_TABS = 4096  # browser tabs whose newest change is remembered
BUSY_RETRIES = 20  # the preview slots are busy: retry this often, a second apart


class Debouncer:
    """The newest change per browser tab: older ones give way to it.

    Changes are ranked by the revision of the face choices they carry
    (``TargetFaces.revision``), then by arrival: two previews chained to two quick
    face assignments can reach the server in either order, and the one made from
    older choices must not replace the other."""

    def __init__(self, seconds: float = DEBOUNCE_SECONDS, tabs: int = MAX_TABS) -> None:
        self.seconds = seconds
        self.tabs = tabs
        self._newest: OrderedDict[str, tuple[int, int]] = OrderedDict()  # (ticket, revision)
        self._lock = threading.Lock()

    def ticket(self, tab: str, revision: int = 0) -> int | None:
        """A number for this change, or None when the tab has seen newer choices."""
        with self._lock:
            number, newest_revision = self._newest.pop(tab, (0, revision))
            if revision < newest_revision:
                self._newest[tab] = (number, newest_revision)
                return None
            self._newest[tab] = (number + 1, revision)
            while len(self._newest) > self.tabs:
                self._newest.popitem(last=False)
            return number + 1

    def current(self, tab: str, number: int) -> bool:
        with self._lock:
            newest = self._newest.get(tab)
            return newest is not None and newest[0] == number

    async def settle(self, tab: str, revision: int = 0) -> int | None:
        """A ticket for this change, or None if a newer one came during the quiet time
        (or had already come, from newer face choices)."""
        number = self.ticket(tab, revision)
        if number is None:
            return None
        await asyncio.sleep(self.seconds)
        return number if self.current(tab, number) else None


@dataclass(frozen=True)
class Rendered:
    """A swapped frame as a JPEG with the provenance marks where a face changed."""

    jpeg: bytes
    frame: int
    faces_swapped: int
    warnings: tuple[str, ...]
    marked: bool


async def render(studio: Studio, request: SubmitRequest, frame: int) -> Rendered:
    """Frame ``frame`` of the request's target, swapped with its options by the preview
    service. Raises ``Canceled`` when a newer preview of the same owner replaced it and
    ``TooManyRequests`` while every preview slot is busy with other owners."""
    image = await preview_service(studio).preview(request, FrameChoice(index=frame))
    return Rendered(image.jpeg, image.frame, image.faces_swapped, image.warnings, image.marked)


def target_frame(path, frame: int, max_pixels: int | None = None) -> np.ndarray:
    """An image target (frame 0), or frame ``frame`` of a video target, as BGR."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    sniffed = imageio.sniff_image_format(head)
    if sniffed and sniffed != "gif":
        if max_pixels is None:
            return imageio.load_image(path)
        return imageio.load_image(path, max_pixels=max_pixels)
    from engine.video.decode import read_frame

    return read_frame(path, frame)


def before_uri(image: np.ndarray) -> str:
    """The unswapped frame for the comparison, at most ``BEFORE_MAX_SIDE`` wide or tall."""
    scale = min(1.0, BEFORE_MAX_SIDE / max(image.shape[:2]))
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return jpeg_data_uri(np.ascontiguousarray(image[:, :, ::-1]), quality=85)


@dataclass(frozen=True)
class CompareText:
    """The comparison's words, in the page's language."""

    badge: str  # "Preview"
    before: str
    after: str
    slider: str  # the range input's label
    caption: str  # already formatted


def compare_html(before: str, after_jpeg: bytes, words: CompareText, token: int) -> str:
    """A before/after comparison: the swapped frame with the original stacked on top,
    clipped by a range input (``static/compare.js`` moves the clip; the range input works
    by keyboard). ``token`` changes with every preview, for tests and scripts."""
    after = "data:image/jpeg;base64," + base64.b64encode(after_jpeg).decode("ascii")
    return (
        f'<figure class="fs-compare" data-preview="{token}" style="--fs-pos: 50%">'
        f'<div class="fs-compare-stage">'
        f'<img class="fs-after" src="{after}" alt="{html.escape(words.after)}">'
        f'<img class="fs-before" src="{before}" alt="{html.escape(words.before)}">'
        f'<span class="fs-badge">{html.escape(words.badge)}</span></div>'
        f'<input type="range" class="fs-compare-range" min="0" max="100" value="50" step="1" '
        f'aria-label="{html.escape(words.slider)}">'
        f"<figcaption>{html.escape(words.caption)}</figcaption></figure>"
    )


async def render_when_free(
    studio: Studio, request: SubmitRequest, frame: int, still_wanted
) -> Rendered | None:
    """``render``, waiting a second at a time while every preview slot is busy with other
    owners; None once ``still_wanted()`` says a newer change took over, or after
    ``BUSY_RETRIES`` tries."""
    for _ in range(BUSY_RETRIES):
        try:
            return await render(studio, request, frame)
        except TooManyRequests:
            await asyncio.sleep(1.0)
            if not still_wanted():
                return None
    return None
