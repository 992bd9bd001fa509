"""Identity decisions per track, not per frame: the reference lock and ``face_map``.

A single frame's embedding can be off (blur, a turned head, an occluding hand), so a
track is judged by the MEDIAN cosine distance of several of its frames to the
reference: once matched, a face stays swapped for its track's whole life, and a face
that never matched is never swapped for a stray frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from engine.face_order import centre_x

if TYPE_CHECKING:
    from engine.tracking.tracker import TrackedFace


def normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    return vectors / (np.linalg.norm(vectors, axis=-1, keepdims=True) + 1e-12)


def cosine_distances(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """1 − cosine similarity of each row of ``vectors`` to ``reference`` (0 … 2), the
    same measure as ``engine.pipeline.cosine_distance``."""
    return 1.0 - normalised(vectors) @ normalised(reference)[0]


def track_distance(
    embeddings: Sequence[np.ndarray], reference: np.ndarray, min_frames: int
) -> float:
    """A track's distance to ``reference``: the median over its frames; with fewer than
    ``min_frames`` frames, the largest (each of its few frames must match, so a
    one-frame stray is judged strictly). ``inf`` for a track without embeddings."""
    if len(embeddings) == 0:
        return float("inf")
    distances = cosine_distances(np.stack(list(embeddings)), reference)
    if len(distances) < min_frames:
        return float(distances.max())
    return float(np.median(distances))


def decide_tracks(
    embeddings_by_track: Mapping[int, Sequence[np.ndarray]],
    reference: np.ndarray,
    threshold: float,
    min_frames: int = 3,
) -> dict[int, bool]:
    """Track id → swapped (its distance to ``reference`` is at most ``threshold``,
    the ``reference_distance`` option's ``<=`` rule)."""
    return {
        track: track_distance(embeddings, reference, min_frames) <= threshold
        for track, embeddings in embeddings_by_track.items()
    }


def assign_sources(
    embeddings_by_track: Mapping[int, Sequence[np.ndarray]],
    references: Sequence[np.ndarray],
    threshold: float,
    min_frames: int = 3,
) -> dict[int, int]:
    """Track id → index of the nearest reference (one per ``reference`` image), for
    tracks whose distance to it is at most ``threshold``; each track gets at most one
    reference, and one person may appear as several tracks (cuts, re-entries), so a
    reference may be chosen by several tracks. Unmatched tracks are absent."""
    assigned: dict[int, int] = {}
    if not references:
        return assigned
    for track, embeddings in embeddings_by_track.items():
        distances = [track_distance(embeddings, ref, min_frames) for ref in references]
        best = int(np.argmin(distances))
        if distances[best] <= threshold:
            assigned[track] = best
    return assigned


def tracks_by_face_index(faces: Sequence[TrackedFace]) -> dict[int, int]:
    """Face index → track id for the faces of one frame, faces counted LEFT TO RIGHT by
    box centre (``engine.face_order.left_to_right``, the numbering of every face index)."""
    ordered = sorted(faces, key=lambda tracked: centre_x(tracked.face))
    return {index: tracked.track_id for index, tracked in enumerate(ordered)}
