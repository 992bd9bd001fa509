"""Swap previews: one frame of a submission, swapped with its options, answered at once.

``POST /api/v1/preview`` takes what ``POST /api/v1/jobs`` takes plus a frame, and
answers a JPEG instead of a job. It is not a job: nothing is queued or stored. It
passes the submit path's checks (options parsed by ``parse_options``, consent, the
upload limits and cost of ``Submitter.check_uploads``, the content gate and the
submit hooks), resolves its models as a job's spec does (``swap_models``), and swaps
through the job engine (``FaceEngine.prepare`` + ``FrameSwapper.process``). The JPEG
carries the watermark, metadata and C2PA signature of any output; its watermark
names the job id ``preview`` (one registry entry for every preview, not one per
request, so nothing grows).

Previews run on their own threads (``PREVIEW_SLOTS`` of them) through the studio's
CPU ``FaceEngine`` with one ONNX Runtime thread, never on a job's worker slot, so a
queued job waits for no preview. Each owner has at most one preview at a time: a
newer one cancels the older (which answers 409 ``canceled``) and takes its slot over;
when every slot is busy with other owners the answer is 429 with ``Retry-After``.

What makes moving a slider fast is a short-lived in-memory cache, keyed by the
files' SHA-256 and the options: the prepared source identity (the ``FrameSwapper``
``prepare`` returns), the decoded target frames, video probes, and the faces
``FrameSwapper.faces`` found in a frame, reused while only compositing options
(``COMPOSITING_OPTIONS``: masks, blends, enhancers, swapper) change. It is bounded in
entries, bytes and age.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import imageio
from engine.errors import Canceled, InvalidInput, InvalidOptions
from engine.models.resolve import ModelRef
from engine.options import ParsedOptions, SwapOptions, parse_options
from engine.progress import CancelToken
from scheduler.tasks import SCHEDULER_OPTION_KEYS
from studio.errors import TooManyRequests
from studio.responsible import check_consent_option
from studio.submit import SubmitRequest

if TYPE_CHECKING:
    from engine.pipeline import FrameSwapper
    from engine.provenance.apply import ProvenanceStamp
    from engine.video.probe import VideoInfo
    from studio.core import Studio

PREVIEW_SLOTS = 2  # previews that run at once, over all owners
RETRY_AFTER_SECONDS = 1  # about one frame's work
PREVIEW_STAMP_ID = "preview"  # the job id a preview's watermark names
CACHE_SECONDS = 600.0
PREPARED_ENTRIES = 8
PREPARED_BYTES = 128 << 20  # their decoded sources and reference
FRAME_ENTRIES = 16
FRAME_BYTES = 128 << 20
PROBE_ENTRIES = 16
FACE_ENTRIES = 64
# Swap options that only change how found faces are swapped and composited, never which
# faces are found or chosen: a preview that changes only these reuses the frame's faces.
COMPOSITING_OPTIONS = (
    "swapper",
    "pixel_boost",
    "swapper_weight",
    "enhancer",
    "enhancer_blend",
    "enhancer_fidelity",
    "frame_enhancer",
    "frame_enhancer_blend",
    "mask_types",
    "occluder",
    "parser",
    "mask_regions",
    "mask_areas",
    "mask_blur",
    "mask_padding",
    "color_correction",
    "blend_mode",
)
COMPOSITING_DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(SwapOptions)
    if f.name in COMPOSITING_OPTIONS and f.default is not dataclasses.MISSING
}
MAX_FRAME_DIGITS = 9
_FRAME_RE = re.compile(rf"^(?:(\d{{1,{MAX_FRAME_DIGITS}}})|t=(\d{{1,6}}(?:\.\d{{1,6}})?))$")
FRAME_USAGE = "frame must be a frame index (an integer >= 0) or t=SECONDS (e.g. t=2.5)"


# -- the frame field ----------------------------------------------------------------------


@dataclass(frozen=True)
class FrameChoice:
    """The ``frame`` field: an index, or seconds from the start of the whole target."""

    index: int | None = None
    seconds: float | None = None


def parse_frame(text: str | None) -> FrameChoice:
    """``"12"`` → index 12, ``"t=2.5"`` → 2.5 s, empty or absent → frame 0."""
    if text is None or text.strip() == "":
        return FrameChoice(index=0)
    match = _FRAME_RE.match(text.strip())
    if match is None:
        raise InvalidInput(f"{FRAME_USAGE}; got {text[:40]!r}")
    if match.group(1) is not None:
        return FrameChoice(index=int(match.group(1)))
    return FrameChoice(seconds=float(match.group(2)))


def video_frame_index(choice: FrameChoice, info: VideoInfo, name: str) -> int:
    """The frame a choice names in the whole video (``trim_start`` does not shift it)."""
    last = max(info.frames, 1) - 1
    if choice.seconds is None:
        index = choice.index or 0
        if index > last:
            raise InvalidInput(f"target ({name}): frame {index} is past the end (0..{last})")
        return index
    if choice.seconds > info.duration:
        raise InvalidInput(
            f"target ({name}): t={choice.seconds:g} is past the end ({info.duration:.3f} s)"
        )
    timeline = info.timeline  # each frame's start, in seconds after the first frame
    starts = (timeline.pts.astype(np.int64) - int(timeline.pts[0])) * float(timeline.time_base)
    index = int(np.searchsorted(starts, choice.seconds + 1e-9, side="right")) - 1
    return min(max(index, 0), last)


def image_frame_index(choice: FrameChoice, name: str) -> int:
    """An image is frame 0 (t=0)."""
    if (choice.index or 0) != 0 or (choice.seconds or 0.0) != 0.0:
        raise InvalidInput(f"target ({name}) is an image: its only frame is 0 (t=0)")
    return 0


# -- what a preview answers ---------------------------------------------------------------


@dataclass(frozen=True)
class PreviewImage:
    """The JPEG of one swapped frame. ``marked``: it carries the provenance marks (only
    a frame where a face was swapped does, like a job's output)."""

    jpeg: bytes
    frame: int
    faces_swapped: int
    marked: bool
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreviewWork:
    """One preview, checked and ready for the preview thread."""

    sources: tuple[Path, ...]
    target: Path
    target_name: str
    target_kind: str  # "image" | "video"
    references: tuple[Path, ...]  # the first is the reference selector's
    parsed: ParsedOptions
    frame: FrameChoice
    max_pixels: int


# -- one preview per owner, a bounded number in all ---------------------------------------


@dataclass(eq=False)
class PreviewTicket:
    """One admitted preview: its owner's slot, until ``finished``."""

    owner: str
    cancel: CancelToken = field(default_factory=CancelToken)
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class PreviewSlots:
    """Admission on the event loop: a newer preview of an owner cancels the older and
    inherits its slot when it ends; an owner without a slot gets one if any is free,
    else ``TooManyRequests`` with ``Retry-After``."""

    def __init__(self, slots: int = PREVIEW_SLOTS) -> None:
        self.slots = slots
        self._newest: dict[str, PreviewTicket] = {}  # owner → newest ticket; keys hold slots

    @property
    def busy(self) -> int:
        return len(self._newest)

    async def enter(self, owner: str) -> PreviewTicket:
        older = self._newest.get(owner)
        if older is None and len(self._newest) >= self.slots:
            raise TooManyRequests(
                "the server is busy with other previews; retry in a moment",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        ticket = PreviewTicket(owner)
        self._newest[owner] = ticket
        try:
            if older is not None:
                older.cancel.cancel()
                await older.finished.wait()  # the owner's slot passes on when the older ends
            if ticket.cancel.canceled:  # an even newer one came meanwhile
                raise _superseded()
        except BaseException:
            self.leave(ticket)
            raise
        return ticket

    def leave(self, ticket: PreviewTicket) -> None:
        ticket.finished.set()
        if self._newest.get(ticket.owner) is ticket:
            del self._newest[ticket.owner]


def _superseded() -> Canceled:
    return Canceled("a newer preview request of the same owner replaced this one")


# -- short-lived caches -------------------------------------------------------------------


class TimedCache:
    """A thread-safe LRU bounded in entries, total weight and age."""

    def __init__(
        self,
        entries: int,
        seconds: float = CACHE_SECONDS,
        max_weight: int | None = None,
        weigh: Callable[[Any], int] = lambda _: 0,
    ) -> None:
        self.entries, self.seconds, self.max_weight, self.weigh = (
            entries,
            seconds,
            max_weight,
            weigh,
        )
        self._items: OrderedDict[Any, tuple[float, int, Any]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if time.monotonic() - item[0] > self.seconds:
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return item[2]

    def put(self, key: Any, value: Any) -> None:
        weight = self.weigh(value)
        if self.max_weight is not None and weight > self.max_weight:
            return
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = (time.monotonic(), weight, value)
            self._weight += weight
            while self._items and (
                len(self._items) > self.entries
                or (self.max_weight is not None and self._weight > self.max_weight)
            ):
                self._drop(next(iter(self._items)))

    def _drop(self, key: Any) -> None:
        _, weight, _ = self._items.pop(key)
        self._weight -= weight


@dataclass(frozen=True)
class _Prepared:
    swapper: FrameSwapper
    notes: frozenset[str]
    nbytes: int  # the decoded images it holds


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# -- the service --------------------------------------------------------------------------


class PreviewService:
    """Checks, admits and renders previews for one ``Studio`` (REST and UI alike)."""

    def __init__(self, studio: Studio, slots: int = PREVIEW_SLOTS) -> None:
        self.studio = studio
        self.admission = PreviewSlots(slots)
        self._threads = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="preview")
        self._prepared = TimedCache(
            PREPARED_ENTRIES, max_weight=PREPARED_BYTES, weigh=lambda p: p.nbytes
        )
        self._frames = TimedCache(FRAME_ENTRIES, max_weight=FRAME_BYTES, weigh=lambda a: a.nbytes)
        self._probes = TimedCache(PROBE_ENTRIES)
        self._faces = TimedCache(FACE_ENTRIES)
        self._stamp: ProvenanceStamp | None = None
        self._lock = threading.Lock()

    async def preview(self, request: SubmitRequest, frame: FrameChoice) -> PreviewImage:
        """The checks of a submission, then one frame swapped on a preview thread."""
        options = request.options
        if not isinstance(options, dict):
            raise InvalidOptions("options must be a JSON object")
        parsed = parse_options(options, extra_keys=SCHEDULER_OPTION_KEYS)
        check_consent_option(options)
        if options.get("consent") is not True:
            raise InvalidOptions(
                "a preview needs consent: true in options (you have the right to use the "
                "faces in these files)"
            )
        ticket = await self.admission.enter(request.owner)
        try:
            return await self._run(request, parsed, frame, ticket)
        except Canceled:
            raise _superseded() from None  # the only one who cancels a preview is a newer one
        finally:
            self.admission.leave(ticket)

    async def _run(
        self,
        request: SubmitRequest,
        parsed: ParsedOptions,
        frame: FrameChoice,
        ticket: PreviewTicket,
    ) -> PreviewImage:
        """The checks, then the render on a preview thread, for an admitted preview."""
        await self._check(request, parsed, ticket.cancel)
        assert request.target is not None
        work = PreviewWork(
            sources=tuple(item.path for item in request.sources),
            target=request.target.path,
            target_name=request.target.original,
            target_kind=request.checked[-1].kind,
            references=tuple(item.path for item in request.all_references),
            parsed=parsed,
            frame=frame,
            max_pixels=self.studio.config.limits.max_pixels,
        )
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(self._threads, self.render, work, ticket.cancel)
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:  # the client left: stop the work, keep the slot
            ticket.cancel.cancel()  # until the thread is done with it
            with contextlib.suppress(Exception):
                await running
            raise

    async def _check(self, request: SubmitRequest, parsed: ParsedOptions, cancel: CancelToken):
        """The submit path's checks: files and limits, then the content gate and hooks."""
        await self.studio.submitter.check_uploads(request, parsed, frames=1)
        cancel.raise_if_canceled()
        gate = self.studio.content_gate
        hooks = list(self.studio.submit_checks)
        if gate not in hooks:  # with --content-gate dispatch a job's worker gates; here we do
            await asyncio.to_thread(gate.check_images, request)
        for hook in hooks:
            cancel.raise_if_canceled()
            await hook(request)
        cancel.raise_if_canceled()

    # -- on a preview thread ----------------------------------------------------------

    def render(self, work: PreviewWork, cancel: CancelToken) -> PreviewImage:
        """Decode the frame, swap it with the prepared identity, encode and mark it."""
        cancel.raise_if_canceled()
        target_digest = file_digest(work.target)
        if work.target_kind == "image":
            index = image_frame_index(work.frame, work.target_name)
            frame = self._image(work, target_digest)
            first = lambda: frame  # noqa: E731  (the image is its own first frame)
        else:
            info = self._probe(work, target_digest)
            index = video_frame_index(work.frame, info, work.target_name)
            frame = self._video_frame(work, target_digest, index)
            cancel.raise_if_canceled()
            self._gate_frame(work, target_digest, index, frame)
            first = lambda: self._video_frame(work, target_digest, 0)  # noqa: E731
        cancel.raise_if_canceled()
        prepared = self._prepare(work, target_digest, first)
        cancel.raise_if_canceled()
        lane = prepared.swapper.fork()
        lane.notes = set(prepared.notes)  # this preview's notes only, not an earlier one's
        self._reuse_faces(lane, work, (target_digest, index), frame)
        cancel.raise_if_canceled()
        result = lane.process(frame.copy())  # the cached frame stays as decoded
        cancel.raise_if_canceled()
        return self._encode(work, index, result.image, result.faces_swapped, lane.notes)

    def _image(self, work: PreviewWork, digest: str) -> np.ndarray:
        key = (digest, 0)
        image = self._frames.get(key)
        if image is None:
            image = imageio.load_image(work.target, max_pixels=work.max_pixels)
            self._frames.put(key, image)
        return image

    def _probe(self, work: PreviewWork, digest: str) -> VideoInfo:
        from engine.video.probe import probe

        info = self._probes.get(digest)
        if info is None:
            info = probe(work.target)
            self._probes.put(digest, info)
        return info

    def _video_frame(self, work: PreviewWork, digest: str, index: int) -> np.ndarray:
        from engine.video.decode import read_frame

        key = (digest, index)
        image = self._frames.get(key)
        if image is None:
            try:
                image = read_frame(work.target, index)
            except InvalidInput as exc:  # name the upload, not the server's temporary copy
                message = exc.message.replace(work.target.name, f"target ({work.target_name})")
                raise InvalidInput(message) from None
            self._frames.put(key, image)
        return image

    def _gate_frame(self, work: PreviewWork, digest: str, index: int, frame: np.ndarray):
        """A video frame is gated as an image target is (the job's worker gates its samples)."""
        gate = self.studio.content_gate
        key = f"{digest}#{index}"
        score = gate.scores.get(key)
        if score is None:
            score = gate.gate().score(frame)
            gate.scores.put(key, score)
        gate.gate().check_scores([(f"target ({work.target_name}) frame {index}", score)])

    def _prepare(
        self, work: PreviewWork, target_digest: str, first: Callable[[], np.ndarray]
    ) -> _Prepared:
        """The job's models (resolved as at submit) and its prepared source identity.
        ``first``: the target's first frame, where the reference selector and face_map's
        face entries look for faces, as in a job."""
        from scheduler.swap_task import swap_models

        settings = self.studio.scheduler.config.worker_settings
        models: tuple[ModelRef, ...] = swap_models(work.parsed, settings)
        sources = tuple(file_digest(path) for path in work.sources)
        references = tuple(file_digest(path) for path in work.references)
        key = (sources, references, target_digest, repr(work.parsed.swap), repr(models))
        prepared = self._prepared.get(key)
        if prepared is not None:
            return prepared
        from engine.jobrun import load_sources

        images = load_sources(work.sources, work.max_pixels)
        references = [imageio.load_image(path, work.max_pixels) for path in work.references]
        swapper = self.studio.face_engine().prepare(
            images,
            work.parsed.swap,
            references[0] if references else None,
            reference_target=first(),
            models=models,
            references=references,
        )
        held = sum(image.nbytes for image in [*images, *references])
        prepared = _Prepared(swapper, frozenset(swapper.notes), held)
        self._prepared.put(key, prepared)
        return prepared

    def _reuse_faces(
        self, lane: FrameSwapper, work: PreviewWork, frame_key: tuple, frame: np.ndarray
    ) -> None:
        """The faces this lane swaps in this frame, found once per frame and face-finding
        options (``FrameSwapper.faces``: detect, landmarks, filter, select) and reused while
        only compositing options change, as moving a slider does; ``process`` then runs
        as in a job on those faces. Not for ``face_map``, which finds its faces itself."""
        swap = work.parsed.swap
        if swap.face_map:
            return
        finding = dataclasses.replace(swap, **COMPOSITING_DEFAULTS)
        key = (*frame_key, repr(finding), repr(lane.resolved))
        faces = self._faces.get(key)
        if faces is None:
            faces = lane.faces(frame)
            self._faces.put(key, faces)
        lane.faces = lambda _frame: copy.deepcopy(faces)  # type: ignore[method-assign]

    def _encode(
        self, work: PreviewWork, index: int, image: np.ndarray, faces: int, notes: set[str]
    ) -> PreviewImage:
        """JPEG with the provenance marks of a job's output (only where a face changed)."""
        from engine.provenance.apply import finish_file, watermark_frame

        warnings = sorted(notes)
        stamp = self.stamp() if faces else None
        if stamp is not None:
            try:
                image = watermark_frame(image, stamp)
            except InvalidInput as exc:  # too small to carry the mark; metadata and C2PA apply
                warnings.append(f"no invisible watermark: {exc.message}")
        else:
            warnings.append("no face found in this frame; it is unchanged and not marked")
        path = self.studio.new_upload_path().with_suffix(".jpg")
        try:
            imageio.save_image(image, path, quality=work.parsed.output.quality)
            if stamp is not None:
                finish_file(path, "image", stamp, (image.shape[1], image.shape[0]))
            data = path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
        return PreviewImage(data, index, faces, stamp is not None, tuple(warnings))

    def stamp(self) -> ProvenanceStamp:
        """The marks every preview carries (registered once, under ``PREVIEW_STAMP_ID``)."""
        from engine.provenance.apply import prepare_stamp

        with self._lock:
            if self._stamp is None:
                self._stamp = prepare_stamp(self.studio.config.data_dir, PREVIEW_STAMP_ID)
            return self._stamp


_SERVICES: weakref.WeakKeyDictionary[Studio, PreviewService] = weakref.WeakKeyDictionary()


def preview_service(studio: Studio) -> PreviewService:
    """The studio's one preview service: the REST route and the UI share its slots."""
    service = _SERVICES.get(studio)
    if service is None:
        service = _SERVICES[studio] = PreviewService(studio)
    return service
