"""A video target's faces as tracks: the analysis pass, run on demand from the Create panel.

A video's faces are not the faces of one frame: a job swaps per track
(``engine.video_plan``), so the panel lists one card per track that the job's own
analysis pass will find, with the frames where it appears, and the person gives each
track a source (``face_map`` ``track`` entries).

The pass reads every frame of the (trimmed) range, so it runs only when asked, after
the panel has shown the range's length; on a worker thread with the studio's CPU
``FaceEngine``, cancellable, with the same upload limits as a submission. It is
resolved and run as a job's pass would be (``swap_models``, ``analyse_target``), so
its track ids are the ones the job finds. Its result is cached per browser session and
per (video file, trim range, face-finding options and models) for a while.

The preview service swaps one frame and cannot run the pass, so a ``track`` entry means
nothing to it. For the preview only, ``preview_face_map`` turns the track assignments
into ``face`` entries of the previewed frame: the frame's faces are found as the
preview finds them (detector, landmarks, filters; numbered left to right) and each is
matched to the track whose box at that frame overlaps it most.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.face_map import left_to_right
from engine.models.resolve import ResolvedModels
from engine.options import OutputOptions, ParsedOptions, SwapOptions, parse_options
from engine.progress import CancelToken, Progress
from engine.tracking.analysis import VideoAnalysis
from engine.tracking.tracker import TrackedFace
from studio.core import Studio
from studio.preview import TimedCache
from studio.ui.faces import face_thumbnail, jpeg_data_uri

MAX_TRACK_CARDS = 24  # the longest tracks are listed; the others are counted
CACHE_ENTRIES = 16  # passes kept, over all browser sessions
CACHE_SECONDS = 3600.0
MIN_IOU = 0.3  # least overlap of a previewed face with a track's box to take its source
# Options that change which faces the pass finds and how it follows them; with the
# models they resolve to, and the file and range, they make a pass's cache key.
ANALYSIS_OPTIONS = (
    "detector",
    "detector_size",
    "detector_score",
    "detector_angles",
    "landmarker",
    "face_ages",
    "face_genders",
    "temporal_smoothing",
    "detect_every",
)
ANALYSIS_MODELS = ("detector", "detectors", "recognizer", "landmarker", "landmark_regressor")


@dataclass(frozen=True)
class VideoSpan:
    """The frames a pass covers: ``[first, end)`` of ``frames``, and their times."""

    frames: int
    duration: float
    first: int
    end: int
    start_seconds: float
    end_seconds: float

    @property
    def count(self) -> int:
        return self.end - self.first


@dataclass(frozen=True)
class TrackCard:
    """One track as the Create panel lists it: where it appears (absolute frames and
    seconds from the video's start) and a thumbnail cut from frame ``thumb_frame``."""

    track_id: int
    first_frame: int
    last_frame: int
    frames: int
    first_seconds: float
    last_seconds: float
    thumbnail: str  # data URI
    thumb_frame: int
    thumb_box: tuple[float, float, float, float]


@dataclass(frozen=True, eq=False)
class TrackPass:
    """A finished pass: its key, what it found, and the cards to show."""

    key: str
    span: VideoSpan
    analysis: VideoAnalysis
    cards: tuple[TrackCard, ...]
    hidden: int  # tracks not listed (past ``MAX_TRACK_CARDS``, the shortest ones)


@dataclass(frozen=True)
class PassSetup:
    """The options and models a pass runs with (those a job with these options gets)."""

    parsed: ParsedOptions
    resolved: ResolvedModels

    @property
    def swap(self) -> SwapOptions:
        return self.parsed.swap

    @property
    def output(self) -> OutputOptions:
        return self.parsed.output


def trim_output(trim: dict[str, Any]) -> OutputOptions:
    """Output options with only the trim range (what the pass's range depends on)."""
    return OutputOptions(trim_start=trim.get("trim_start"), trim_end=trim.get("trim_end"))


def video_span(path: str | Path, trim: dict[str, Any]) -> VideoSpan:
    """The (trimmed) range of a video: its first and end frame, and their times.
    A trim that holds no frame is ``InvalidOptions``, as at submit."""
    from engine.video.probe import probe
    from engine.video.segments import trim_range

    info = probe(path)
    timeline = info.timeline
    first, end = trim_range(timeline, trim_output(trim), Path(path).name)
    return VideoSpan(
        frames=len(timeline),
        duration=float(info.duration),
        first=first,
        end=end,
        start_seconds=frame_seconds(timeline, first),
        end_seconds=float(timeline.seconds(end)),
    )


def frame_seconds(timeline, index: int) -> float:
    """Where frame ``index`` starts, in seconds from the first frame."""
    return float(timeline.seconds(index))


class TrackFinder:
    """The studio's passes: set up like a job, run on a worker thread, cached."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self._passes = TimedCache(CACHE_ENTRIES, seconds=CACHE_SECONDS)

    def setup(self, options: dict[str, Any]) -> PassSetup:
        """The form's options parsed and resolved as a submission's would be."""
        from scheduler.swap_task import swap_models
        from scheduler.tasks import SCHEDULER_OPTION_KEYS

        parsed = parse_options(dict(options), extra_keys=SCHEDULER_OPTION_KEYS)
        settings = self.studio.scheduler.config.worker_settings
        models = swap_models(parsed, settings)
        resolved = self.studio.face_engine().resolve_refs(models, parsed.swap)
        return PassSetup(parsed, resolved)

    def key(self, path: str | Path, span: VideoSpan, setup: PassSetup) -> str:
        """What a pass depends on: the file, its range, the face-finding options and models."""
        stat = Path(path).stat()
        finding = {name: getattr(setup.swap, name) for name in ANALYSIS_OPTIONS}
        models = {name: getattr(setup.resolved, name) for name in ANALYSIS_MODELS}
        parts = [
            str(Path(path).resolve()),
            str(stat.st_size),
            str(stat.st_mtime_ns),
            f"{span.first}:{span.end}",
            repr(sorted(finding.items())),
            repr(sorted(models.items())),
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]

    def cached(self, session: str, key: str | None) -> TrackPass | None:
        return self._passes.get((session, key)) if key else None

    def run(
        self,
        session: str,
        path: str | Path,
        setup: PassSetup,
        span: VideoSpan,
        *,
        progress: Callable[[Progress], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> TrackPass:
        """The pass over ``span`` of the video (blocking: call it on a worker thread),
        or the cached one of this session."""
        from engine.video_plan import analyse_target

        key = self.key(path, span, setup)
        found = self.cached(session, key)
        if found is not None:
            return found
        engine = self.studio.face_engine()
        analysis = analyse_target(
            engine,
            setup.resolved,
            setup.swap,
            path,
            setup.output,
            progress=progress,
            cancel=cancel,
        )
        if cancel is not None:
            cancel.raise_if_canceled()
        cards, hidden = track_cards(path, analysis)
        found = TrackPass(key, span, analysis, cards, hidden)
        self._passes.put((session, key), found)
        return found


def track_cards(path: str | Path, analysis: VideoAnalysis) -> tuple[tuple[TrackCard, ...], int]:
    """A card per track (the ``MAX_TRACK_CARDS`` longest, by id), each with a thumbnail
    of the frame where its detection scored highest; and how many were left out."""
    from engine.video.decode import read_frame
    from engine.video.probe import probe

    rows = analysis.rows
    listed = sorted(analysis.tracks, key=lambda t: (-t.frames, t.track_id))[:MAX_TRACK_CARDS]
    listed.sort(key=lambda t: t.track_id)
    best: dict[int, int] = {}  # track id → row of its best face
    for summary in listed:
        mine = np.flatnonzero(rows.track == summary.track_id)
        detected = mine[rows.detected[mine]]
        pool = detected if len(detected) else mine
        best[summary.track_id] = int(pool[np.argmax(rows.score[pool])])
    timeline = probe(path).timeline
    images: dict[int, np.ndarray] = {}
    cards = []
    for summary in listed:
        row = best[summary.track_id]
        frame = int(rows.frame[row])
        if frame not in images:
            images[frame] = read_frame(path, frame)
        box = tuple(float(v) for v in rows.box[row])
        cards.append(
            TrackCard(
                track_id=summary.track_id,
                first_frame=summary.first_frame,
                last_frame=summary.last_frame,
                frames=summary.frames,
                first_seconds=frame_seconds(timeline, summary.first_frame),
                last_seconds=frame_seconds(timeline, summary.last_frame),
                thumbnail=jpeg_data_uri(face_thumbnail(images[frame], box)),
                thumb_frame=frame,
                thumb_box=box,  # type: ignore[arg-type]
            )
        )
    return tuple(cards), len(analysis.tracks) - len(listed)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N×4) with every box of ``b`` (M×4)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def match_tracks(
    boxes: Sequence[Sequence[float]], tracked: Sequence[TrackedFace], min_iou: float = MIN_IOU
) -> dict[int, int]:
    """Box index → track id, one to one, greedily by overlap (at least ``min_iou``)."""
    if not len(boxes) or not tracked:
        return {}
    overlap = box_iou(np.asarray(boxes), np.array([t.face.box for t in tracked]))
    matched: dict[int, int] = {}
    taken: set[int] = set()
    for flat in np.argsort(-overlap, axis=None):
        row, col = divmod(int(flat), overlap.shape[1])
        if overlap[row, col] < min_iou:
            break
        if row in matched or col in taken:
            continue
        matched[row] = tracked[col].track_id
        taken.add(col)
    return matched


def frame_faces(studio: Studio, setup: PassSetup, image: np.ndarray) -> list:
    """The faces of one frame as the preview's swapper finds them when ``face_map`` is
    set (``FrameSwapper.assignments``: detect, annotate, filter), left to right."""
    faces = studio.face_engine().job_faces(image, setup.resolved, setup.swap)
    return left_to_right(faces)


def preview_face_map(
    faces: Sequence, tracked: Sequence[TrackedFace], assigned: dict[int, int]
) -> list[dict[str, int]]:
    """``face`` entries for one previewed frame: each of its ``faces`` (left to right)
    that overlaps a track with a source takes that source."""
    by_box = match_tracks([face.box for face in faces], tracked)
    return [
        {"source": assigned[track], "face": index}
        for index, track in sorted(by_box.items())
        if track in assigned
    ]


def first_frame_tracks(found: TrackPass, boxes: Sequence[Sequence[float]], frame: int):
    """The first-frame face cards' boxes (at ``frame``) matched to the pass's tracks:
    face index → track id, so choices made before the pass carry over."""
    return match_tracks(boxes, found.analysis.faces_at(frame))


__all__ = [
    "MAX_TRACK_CARDS",
    "PassSetup",
    "TrackCard",
    "TrackFinder",
    "TrackPass",
    "VideoSpan",
    "box_iou",
    "frame_faces",
    "match_tracks",
    "preview_face_map",
    "track_cards",
    "video_span",
]
