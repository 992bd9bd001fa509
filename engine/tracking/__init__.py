"""Face tracking for videos: tracks with stable ids, temporal smoothing, scene cuts,
per-track identity decisions and the whole-video analysis record.

The video pipeline runs ``analyse`` once over the (trimmed) video and stores the
``VideoAnalysis`` with the job; segments read ``faces_at(frame)`` and swap what the
pass decided (``TrackSummary.swapped`` / ``source``).
"""

from engine.tracking.analysis import (
    AnalysisRecorder,
    FaceRows,
    TrackSummary,
    VideoAnalysis,
    analyse,
)
from engine.tracking.filters import ExponentialSmoother, OneEuroFilter, OneEuroParams
from engine.tracking.identity import (
    assign_sources,
    cosine_distances,
    decide_tracks,
    track_distance,
    tracks_by_face_index,
)
from engine.tracking.scenecut import SceneCutDetector
from engine.tracking.tracker import FaceSmoother, FaceTracker, TrackedFace, TrackerSettings

__all__ = [
    "AnalysisRecorder",
    "ExponentialSmoother",
    "FaceRows",
    "FaceSmoother",
    "FaceTracker",
    "OneEuroFilter",
    "OneEuroParams",
    "SceneCutDetector",
    "TrackSummary",
    "TrackedFace",
    "TrackerSettings",
    "VideoAnalysis",
    "analyse",
    "assign_sources",
    "cosine_distances",
    "decide_tracks",
    "track_distance",
    "tracks_by_face_index",
]
