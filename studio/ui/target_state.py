"""The Create panel's first target as the page holds it: its faces (or, after a video's
tracking pass, its tracks), the reference picked among them and the source chosen for
each; and the steps that turn those choices into a submission's ``face_map``."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import numpy as np

from engine import imageio
from studio.core import Studio
from studio.limits import display_name
from studio.ui import live_preview
from studio.ui import tracks as video_tracks

MAX_CARDS = 24  # faces (or tracks) the page shows and takes choices for
_REVISIONS = itertools.count(1)  # every state the page is given has a newer number


@dataclasses.dataclass
class TargetFaces:
    """The first target: its faces left to right (boxes and thumbnails) in frame
    ``first_frame`` (a video's first frame of the trimmed range ``trim``), the face
    picked as the reference, the source assigned to each face, and a video's length.

    After a video's tracking pass (``tracks_key`` names it), the cards are its tracks:
    ``track_assigned`` (track → source) and ``picked_track`` replace the face choices."""

    path: str | None = None
    kind: str = "image"  # "image" | "video"
    boxes: list[list[float]] = dataclasses.field(default_factory=list)
    thumbs: list[str] = dataclasses.field(default_factory=list)  # data URIs
    details: list[str] = dataclasses.field(default_factory=list)  # age/gender per face
    picked: int | None = None
    assigned: dict[int, int] = dataclasses.field(default_factory=dict)  # face → source
    frames: int = 1
    duration: float | None = None
    first_frame: int = 0
    trim: dict[str, float] = dataclasses.field(default_factory=dict)
    tracks: tuple[video_tracks.TrackCard, ...] = ()
    tracks_key: str | None = None
    track_assigned: dict[int, int] = dataclasses.field(default_factory=dict)  # track → source
    picked_track: int | None = None
    # Which state is newer: events that change it run one at a time, but the previews
    # they chain can reach the server in either order (``live_preview.Debouncer``).
    revision: int = dataclasses.field(default_factory=lambda: next(_REVISIONS))

    def changed(self, **fields: Any) -> TargetFaces:
        """A copy with ``fields`` replaced and a newer revision."""
        return dataclasses.replace(self, revision=next(_REVISIONS), **fields)

    @property
    def by_track(self) -> bool:
        """Whether the cards are the video's tracks (its pass has run)."""
        return self.tracks_key is not None

    def face_map(self, sources: int) -> list[dict[str, int]]:
        """``face_map`` entries of the assignments that still name an uploaded source:
        ``track`` entries once the video's pass has run, else ``face`` entries."""
        if self.by_track:
            known = {card.track_id for card in self.tracks}
            return [
                {"source": source, "track": track}
                for track, source in sorted(self.track_assigned.items())
                if 0 <= source < sources and track in known
            ]
        return [
            {"source": source, "face": face}
            for face, source in sorted(self.assigned.items())
            if 0 <= source < sources and 0 <= face < len(self.boxes)
        ]

    def reference_crop(self) -> tuple[int, list[float]] | None:
        """The frame and box of the face picked as the reference, if any."""
        if self.by_track:
            for card in self.tracks:
                if card.track_id == self.picked_track:
                    return card.thumb_frame, list(card.thumb_box)
            return None
        if self.picked is not None and 0 <= self.picked < len(self.boxes):
            return self.first_frame, self.boxes[self.picked]
        return None


def track_preview(
    studio: Studio,
    finder: video_tracks.TrackFinder,
    session: str,
    faces: TargetFaces,
    options: dict[str, Any],
    index: int,
) -> tuple[list[dict[str, int]], np.ndarray, Path] | str:
    """For a preview of frame ``index`` with track assignments: the frame's ``face``
    entries (its faces matched to the tracks' boxes at that frame), the frame, and the
    frame saved as a PNG for the preview service. A message key instead when the tracks
    no longer apply or none with a source is in the frame."""
    assert faces.path is not None
    found = finder.cached(session, faces.tracks_key)
    setup = finder.setup({k: v for k, v in options.items() if k != "face_map"})
    if found is None or finder.key(faces.path, found.span, setup) != found.key:
        return "tracks_stale"  # expired, or the face-finding options changed since
    tracked = found.analysis.faces_at(index)
    if not any(t.track_id in faces.track_assigned for t in tracked):
        return "preview_no_tracks"
    image = live_preview.target_frame(faces.path, index)
    found_faces = video_tracks.frame_faces(studio, setup, image)
    entries = video_tracks.preview_face_map(found_faces, tracked, faces.track_assigned)
    if not entries:
        return "preview_no_tracks"
    path = studio.new_upload_path().with_suffix(".png")
    imageio.save_image(image, path)
    return entries, image, path


def kept_choices(chosen: dict, known, sources: int) -> dict[int, int]:
    """The page's face (or track) → source choices, kept where both name something that
    exists: a card in ``known`` and one of the ``sources`` uploaded sources."""
    known = set(known)
    assigned: dict[int, int] = {}
    for card, source in list(chosen.items())[:MAX_CARDS]:
        try:
            card_index, source_index = int(card), int(source)
        except (TypeError, ValueError):
            continue
        if card_index in known and 0 <= source_index < sources:
            assigned[card_index] = source_index
    return assigned


def pass_setup(
    studio: Studio, finder: video_tracks.TrackFinder, faces: TargetFaces, options: dict
) -> tuple[video_tracks.PassSetup, video_tracks.VideoSpan]:
    """The pass's options, models and range, after the upload limits a submission has
    (the video's length and frame size bound what the pass reads)."""
    from studio.limits import check_target

    assert faces.path is not None
    path = Path(faces.path)
    check_target(path, display_name(path.name), studio.config.limits)
    return finder.setup(options), video_tracks.video_span(path, options)


def tracks_key_for(
    studio: Studio, finder: video_tracks.TrackFinder, faces: TargetFaces, options: dict
) -> str:
    """The pass these options (and trim) would need: equal to ``faces.tracks_key`` while
    the tracks shown still apply."""
    assert faces.path is not None
    setup = finder.setup({k: v for k, v in options.items() if k != "face_map"})
    return finder.key(faces.path, video_tracks.video_span(faces.path, options), setup)


def with_tracks(
    faces: TargetFaces, found: video_tracks.TrackPass, trim: dict[str, float]
) -> TargetFaces:
    """The cards become the pass's tracks; a source given to a face of the first frame,
    or the reference picked there, passes to that face's track."""
    carried: dict[int, int] = {}
    picked_track = None
    if found.span.first == faces.first_frame and not faces.by_track:
        by_face = video_tracks.match_tracks(faces.boxes, found.analysis.faces_at(faces.first_frame))
        carried = {by_face[face]: src for face, src in faces.assigned.items() if face in by_face}
        picked_track = by_face.get(faces.picked) if faces.picked is not None else None
    elif faces.by_track:
        carried, picked_track = dict(faces.track_assigned), faces.picked_track
    listed = {card.track_id for card in found.cards}
    return faces.changed(
        trim=trim,
        tracks=found.cards,
        tracks_key=found.key,
        track_assigned={t: src for t, src in carried.items() if t in listed},
        picked_track=picked_track if picked_track in listed else None,
    )
