"""Faces followed across frames as tracks with stable ids.

Per frame: every track's box is predicted by its motion model (``BoxKalman``); the
detections are assigned to tracks by a Hungarian assignment on a cost mixing the
overlap with the predicted box and, where an embedder is given, the cosine distance
between embeddings (a detection far from a track's identity is never given to it,
which keeps ids apart when two faces cross). A track that misses a detection is
carried on its prediction for ``max_missed`` frames, then kept as lost so that the
face is re-identified when it comes back: by embedding for ``reid_frames`` frames,
or, without embeddings, by position and size within ``reid_gap`` frames. Each
track's box and landmarks are smoothed by One Euro filters, so the faces it reports
are steady when still and follow without lag when moving.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from engine.errors import InvalidOptions
from engine.faces import Face
from engine.tracking.filters import OneEuroFilter, OneEuroParams
from engine.tracking.identity import normalised
from engine.tracking.motion import BoxKalman, box_to_xyah, iou_matrix

Embedder = Callable[[np.ndarray, Face], np.ndarray]

_INFEASIBLE = 1e6


@dataclass(frozen=True)
class TrackerSettings:
    """How faces are followed and smoothed; see the module docstring.

    ``smoothing``: the ``temporal_smoothing`` strength (0 = off); ``max_missed``: frames
    a track is carried on its prediction when detection misses it; ``min_hits``:
    detections in a row that confirm a track started in the middle of a shot (a
    shot's first faces are confirmed at once); ``reid_frames`` /
    ``reid_gap``: how long a lost track can be re-identified with / without
    embeddings; ``min_iou``: least overlap with the predicted box to match;
    ``match_distance``: largest embedding distance for a match (above it boxes do not
    matter); ``reid_distance``: largest embedding distance to re-identify a lost
    track; ``embedding_weight``: share of the embedding distance in the match cost;
    ``scene_cut``: the scene-cut threshold of ``analyse`` (0 disables cut detection);
    ``embedding_samples``: embeddings kept per track for identity decisions (evenly
    spread over the track, between this many and twice as many).
    """

    smoothing: float = 0.8
    max_missed: int = 2
    min_hits: int = 2
    reid_frames: int = 90
    reid_gap: int = 12
    min_iou: float = 0.2
    match_distance: float = 0.8
    reid_distance: float = 0.6
    embedding_weight: float = 0.5
    scene_cut: float = 0.3
    embedding_samples: int = 16

    def __post_init__(self) -> None:
        if not 0.0 <= self.smoothing <= 0.95:
            raise InvalidOptions(f"temporal_smoothing must be in [0, 0.95], got {self.smoothing}")
        if self.min_hits < 1:
            raise InvalidOptions(f"tracker min_hits must be ≥ 1, got {self.min_hits}")
        for name in ("max_missed", "reid_frames", "reid_gap"):
            if getattr(self, name) < 0:
                raise InvalidOptions(f"tracker {name} must be ≥ 0, got {getattr(self, name)}")
        if self.embedding_samples < 1:
            raise InvalidOptions("tracker embedding_samples must be ≥ 1")
        if not 0.0 <= self.embedding_weight <= 1.0:
            raise InvalidOptions("tracker embedding_weight must be in [0, 1]")

    @classmethod
    def from_options(cls, options: object, **overrides) -> TrackerSettings:
        """Settings for a job: its ``temporal_smoothing`` strength, other fields default."""
        return cls(smoothing=float(getattr(options, "temporal_smoothing", 0.0)), **overrides)


@dataclass(frozen=True)
class TrackedFace:
    """A face of one frame on its track. ``face`` holds the smoothed box and landmarks;
    ``detected`` is False where the face was carried by the motion model (no detection
    ran on the frame, or the detector missed the face)."""

    track_id: int
    face: Face
    detected: bool


class EmbeddingSample:
    """A bounded, evenly spread sample of a track's (normalised) embeddings: every
    ``stride``-th one is kept and, when the sample reaches twice ``size``, every other
    one is dropped and the stride doubles."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: list[np.ndarray] = []
        self._stride = 1
        self._seen = 0

    def add(self, vector: np.ndarray) -> None:
        if self._seen % self._stride == 0:
            self.items.append(vector)
            if len(self.items) >= 2 * self.size:
                self.items = self.items[::2]
                self._stride *= 2
        self._seen += 1


class FaceSmoother:
    """One Euro filters for one track's box and landmarks (speeds relative to the face's
    box diagonal, so every face size is smoothed alike)."""

    def __init__(self, params: OneEuroParams) -> None:
        self.params = params
        self.reset()

    def reset(self) -> None:
        make = lambda: OneEuroFilter.from_params(self.params)  # noqa: E731
        self._box, self._five, self._many = make(), make(), make()

    def __call__(self, face: Face, t: float) -> Face:
        if self._box is None:
            return face
        box = np.asarray(face.box, dtype=np.float64)
        scale = float(np.hypot(box[2] - box[0], box[3] - box[1]))
        smoothed_box = self._box(box.reshape(2, 2), t, scale).reshape(4)
        landmarks = self._five(face.landmarks, t, scale)
        many = face.landmarks_68
        if many is not None:
            many = self._many(many, t, scale).astype(np.float32)
        return replace(
            face,
            box=smoothed_box.astype(np.float32),
            landmarks=landmarks.astype(np.float32),
            landmarks_68=many,
        )


@dataclass
class _Track:
    track_id: int | None  # None while tentative
    kalman: BoxKalman
    anchor: Face  # the last detection
    anchor_state: np.ndarray  # the filter's [cx, cy, a, h] right after that detection
    smoother: FaceSmoother
    samples: EmbeddingSample
    identity: np.ndarray | None = None  # running mean of normalised embeddings
    last_detected: int = 0
    missed: int = 0
    hits: int = 1
    pending: list[tuple[int, Face, bool]] = field(default_factory=list)

    def carried_face(self) -> Face:
        """The last detection moved to the predicted box (scaled about its centre)."""
        state = box_to_xyah(self.kalman.box)
        anchor = self.anchor_state
        scale = state[3] / max(anchor[3], 1e-6)
        offset = state[:2] - scale * anchor[:2]

        def move(points: np.ndarray | None) -> np.ndarray | None:
            if points is None:
                return None
            return (np.asarray(points, dtype=np.float64) * scale + offset).astype(np.float32)

        box = np.asarray(self.anchor.box, dtype=np.float64).reshape(2, 2)
        return replace(
            self.anchor,
            box=move(box).reshape(4),
            landmarks=move(self.anchor.landmarks),
            landmarks_68=move(self.anchor.landmarks_68),
            embedding=None,
        )


class FaceTracker:
    """Follows faces across the frames of one scene; see the module docstring.

    ``update`` must be called with increasing frame indices. ``reset`` (a scene cut)
    ends every track; ids keep counting, so an id is never reused in one video.
    """

    def __init__(self, settings: TrackerSettings | None = None, embed: Embedder | None = None):
        self.settings = settings or TrackerSettings()
        self.embed = embed
        self._params = OneEuroParams.from_strength(self.settings.smoothing)
        self._tracks: list[_Track] = []
        self._ended: dict[int, EmbeddingSample] = {}
        self._next_id = 0
        self._frame: int | None = None
        self._first = True  # the next detections are the shot's first
        self._backfill: list[tuple[int, TrackedFace]] = []

    # -- public ------------------------------------------------------------------------

    def update(
        self, frame_index: int, faces: Sequence[Face] | None, frame: np.ndarray | None = None
    ) -> list[TrackedFace]:
        """The tracked faces of this frame, in track-id order.

        ``faces`` None: no detection ran on this frame; every live track is carried by
        its motion model. Otherwise the detections are matched, new faces start tracks
        and faces missed for more than ``max_missed`` frames stop being reported.
        ``frame`` is needed only to embed faces that carry no embedding yet.

        A face that appears in the middle of a shot starts a tentative track, confirmed
        (given its id) by ``min_hits`` detections in a row and dropped at its first
        miss, so a half-hidden face's odd detections do not become tracks; the faces of
        a confirmed track's tentative frames are then handed out by ``take_backfill``.
        Faces of a shot's first detection are confirmed at once."""
        dt = 1.0 if self._frame is None else float(frame_index - self._frame)
        self._frame = frame_index
        for track in self._tracks:
            track.kalman.predict(dt)
        detected: set[int] = set()
        if faces is not None:
            detections = list(faces)
            embeddings = [self._embedding(face, frame) for face in detections]
            matched = self._associate(frame_index, detections, embeddings)
            for track_index, index in matched:
                track = self._tracks[track_index]
                self._absorb(track, frame_index, detections[index], embeddings[index])
                detected.add(id(track))
            taken = {index for _, index in matched}
            for index, face in enumerate(detections):
                if index not in taken and not self._held_back(frame_index, face, detected):
                    track = self._start(frame_index, face, embeddings[index], self._first)
                    detected.add(id(track))
            self._first = False
            for track in self._tracks:
                if id(track) not in detected:
                    track.missed += 1
            self._tracks = [t for t in self._tracks if t.track_id is not None or t.missed == 0]
            self._expire(frame_index)
        reported: list[TrackedFace] = []
        for track in self._tracks:
            if track.missed > self.settings.max_missed:
                continue
            is_detected = id(track) in detected
            face = track.anchor if is_detected else track.carried_face()
            face = track.smoother(face, frame_index)
            if track.track_id is None:
                if track.hits < self.settings.min_hits:
                    track.pending.append((frame_index, face, is_detected))
                    continue
                self._confirm(track)
            reported.append(TrackedFace(track.track_id, face, is_detected))
        return sorted(reported, key=lambda tracked: tracked.track_id)

    def take_backfill(self) -> list[tuple[int, TrackedFace]]:
        """(frame index, face) of tracks confirmed since the last call, for the frames
        before their confirmation (the confirming frame is in ``update``'s answer)."""
        backfill, self._backfill = self._backfill, []
        return backfill

    def reset(self) -> None:
        """End every track (a scene cut): the next faces start new tracks."""
        for track in self._tracks:
            if track.track_id is not None:
                self._ended[track.track_id] = track.samples
        self._tracks = []
        self._frame = None
        self._first = True

    def embeddings(self) -> dict[int, list[np.ndarray]]:
        """Every track's embedding sample (ended tracks included), for identity decisions."""
        result = {track_id: list(sample.items) for track_id, sample in self._ended.items()}
        for track in self._tracks:
            if track.track_id is not None:
                result[track.track_id] = list(track.samples.items)
        return dict(sorted(result.items()))

    @property
    def next_id(self) -> int:
        return self._next_id

    # -- steps -------------------------------------------------------------------------

    def _embedding(self, face: Face, frame: np.ndarray | None) -> np.ndarray | None:
        if face.embedding is None and self.embed is not None and frame is not None:
            face.embedding = np.asarray(self.embed(frame, face), dtype=np.float32)
        if face.embedding is None:
            return None
        return normalised(face.embedding)[0]

    def _associate(
        self, frame_index: int, detections: list[Face], embeddings: list[np.ndarray | None]
    ) -> list[tuple[int, int]]:
        """(track index, detection index) pairs: live tracks by overlap and identity,
        then what is left by re-identification."""
        settings = self.settings
        if not detections or not self._tracks:
            return []
        boxes = np.stack([np.asarray(face.box, dtype=np.float64) for face in detections])
        live = [i for i, t in enumerate(self._tracks) if t.missed <= settings.max_missed]
        pairs: list[tuple[int, int]] = []
        if live:
            predicted = np.stack([self._tracks[i].kalman.box for i in live])
            overlap = iou_matrix(predicted, boxes)
            cost = np.where(overlap >= settings.min_iou, 1.0 - overlap, _INFEASIBLE)
            for row, track_index in enumerate(live):
                identity = self._tracks[track_index].identity
                for col, embedding in enumerate(embeddings):
                    if identity is None or embedding is None or cost[row, col] >= _INFEASIBLE:
                        continue
                    distance = float(1.0 - identity @ embedding)
                    if distance > settings.match_distance:
                        cost[row, col] = _INFEASIBLE
                    else:
                        w = settings.embedding_weight
                        cost[row, col] = (1 - w) * cost[row, col] + w * min(distance, 1.0)
            pairs += [(live[r], c) for r, c in _assign(cost)]
        taken_tracks = {t for t, _ in pairs}
        taken = {d for _, d in pairs}
        rest = [d for d in range(len(detections)) if d not in taken]
        candidates = [i for i in range(len(self._tracks)) if i not in taken_tracks]
        if rest and candidates:
            pairs += self._reidentify(frame_index, candidates, rest, boxes, embeddings)
        return pairs

    def _reidentify(
        self,
        frame_index: int,
        candidates: list[int],
        rest: list[int],
        boxes: np.ndarray,
        embeddings: list[np.ndarray | None],
    ) -> list[tuple[int, int]]:
        """Unmatched tracks (lost ones, or live ones whose face jumped) against the
        unmatched detections: by embedding where both have one, else by position and
        size within ``reid_gap`` frames of the track's last detection."""
        settings = self.settings
        cost = np.full((len(candidates), len(rest)), _INFEASIBLE)
        for row, track_index in enumerate(candidates):
            track = self._tracks[track_index]
            gap = frame_index - track.last_detected
            last_box = np.asarray(track.anchor.box, dtype=np.float64)
            for col, detection_index in enumerate(rest):
                embedding = embeddings[detection_index]
                if track.identity is not None and embedding is not None:
                    distance = float(1.0 - track.identity @ embedding)
                    if distance <= settings.reid_distance and gap <= settings.reid_frames:
                        cost[row, col] = distance
                    continue
                if gap > settings.reid_gap:
                    continue
                box = boxes[detection_index]
                overlap = max(
                    iou_matrix(track.kalman.box, box)[0, 0], iou_matrix(last_box, box)[0, 0]
                )
                ratio = (box[3] - box[1]) / max(last_box[3] - last_box[1], 1e-6)
                if overlap >= settings.min_iou and 2 / 3 <= ratio <= 3 / 2:
                    cost[row, col] = 1.0 - overlap
        return [(candidates[r], rest[c]) for r, c in _assign(cost)]

    def _held_back(self, frame_index: int, face: Face, detected: set[int]) -> bool:
        """Whether an unmatched detection sits where a confirmed track that missed this
        frame is predicted (within ``reid_gap`` frames of its last detection): most
        likely that face, half hidden, its embedding spoilt. It starts no track; the
        track is re-identified when the face is whole again."""
        box = np.asarray(face.box, dtype=np.float64)
        for track in self._tracks:
            if track.track_id is None or id(track) in detected:
                continue
            if frame_index - track.last_detected > self.settings.reid_gap:
                continue
            if iou_matrix(track.kalman.box, box)[0, 0] >= self.settings.min_iou:
                return True
        return False

    def _start(
        self, frame_index: int, face: Face, embedding: np.ndarray | None, confirmed: bool
    ) -> _Track:
        kalman = BoxKalman(face.box)
        track = _Track(
            track_id=None,
            kalman=kalman,
            anchor=face,
            anchor_state=kalman.mean[:4].copy(),
            smoother=FaceSmoother(self._params),
            samples=EmbeddingSample(self.settings.embedding_samples),
            last_detected=frame_index,
        )
        self._tracks.append(track)
        self._remember(track, embedding)
        if confirmed:
            self._confirm(track)
        return track

    def _confirm(self, track: _Track) -> None:
        track.track_id = self._next_id
        self._next_id += 1
        self._backfill += [
            (frame_index, TrackedFace(track.track_id, face, detected))
            for frame_index, face, detected in track.pending
        ]
        track.pending = []

    def _absorb(
        self, track: _Track, frame_index: int, face: Face, embedding: np.ndarray | None
    ) -> None:
        if track.missed > self.settings.max_missed:
            # Re-identified after being lost: the face may be anywhere, start afresh.
            track.kalman = BoxKalman(face.box)
            track.smoother.reset()
        else:
            track.kalman.update(face.box)
        track.anchor = face
        track.anchor_state = track.kalman.mean[:4].copy()
        track.last_detected = frame_index
        track.missed = 0
        track.hits += 1
        self._remember(track, embedding)

    def _remember(self, track: _Track, embedding: np.ndarray | None) -> None:
        if embedding is None:
            return
        track.samples.add(embedding)
        if track.identity is None:
            track.identity = embedding
        else:
            # A slowly moving identity (BoT-SORT's 0.9 momentum): a pose change shifts it
            # a little, one odd frame does not replace it.
            track.identity = normalised(0.9 * track.identity + 0.1 * embedding)[0]

    def _expire(self, frame_index: int) -> None:
        keep = []
        for track in self._tracks:
            limit = (
                self.settings.reid_frames if track.identity is not None else self.settings.reid_gap
            )
            gone = track.missed > self.settings.max_missed and (
                frame_index - track.last_detected > max(limit, self.settings.max_missed)
            )
            if gone:
                self._ended[track.track_id] = track.samples
            else:
                keep.append(track)
        self._tracks = keep

    def _report(self, track: _Track, frame_index: int, detection: Face | None) -> TrackedFace:
        face = detection if detection is not None else track.carried_face()
        return TrackedFace(track.track_id, track.smoother(face, frame_index), detection is not None)


def _assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one assignment (Hungarian, where scipy is installed: it is a
    development dependency only), feasible pairs only; else greedy, cheapest first."""
    if cost.size == 0:
        return []
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return _assign_greedy(cost)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < _INFEASIBLE]


def _assign_greedy(cost: np.ndarray) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    for flat in np.argsort(cost, axis=None, kind="stable"):
        row, col = (int(v) for v in np.unravel_index(flat, cost.shape))
        if cost[row, col] >= _INFEASIBLE:
            break
        if row not in used_rows and col not in used_cols:
            pairs.append((row, col))
            used_rows.add(row)
            used_cols.add(col)
    return pairs
