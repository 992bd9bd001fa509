"""The whole-video analysis pass of a job, and the decisions segments follow.

One pass over the (trimmed) video detects, tracks (``engine.tracking``), smooths and
embeds the faces; then every decision is taken per track, once, from several frames:

- ``face_map``: a ``face`` entry names the track of that face in the first frame with
  faces (counted left to right); a ``track`` entry names a track; a ``reference``
  entry takes the tracks whose median distance to that reference is within
  ``reference_distance``;
- ``selector=reference``: identity lock: a track is swapped for its whole life when its
  median distance to the reference face is within ``reference_distance``, never for a
  stray frame otherwise;
- ``selector=many``: every track; ``selector=one``: in each frame, the tracked face
  ``face_order`` picks (its smoothed landmarks; the pick is per frame, as for images).

The result (``VideoPlan``) is stored in the job's work directory, so a resumed job and
every segment, on any device, read the same tracks and decisions: tracks never restart
at a segment border.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import InvalidInput, InvalidOptions
from engine.faces import Face
from engine.options import OutputOptions
from engine.progress import CancelToken, Progress, ProgressCallback
from engine.swappers.base import SourceIdentity
from engine.tracking.analysis import VideoAnalysis, analyse
from engine.tracking.identity import assign_sources, decide_tracks, tracks_by_face_index
from engine.tracking.tracker import TrackerSettings

if TYPE_CHECKING:
    from engine.pipeline import FrameSwapper

ANALYSIS_PREFIX = "analysis-"


@dataclass(frozen=True)
class VideoPlan:
    """A job's tracks and, per swapped track, the identity it receives."""

    analysis: VideoAnalysis
    identities: dict[int, SourceIdentity]
    one: tuple[str, SourceIdentity] | None = None  # selector one: (face_order, identity)

    def assignments(self, frame_index: int) -> list[tuple[Face, SourceIdentity]]:
        """The (face, identity) pairs of one frame (absolute index)."""
        return [(face, identity) for _, face, identity in self.tracked_assignments(frame_index)]

    def tracked_assignments(self, frame_index: int) -> list[tuple[int, Face, SourceIdentity]]:
        """The (track id, face, identity) triples of one frame (absolute index)."""
        tracked_faces = self.analysis.faces_at(frame_index)
        if self.one is not None:
            if not tracked_faces:
                return []
            from engine.face_order import order_faces

            order, identity = self.one
            by_face = {id(t.face): t.track_id for t in tracked_faces}
            pick = order_faces([t.face for t in tracked_faces], order)[0]
            return [(by_face[id(pick)], pick, identity)]
        triples = []
        for tracked in tracked_faces:
            identity = self.identities.get(tracked.track_id)
            if identity is not None:
                triples.append((tracked.track_id, tracked.face, identity))
        return triples

    def tracks_json(self) -> list[dict]:
        return self.analysis.tracks_json()


def analysis_key(swapper: FrameSwapper, target: Path, output: OutputOptions) -> str:
    """What the pass depends on: the target file, the active range, the options and the
    models (so a changed job never reuses another's tracks)."""
    from engine.video.segments import describe_processor

    stat = target.stat()
    parts = [
        str(target.resolve()),
        str(stat.st_size),
        str(stat.st_mtime_ns),
        repr((output.trim_start, output.trim_end)),
        describe_processor(swapper),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def plan_video(
    swapper: FrameSwapper,
    target: str | Path,
    output: OutputOptions,
    *,
    workdir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> VideoPlan:
    """Run (or reuse, from ``workdir``) the analysis pass and take the track decisions."""
    target = Path(target)
    stored = None
    if workdir is not None:
        stored = Path(workdir) / f"{ANALYSIS_PREFIX}{analysis_key(swapper, target, output)}.npz"
        if stored.is_file():
            try:
                analysis = VideoAnalysis.load(stored)
            except InvalidInput:
                stored.unlink(missing_ok=True)
            else:
                return decide(swapper, analysis)
    analysis = run_analysis(swapper, target, output, progress=progress, cancel=cancel)
    plan = decide(swapper, analysis)
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        plan.analysis.save(stored)
    return plan


def run_analysis(
    swapper: FrameSwapper,
    target: Path,
    output: OutputOptions,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> VideoAnalysis:
    """Detect, track and embed the faces of the active (trimmed) range, in one pass."""
    return analyse_target(
        swapper.engine,
        swapper.resolved,
        swapper.options,
        target,
        output,
        progress=progress,
        cancel=cancel,
    )


def analyse_target(
    engine,
    resolved,
    options,
    target: str | Path,
    output: OutputOptions,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> VideoAnalysis:
    """The analysis pass for ``engine`` with a job's ``resolved`` models and ``options``,
    without a source (the studio shows a video's tracks before a job exists)."""
    from engine.video.probe import probe
    from engine.video.segments import trim_range

    target = Path(target)
    info = probe(target)
    first, end = trim_range(info.timeline, output, target.name)
    recognizer = engine.recognizer(resolved.recognizer) if resolved.recognizer else None

    def detect(frame: np.ndarray):
        return engine.job_faces(frame, resolved, options)

    embed = (lambda frame, face: recognizer.embed(frame, face)) if recognizer else None
    total = end - first

    def report(done: int) -> None:
        if progress is not None and (done == total or done % 10 == 0):
            progress(
                Progress(
                    stage="analyse",
                    done=done,
                    total=total,
                    message=f"tracking faces: frame {done} of {total}",
                )
            )

    return analyse(
        _frames(target, info, first, end, cancel),
        detect,
        TrackerSettings.from_options(options),
        embed=embed,
        detect_every=options.detect_every,
        progress=report,
        cancel=cancel,
    )


def _frames(target: Path, info, first: int, end: int, cancel) -> Iterator[tuple[int, np.ndarray]]:
    from engine.video.decode import decode_range

    timeline = info.timeline
    frames = decode_range(
        target,
        int(timeline.pts[first]),
        timeline.pts_at(end),
        cancel=cancel,
        first_pts=int(timeline.pts[0]),
    )
    for index, frame in enumerate(frames, start=first):
        yield index, frame.image


def decide(swapper: FrameSwapper, analysis: VideoAnalysis) -> VideoPlan:
    """Per track: swapped or not, and with which identity (see the module docstring)."""
    options = swapper.options
    mapping = swapper.mapping
    if mapping is not None:
        return _decide_mapping(swapper, analysis)
    source = swapper.source
    assert source is not None
    ids = [summary.track_id for summary in analysis.tracks]
    if options.selector == "many":
        swapped = dict.fromkeys(ids, True)
    elif options.selector == "reference":
        if swapper.reference is None:
            raise InvalidOptions("the 'reference' selector needs a reference face")
        swapped = decide_tracks(
            analysis.embeddings_by_track, swapper.reference, options.reference_distance
        )
    else:
        picked = _picked_tracks(analysis, options.face_order)
        swapped = {track: track in picked for track in ids}
        sources = {track: [0] for track in picked}
        decided = analysis.with_decisions(swapped, sources)
        return VideoPlan(decided, {}, one=(options.face_order, source))
    identities = {track: source for track, on in swapped.items() if on}
    sources = {track: [0] for track in identities}
    return VideoPlan(analysis.with_decisions(swapped, sources), identities)


def _picked_tracks(analysis: VideoAnalysis, order: str) -> set[int]:
    """The tracks ``face_order`` picks in at least one frame (selector ``one``)."""
    from engine.face_order import order_faces

    picked: set[int] = set()
    for frame_index in analysis.frames:
        tracked = analysis.faces_at(int(frame_index))
        if tracked:
            by_face = {id(item.face): item.track_id for item in tracked}
            picked.add(by_face[id(order_faces([item.face for item in tracked], order)[0])])
    return picked


def _decide_mapping(swapper: FrameSwapper, analysis: VideoAnalysis) -> VideoPlan:
    mapping = swapper.mapping
    assert mapping is not None
    entries = swapper.options.face_map
    identities: dict[int, SourceIdentity] = {}
    sources: dict[int, list[int]] = {}
    known = {summary.track_id for summary in analysis.tracks}
    first = analysis.first_faces()
    by_index = tracks_by_face_index(first[1]) if first is not None else {}
    for number, entry in enumerate(entries):
        if entry.kind == "face":
            if entry.index not in by_index:
                raise InvalidOptions(
                    f"face_map entry {number} names face {entry.index}, but the first frame "
                    f"with faces has {len(by_index)} (counted left to right from 0)"
                )
            track = by_index[entry.index]
        elif entry.kind == "track":
            if entry.index not in known:
                raise InvalidOptions(
                    f"face_map entry {number} names track {entry.index}, but the video's "
                    f"tracks are {', '.join(map(str, sorted(known))) or 'none'}"
                )
            track = entry.index
        else:
            continue
        identities.setdefault(track, mapping.by_track.get(track) or _identity(mapping, entry))
        sources.setdefault(track, list(entry.source))
    references = [embedding for embedding, _ in mapping.by_reference]
    if references:
        chosen = assign_sources(
            analysis.embeddings_by_track, references, mapping.reference_distance
        )
        reference_entries = [entry for entry in entries if entry.kind == "reference"]
        for track, index in chosen.items():
            if track in identities:
                continue
            identities[track] = mapping.by_reference[index][1]
            sources[track] = list(reference_entries[index].source)
    swapped = {summary.track_id: summary.track_id in identities for summary in analysis.tracks}
    return VideoPlan(analysis.with_decisions(swapped, sources), identities)


def _identity(mapping, entry) -> SourceIdentity:
    """The identity of a ``face`` entry (by its face index) in the prepared mapping."""
    return mapping.by_face[entry.index]


__all__ = ["VideoPlan", "analyse_target", "analysis_key", "decide", "plan_video", "run_analysis"]
