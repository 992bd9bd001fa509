"""The whole-video analysis pass and the record it leaves with the job.

``analyse`` runs once over the (trimmed) video: scene-cut check, detection on every
``detect_every``-th frame of a shot (and on the first frame after a cut), tracking,
smoothing. ``VideoAnalysis`` is what it leaves: per analysed frame the tracked faces
(track id, smoothed box and landmarks, whether detected) and per track a summary with
its identity decision, so that every segment of the job, on any device, swaps what the
pass decided and a resumed job reuses it. It is stored as flat numpy arrays in one
compressed ``.npz`` (no pickle), written atomically.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.atomic import write_atomic
from engine.errors import InvalidInput, InvalidOptions
from engine.faces import Face
from engine.progress import CancelToken
from engine.tracking.offline import smooth_rows
from engine.tracking.scenecut import SceneCutDetector
from engine.tracking.tracker import Embedder, FaceTracker, TrackedFace, TrackerSettings

FORMAT_VERSION = 1
Source = int | list[int] | None


@dataclass(frozen=True)
class TrackSummary:
    """One track over the video: where it starts and ends (absolute frame numbers), on
    how many frames it is reported, and the decisions taken for it (None = undecided):
    whether it is swapped and with which source (an uploaded source's index, or a list
    of indices averaged into one identity)."""

    track_id: int
    first_frame: int
    last_frame: int
    frames: int
    swapped: bool | None = None
    source: Source = None

    def to_json(self) -> dict:
        return {
            "id": self.track_id,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "frames": self.frames,
            "swapped": self.swapped,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> TrackSummary:
        source = data.get("source")
        return cls(
            track_id=int(data["id"]),
            first_frame=int(data["first_frame"]),
            last_frame=int(data["last_frame"]),
            frames=int(data["frames"]),
            swapped=None if data.get("swapped") is None else bool(data["swapped"]),
            source=list(source) if isinstance(source, list) else source,
        )


@dataclass(frozen=True, eq=False)
class FaceRows:
    """The tracked faces of every frame as flat arrays, sorted by frame then track.

    Row i: ``frame[i]``, ``track[i]``, ``box[i]`` (4), ``score[i]``, ``landmarks[i]``
    (5×2), ``detected[i]``; ``row68[i]`` indexes ``landmarks_68`` (M×68×2) or is −1."""

    frame: np.ndarray
    track: np.ndarray
    box: np.ndarray
    score: np.ndarray
    landmarks: np.ndarray
    detected: np.ndarray
    row68: np.ndarray
    landmarks_68: np.ndarray

    @classmethod
    def from_faces(cls, entries: Sequence[tuple[int, TrackedFace]]) -> FaceRows:
        entries = sorted(entries, key=lambda entry: (entry[0], entry[1].track_id))
        many = [tracked.face.landmarks_68 for _, tracked in entries]
        row68 = np.full(len(entries), -1, dtype=np.int32)
        stacked = []
        for index, points in enumerate(many):
            if points is not None:
                row68[index] = len(stacked)
                stacked.append(np.asarray(points, dtype=np.float32).reshape(68, 2))
        return cls(
            frame=np.array([f for f, _ in entries], dtype=np.int64),
            track=np.array([t.track_id for _, t in entries], dtype=np.int32),
            box=np.array([t.face.box for _, t in entries], dtype=np.float32).reshape(-1, 4),
            score=np.array([t.face.score for _, t in entries], dtype=np.float32),
            landmarks=np.array([t.face.landmarks for _, t in entries], dtype=np.float32).reshape(
                -1, 5, 2
            ),
            detected=np.array([t.detected for _, t in entries], dtype=bool),
            row68=row68,
            landmarks_68=np.array(stacked, dtype=np.float32).reshape(-1, 68, 2),
        )

    @classmethod
    def concatenate(cls, blocks: Sequence[FaceRows]) -> FaceRows:
        """One table of the rows of ``blocks``, sorted by frame then track."""
        if not blocks:
            return cls.from_faces([])
        offsets = np.cumsum([0] + [len(block.landmarks_68) for block in blocks[:-1]])
        row68 = np.concatenate(
            [
                np.where(block.row68 >= 0, block.row68 + offset, -1).astype(np.int32)
                for block, offset in zip(blocks, offsets, strict=True)
            ]
        )
        joined = {
            name: np.concatenate([getattr(block, name) for block in blocks])
            for name in ("frame", "track", "box", "score", "landmarks", "detected")
        }
        order = np.lexsort((joined["track"], joined["frame"]))
        return cls(
            **{name: value[order] for name, value in joined.items()},
            row68=row68[order],
            landmarks_68=np.concatenate([block.landmarks_68 for block in blocks]),
        )

    def at(self, frame_index: int) -> list[TrackedFace]:
        start = int(np.searchsorted(self.frame, frame_index, side="left"))
        stop = int(np.searchsorted(self.frame, frame_index, side="right"))
        return [self._face(i) for i in range(start, stop)]

    def _face(self, i: int) -> TrackedFace:
        many = self.landmarks_68[self.row68[i]].copy() if self.row68[i] >= 0 else None
        face = Face(
            box=self.box[i].copy(),
            score=float(self.score[i]),
            landmarks=self.landmarks[i].copy(),
            landmarks_68=many,
        )
        return TrackedFace(int(self.track[i]), face, bool(self.detected[i]))

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, eq=False)
class VideoAnalysis:
    """What the analysis pass found; see the module docstring.

    ``frames``: the analysed frame numbers (absolute, ascending); ``cuts``: frames that
    start a new shot; ``embeddings``: per track a sample of its normalised embeddings
    (k × D), what identity decisions are taken from (empty without a recognizer)."""

    frames: np.ndarray
    cuts: tuple[int, ...]
    rows: FaceRows
    tracks: tuple[TrackSummary, ...]
    embeddings: Mapping[int, np.ndarray] = field(default_factory=dict)

    # -- reading -------------------------------------------------------------------------

    def faces_at(self, frame_index: int) -> list[TrackedFace]:
        """The tracked faces of ``frame_index`` (absolute), in track-id order; [] for a
        frame without faces or outside the analysed range."""
        return self.rows.at(frame_index)

    def first_faces(self) -> tuple[int, list[TrackedFace]] | None:
        """The first frame that has faces, and its faces (what ``face`` entries of
        ``face_map`` number, left to right); None when no frame has any."""
        if len(self.rows.frame) == 0:
            return None
        first = int(self.rows.frame[0])
        return first, self.faces_at(first)

    def track(self, track_id: int) -> TrackSummary:
        for summary in self.tracks:
            if summary.track_id == track_id:
                return summary
        raise InvalidInput(f"the video analysis has no track {track_id}")

    @property
    def embeddings_by_track(self) -> dict[int, list[np.ndarray]]:
        """Track id → list of embeddings, every track present (empty without any)."""
        return {
            summary.track_id: list(self.embeddings.get(summary.track_id, np.zeros((0, 0))))
            for summary in self.tracks
        }

    def tracks_json(self) -> list[dict]:
        """The tracks for the job's result: id, first/last frame, frames, swapped, source."""
        return [summary.to_json() for summary in self.tracks]

    # -- decisions -----------------------------------------------------------------------

    def with_decisions(
        self,
        swapped: Mapping[int, bool],
        sources: Mapping[int, Source] | None = None,
    ) -> VideoAnalysis:
        """A copy whose tracks carry these decisions (tracks not named keep theirs)."""
        sources = sources or {}
        tracks = tuple(
            replace(
                summary,
                swapped=bool(swapped[summary.track_id])
                if summary.track_id in swapped
                else summary.swapped,
                source=sources.get(summary.track_id, summary.source),
            )
            for summary in self.tracks
        )
        return replace(self, tracks=tracks)

    # -- storage -------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the analysis to ``path`` (an ``.npz``), atomically."""
        track_ids = sorted(self.embeddings)
        vectors = [np.asarray(self.embeddings[t], dtype=np.float32) for t in track_ids]
        width = max((v.shape[-1] for v in vectors if v.size), default=0)
        meta = {
            "version": FORMAT_VERSION,
            "cuts": list(self.cuts),
            "tracks": self.tracks_json(),
        }
        arrays = {f"rows_{name}": value for name, value in self.rows.arrays().items()}
        arrays["frames"] = np.asarray(self.frames, dtype=np.int64)
        arrays["embedding_track"] = np.concatenate(
            [np.full(len(v), t, dtype=np.int32) for t, v in zip(track_ids, vectors, strict=True)]
            or [np.zeros(0, dtype=np.int32)]
        )
        arrays["embedding"] = (
            np.concatenate([v.reshape(-1, width) for v in vectors if v.size], axis=0)
            if width
            else np.zeros((0, 0), dtype=np.float32)
        )
        arrays["meta"] = np.array(json.dumps(meta))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        write_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> VideoAnalysis:
        """Read what ``save`` wrote; a missing, damaged or foreign file is ``InvalidInput``."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("version") != FORMAT_VERSION:
                    raise InvalidInput(
                        f"video analysis {path.name} has format version {meta.get('version')}, "
                        f"expected {FORMAT_VERSION}"
                    )
                rows = FaceRows(
                    **{name: data[f"rows_{name}"] for name in FaceRows.__dataclass_fields__}
                )
                frames = data["frames"]
                owners, vectors = data["embedding_track"], data["embedding"]
        except (OSError, KeyError, ValueError) as exc:
            raise InvalidInput(f"cannot read video analysis {path.name}: {exc}") from exc
        embeddings = {int(t): vectors[owners == t] for t in np.unique(owners)}
        tracks = tuple(TrackSummary.from_json(entry) for entry in meta["tracks"])
        return cls(frames, tuple(int(c) for c in meta["cuts"]), rows, tracks, embeddings)


class AnalysisRecorder:
    """Collects the pass's frames, cuts and tracked faces and builds a ``VideoAnalysis``
    (for callers that drive the tracker themselves; ``analyse`` uses it). Faces are
    packed into arrays every ``BLOCK`` faces, so a long video costs bytes per face,
    not Python objects."""

    BLOCK = 4096

    def __init__(self) -> None:
        self._frames: list[int] = []
        self._cuts: list[int] = []
        self._entries: list[tuple[int, TrackedFace]] = []
        self._blocks: list[FaceRows] = []

    def cut(self, frame_index: int) -> None:
        self._cuts.append(int(frame_index))

    def add(self, frame_index: int, faces: Sequence[TrackedFace]) -> None:
        """The faces of an analysed frame."""
        self._frames.append(int(frame_index))
        self.add_late([(frame_index, tracked) for tracked in faces])

    def add_late(self, entries: Sequence[tuple[int, TrackedFace]]) -> None:
        """Faces of frames already added (``FaceTracker.take_backfill``)."""
        self._entries += [(int(frame_index), tracked) for frame_index, tracked in entries]
        if len(self._entries) >= self.BLOCK:
            self._blocks.append(FaceRows.from_faces(self._entries))
            self._entries = []

    def build(self, embeddings: Mapping[int, Sequence[np.ndarray]] | None = None) -> VideoAnalysis:
        rows = FaceRows.concatenate([*self._blocks, FaceRows.from_faces(self._entries)])
        tracks = _summaries(rows)
        stacked = {
            track: np.stack([np.asarray(v, dtype=np.float32) for v in vectors])
            for track, vectors in (embeddings or {}).items()
            if len(vectors)
        }
        return VideoAnalysis(
            frames=np.array(sorted(self._frames), dtype=np.int64),
            cuts=tuple(self._cuts),
            rows=rows,
            tracks=tracks,
            embeddings=stacked,
        )


def _summaries(rows: FaceRows) -> tuple[TrackSummary, ...]:
    if len(rows.track) == 0:
        return ()
    order = np.argsort(rows.track, kind="stable")
    tracks, frames = rows.track[order], rows.frame[order]
    ids, starts, counts = np.unique(tracks, return_index=True, return_counts=True)
    first = np.minimum.reduceat(frames, starts)
    last = np.maximum.reduceat(frames, starts)
    return tuple(
        TrackSummary(int(i), int(f), int(la), int(c))
        for i, f, la, c in zip(ids, first, last, counts, strict=True)
    )


def analyse(
    frames: Iterable[tuple[int, np.ndarray]],
    detect: Callable[[np.ndarray], list[Face]],
    settings: TrackerSettings | None = None,
    embed: Embedder | None = None,
    detect_every: int = 1,
    progress: Callable[[int], None] | None = None,
    cancel: CancelToken | None = None,
) -> VideoAnalysis:
    """One pass over ``frames`` ((absolute frame number, BGR image) pairs, in order).

    Per frame: scene-cut check (``settings.scene_cut``; a cut ends every track), then
    detection on the first frame of each shot and every ``detect_every``-th frame after
    it (``detect`` returns the faces to track: filtered, with landmarks, with embeddings
    if it embeds itself), else the tracks are carried; ``embed`` embeds the detections
    that have none. ``progress(n)`` after each frame with the number done; ``cancel``
    is checked before each frame (``Canceled``). The tracker runs unsmoothed; once the
    pass has seen every frame, each track is smoothed with zero lag
    (``offline.smooth_rows``, strength ``settings.smoothing``)."""
    settings = settings or TrackerSettings()
    if detect_every < 1:
        raise InvalidOptions(f"detect_every must be ≥ 1, got {detect_every}")
    tracker = FaceTracker(replace(settings, smoothing=0.0), embed)
    cuts = SceneCutDetector(settings.scene_cut) if settings.scene_cut > 0 else None
    recorder = AnalysisRecorder()
    since_detection: int | None = None
    for done, (frame_index, frame) in enumerate(frames, start=1):
        if cancel is not None:
            cancel.raise_if_canceled()
        if cuts is not None and cuts.is_cut(frame):
            tracker.reset()
            recorder.cut(frame_index)
            since_detection = None
        run_detection = since_detection is None or since_detection >= detect_every - 1
        if run_detection:
            faces = tracker.update(frame_index, detect(frame), frame)
            since_detection = 0
        else:
            faces = tracker.update(frame_index, None, frame)
            since_detection += 1
        recorder.add(frame_index, faces)
        recorder.add_late(tracker.take_backfill())
        if progress is not None:
            progress(done)
    analysis = recorder.build(tracker.embeddings())
    rows = smooth_rows(analysis.rows, analysis.frames, analysis.cuts, settings.smoothing)
    return replace(analysis, rows=rows)
