"""Face tracking on synthetic clips made here from the real faces of insightface's t1.jpg.

The clips paste crops of t1's faces onto a plain background and move them along known
paths (or pan a window across the photo), so the true position of every face in every
frame is known. Detection is the real SCRFD 2.5G model on the clip's pixels (ONNX
Runtime); embeddings come from the ArcFace stand-in (a real ONNX session, a fixed
random projection of the aligned crop). The smoothing tests feed the tracker the true
landmarks plus Gaussian noise of a known σ, so jitter and lag can be measured exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import pytest

from engine.detectors.scrfd import ScrfdDetector
from engine.errors import Canceled, InvalidInput, InvalidOptions
from engine.faces import Face
from engine.progress import CancelToken
from engine.recognizer import ArcFaceRecognizer
from engine.runtime import SessionCache
from engine.tracking import (
    AnalysisRecorder,
    ExponentialSmoother,
    FaceTracker,
    OneEuroFilter,
    OneEuroParams,
    SceneCutDetector,
    TrackerSettings,
    VideoAnalysis,
    analyse,
    assign_sources,
    cosine_distances,
    decide_tracks,
    tracks_by_face_index,
)
from engine.tracking.tracker import _assign_greedy
from tests.assets import SCRFD_2_5G, T1, TOM_HANKS, load
from tests.standins.arcface import make_arcface

WIDTH, HEIGHT = 640, 360
BACKGROUND = 110
# The stand-in recognizer puts different t1 faces 0.2–0.6 apart and one face seen at
# different places ~0.01 apart (real ArcFace: ~1.0 and ~0.3), so the tracker's
# embedding thresholds are scaled down for it.
STANDIN = {"match_distance": 0.12, "reid_distance": 0.1}


@dataclass(frozen=True)
class Patch:
    """A crop of one t1 face with its detection in crop coordinates."""

    image: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray

    def at(self, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
        """The face's true box and landmarks when the crop's corner is at (x, y)."""
        offset = np.array([x, y], dtype=np.float32)
        return self.box + np.tile(offset, 2), self.landmarks + offset


@pytest.fixture(scope="module")
def sessions() -> SessionCache:
    return SessionCache("cpu")


@pytest.fixture(scope="module")
def detector(sessions) -> ScrfdDetector:
    """SCRFD sized for the 640×360 clips (the model takes any multiple of 32)."""
    return ScrfdDetector(sessions, SCRFD_2_5G, input_size=(WIDTH, 384))


@pytest.fixture(scope="module")
def recognizer(sessions, tmp_path_factory) -> ArcFaceRecognizer:
    return ArcFaceRecognizer(sessions, make_arcface(tmp_path_factory.mktemp("arc") / "arc.onnx"))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load(T1)


@pytest.fixture(scope="module")
def photo_faces(sessions, photo) -> list[Face]:
    faces = sorted(ScrfdDetector(sessions, SCRFD_2_5G).detect(photo), key=lambda f: f.box[0])
    assert len(faces) == 6
    return faces


@pytest.fixture(scope="module")
def patches(photo, photo_faces) -> list[Patch]:
    result = []
    for face in photo_faces:
        x1, y1, x2, y2 = face.box
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        left, top = int(max(cx - 0.8 * w, 0)), int(max(cy - 0.75 * h, 0))
        right, bottom = int(cx + 0.8 * w), int(cy + 0.75 * h)
        offset = np.array([left, top], dtype=np.float32)
        result.append(
            Patch(
                photo[top:bottom, left:right].copy(),
                face.box - np.tile(offset, 2),
                face.landmarks - offset,
            )
        )
    return result


def compose(placements, background=BACKGROUND) -> np.ndarray:
    """A frame with ``(patch, x, y)`` pasted in order (later ones cover earlier ones)."""
    frame = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame[:] = background  # a grey level, a colour or an image
    for patch, x, y in placements:
        h, w = patch.image.shape[:2]
        x, y = int(round(x)), int(round(y))
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, WIDTH), min(y + h, HEIGHT)
        if x1 > x0 and y1 > y0:
            frame[y0:y1, x0:x1] = patch.image[y0 - y : y1 - y, x0 - x : x1 - x]
    return frame


def centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def nearest_truth(face: Face, truths: list[np.ndarray]) -> tuple[int, float]:
    distances = [float(np.linalg.norm(centre(face.box) - centre(t))) for t in truths]
    return int(np.argmin(distances)), min(distances)


def detect_with(detector):
    return lambda frame: sorted(detector.detect(frame), key=lambda face: face.box[0])


# -- tracking: crossing, disappearing, cuts ------------------------------------------------


def crossing_clip(patches, frames=40):
    """Face 1 walks right, face 2 walks left 30 px lower and passes in front of it."""
    a, b = patches[1], patches[2]
    clip, truths = [], []
    for t in range(frames):
        xa, xb = 20 + 11 * t, 450 - 11 * t
        clip.append((t, compose([(a, xa, 60), (b, xb, 90)])))
        truths.append([a.at(xa, 60)[0], b.at(xb, 90)[0]])
    return clip, truths


@pytest.mark.parametrize("with_embeddings", [True, False])
def test_two_faces_crossing_keep_their_ids(patches, detector, recognizer, with_embeddings):
    clip, truths = crossing_clip(patches)
    embed = recognizer.embed if with_embeddings else None
    tracker = FaceTracker(TrackerSettings(**STANDIN), embed)
    owner: dict[int, int] = {}  # track id → which face (0: walks right, 1: walks left)
    hidden_frames = 0
    for (t, frame), truth in zip(clip, truths, strict=True):
        detections = detector.detect(frame)
        hidden_frames += len(detections) < 2
        apart = np.linalg.norm(centre(truth[0]) - centre(truth[1]))
        for tracked in tracker.update(t, detections, frame):
            which, distance = nearest_truth(tracked.face, truth)
            if apart > 60 and distance < 30:
                assert owner.setdefault(tracked.track_id, which) == which, (t, tracked.track_id)
    assert hidden_frames > 0  # the front face really hides the other for a while
    assert sorted(owner.values()) == [0, 1]  # one id per face, kept through the crossing
    assert tracker.next_id == 2


def disappearing_clip(patches, gap=range(12, 17), frames=30):
    """Two faces drift slowly; face 0 is gone for the five frames of ``gap``."""
    a, b = patches[0], patches[4]
    clip, truths = [], []
    for t in range(frames):
        xa, xb = 40 + 3 * t, 380 - 2 * t
        placed = [(b, xb, 100)] if t in gap else [(a, xa, 80), (b, xb, 100)]
        clip.append((t, compose(placed)))
        truths.append([a.at(xa, 80)[0], b.at(xb, 100)[0]])
    return clip, truths


@pytest.mark.parametrize("with_embeddings", [True, False])
def test_face_gone_for_five_frames_keeps_its_id(patches, detector, recognizer, with_embeddings):
    gap = range(12, 17)
    clip, truths = disappearing_clip(patches, gap)
    embed = recognizer.embed if with_embeddings else None
    settings = TrackerSettings(max_missed=2, **STANDIN)
    analysis = analyse(clip, detect_with(detector), settings, embed=embed)
    before = {tracked.track_id for tracked in analysis.faces_at(gap.start - 1)}
    after = analysis.faces_at(gap.stop + 1)
    assert len(after) == 2 and {tracked.track_id for tracked in after} == before
    for tracked in after:
        which, distance = nearest_truth(tracked.face, truths[gap.stop + 1])
        assert distance < 10
    # While it is gone it is carried for max_missed frames only, then not reported.
    assert len(analysis.faces_at(gap.start + 1)) == 2
    assert len(analysis.faces_at(gap.start + 3)) == 1
    assert len(analysis.tracks) == 2


def test_face_returning_elsewhere_is_reidentified_by_embedding(patches, detector, recognizer):
    a, b = patches[0], patches[4]
    clip = [(t, compose([(a, 60, 80), (b, 380, 100)])) for t in range(8)]
    clip += [(t, compose([(b, 380, 100)])) for t in range(8, 13)]
    clip += [(t, compose([(b, 380, 100), (a, 200, 150)])) for t in range(13, 18)]
    analysis = analyse(clip, detect_with(detector), TrackerSettings(**STANDIN), recognizer.embed)
    first = {
        nearest_truth(t.face, [a.at(60, 80)[0], b.at(380, 100)[0]])[0]: t.track_id
        for t in analysis.faces_at(0)
    }
    last = {
        nearest_truth(t.face, [a.at(200, 150)[0], b.at(380, 100)[0]])[0]: t.track_id
        for t in analysis.faces_at(17)
    }
    assert last == first
    # Without embeddings the jump is too far to be the same face: a new track.
    blind = analyse(clip, detect_with(detector), TrackerSettings(**STANDIN))
    assert len(blind.tracks) == 3


def test_scene_cut_starts_new_tracks(patches, detector):
    """The same two faces at the same places, but the shot changes at frame 10 (to
    another background picture): the cut ends the tracks although the boxes overlap."""
    a, b = patches[3], patches[5]
    other = cv2.resize(load(TOM_HANKS), (WIDTH, HEIGHT))
    clip = [(t, compose([(a, 80 + t, 60), (b, 380 - t, 90)])) for t in range(10)]
    for t in range(10, 20):
        clip.append((t, compose([(a, 80 + t, 60), (b, 380 - t, 90)], background=other)))
    analysis = analyse(clip, detect_with(detector), TrackerSettings())
    assert analysis.cuts == (10,)
    before = {tracked.track_id for tracked in analysis.faces_at(9)}
    after = {tracked.track_id for tracked in analysis.faces_at(10)}
    assert len(before) == 2 and len(after) == 2 and before.isdisjoint(after)
    assert min(after) > max(before)
    assert all(analysis.track(i).last_frame == 9 for i in before)
    assert all(analysis.track(i).first_frame == 10 for i in after)
    # Without cut detection the same clip keeps its two tracks.
    uncut = analyse(clip, detect_with(detector), TrackerSettings(scene_cut=0))
    assert uncut.cuts == () and len(uncut.tracks) == 2


def test_scene_cut_detector_ignores_pans_and_sees_cuts(photo):
    pan = SceneCutDetector()
    assert not any(pan.is_cut(photo[200:560, x : x + WIDTH]) for x in range(0, 640, 16))
    fast = SceneCutDetector()
    assert not any(fast.is_cut(photo[y : y + HEIGHT, 300:940]) for y in range(0, 520, 20))
    hanks = cv2.resize(load(TOM_HANKS), (WIDTH, HEIGHT))
    cut = SceneCutDetector()
    assert not cut.is_cut(photo[200:560, 300:940])
    assert cut.is_cut(hanks)
    assert not cut.is_cut(hanks)
    other_part = SceneCutDetector()
    other_part.is_cut(photo[:HEIGHT, 300:940])
    assert other_part.is_cut(photo[-HEIGHT:, 300:940])
    # A change of light moves every histogram but keeps the picture: not a cut.
    light = SceneCutDetector()
    light.is_cut(photo[200:560, 300:940])
    assert not light.is_cut((photo[200:560, 300:940] * 0.7).astype(np.uint8))


# -- carrying faces between detections -----------------------------------------------------


def point_error(points: np.ndarray, truth: np.ndarray) -> float:
    """Mean distance of landmarks from their true positions (px)."""
    return float(np.linalg.norm(points - truth, axis=1).mean())


def test_detect_every_three_carries_faces_along_the_true_path(photo, photo_faces, detector):
    """A pan across t1 at 4 px/frame, detection on every third frame only. The faces
    carried between detections are as close to the true path (t1's landmarks moved
    by the pan) as the detected ones, and far closer than the last detection reused."""
    speed, frames, y = 4, 36, 150
    clip = [
        (t, photo[y : y + HEIGHT, 200 + speed * t : 200 + speed * t + WIDTH].copy())
        for t in range(frames)
    ]
    calls = []

    def counting(frame):
        calls.append(1)
        return detector.detect(frame)

    analysis = analyse(clip, counting, TrackerSettings(), detect_every=3)
    assert len(calls) == frames // 3
    carried, detected, reused = [], [], []
    last_seen: dict[int, np.ndarray] = {}
    for t in range(frames):
        offset = np.array([200 + speed * t, y], dtype=np.float32)
        truths = [face.landmarks - offset for face in photo_faces]
        for tracked in analysis.faces_at(t):
            if t % 3:
                assert not tracked.detected  # no detection ran: carried
            points = tracked.face.landmarks
            which = int(np.argmin([np.abs(truth - points).mean() for truth in truths]))
            truth = truths[which]
            inside = (truth > 30).all() and (truth < [WIDTH - 30, HEIGHT - 30]).all()
            if inside and t >= 9:
                if tracked.detected:
                    detected.append(point_error(points, truth))
                else:
                    carried.append(point_error(points, truth))
                    reused.append(point_error(last_seen[tracked.track_id], truth))
            if tracked.detected:
                last_seen[tracked.track_id] = points
    assert len(carried) > 20 and len(detected) > 10
    assert np.mean(carried) <= np.mean(detected) + 1.0, (np.mean(carried), np.mean(detected))
    assert np.max(carried) < 6.0
    assert np.mean(carried) < 0.6 * np.mean(reused), (np.mean(carried), np.mean(reused))


# -- smoothing -----------------------------------------------------------------------------


def noisy_run(photo_faces, speed: float, sigma: float, frames: int = 120, seed: int = 0):
    """The tracker fed t1's face 3 moved at ``speed`` px/frame plus landmark noise σ;
    returns (true, raw, smoothed) landmarks per frame."""
    rng = np.random.default_rng(seed)
    base = photo_faces[3]
    tracker = FaceTracker(TrackerSettings())
    true, raw, out = [], [], []
    for t in range(frames):
        shift = np.array([speed * t, 0.5 * speed * t], dtype=np.float32)
        landmarks = base.landmarks + shift
        noisy = landmarks + rng.normal(0, sigma, landmarks.shape).astype(np.float32)
        box = base.box + np.tile(shift, 2) + rng.normal(0, sigma, 4).astype(np.float32)
        (tracked,) = tracker.update(t, [Face(box=box, score=0.9, landmarks=noisy)])
        assert tracked.track_id == 0
        true.append(landmarks)
        raw.append(noisy)
        out.append(tracked.face.landmarks)
    return np.array(true), np.array(raw), np.array(out)


def jitter(points: np.ndarray, true: np.ndarray) -> float:
    """RMS frame-to-frame movement of the points beyond the true movement (px)."""
    return float(np.sqrt(np.mean(np.sum(np.diff(points - true, axis=0) ** 2, axis=-1))))


def test_still_face_jitter_is_three_times_lower(photo_faces):
    true, raw, out = noisy_run(photo_faces, speed=0.0, sigma=2.0)
    settle = 20
    reduction = jitter(raw[settle:], true[settle:]) / jitter(out[settle:], true[settle:])
    assert reduction >= 3.0, reduction
    # and the smoothed points stay closer to the truth than the raw ones
    error = lambda points: np.sqrt(np.mean((points[settle:] - true[settle:]) ** 2))  # noqa: E731
    assert error(out) < error(raw) / 1.8


def test_moving_face_lags_at_most_one_frame(photo_faces):
    speed = 3.0  # px/frame along (1, 0.5): ~3.4 px/frame, ~2 % of this face's diagonal
    true, raw, out = noisy_run(photo_faces, speed=speed, sigma=2.0)
    velocity = np.array([speed, 0.5 * speed])
    settle = 20
    behind = ((true[settle:] - out[settle:]) @ velocity).mean() / (velocity @ velocity)
    assert -0.5 <= behind <= 1.0, behind
    clean_true, _, clean = noisy_run(photo_faces, speed=speed, sigma=0.0)
    clean_behind = ((clean_true[settle:] - clean[settle:]) @ velocity).mean() / (
        velocity @ velocity
    )
    assert 0.0 <= clean_behind <= 1.0, clean_behind


def test_smoothing_is_scale_invariant():
    """A face twice as big with twice the jitter and speed is filtered the same way."""
    rng = np.random.default_rng(3)
    params = OneEuroParams.from_strength(0.8)
    small, big = OneEuroFilter.from_params(params), OneEuroFilter.from_params(params)
    shape = rng.uniform(0, 100, (5, 2))
    for t in range(60):
        value = shape + 2.0 * t + rng.normal(0, 1.5, shape.shape)
        a = small(value, t, scale=140.0)
        b = big(2 * value, t, scale=280.0)
        np.testing.assert_allclose(b, 2 * a, rtol=1e-9, atol=1e-6)


def test_smoothing_zero_is_off_and_strength_is_checked(photo_faces):
    assert OneEuroFilter.from_params(OneEuroParams.from_strength(0.0)) is None
    tracker = FaceTracker(TrackerSettings(smoothing=0.0))
    face = photo_faces[2]
    for t in range(5):
        moved = replace(face, landmarks=face.landmarks + 7 * t, box=face.box + 7 * t)
        (tracked,) = tracker.update(t, [moved])
        np.testing.assert_array_equal(tracked.face.landmarks, moved.landmarks)
    with pytest.raises(InvalidOptions, match="temporal_smoothing"):
        TrackerSettings(smoothing=0.99)


def test_exponential_smoother_for_colour_statistics():
    smoother = ExponentialSmoother(0.25)
    first = smoother(np.array([100.0, 50.0, 20.0]))
    np.testing.assert_allclose(first, [100, 50, 20])
    second = smoother(np.array([120.0, 50.0, 40.0]))
    np.testing.assert_allclose(second, [105, 50, 25])
    for _ in range(60):
        last = smoother(np.array([120.0, 50.0, 40.0]))
    np.testing.assert_allclose(last, [120, 50, 40], atol=1e-4)
    np.testing.assert_allclose(ExponentialSmoother(1.0)(np.ones(3) * 7), 7)
    assert ExponentialSmoother.from_strength(0.0).alpha == 1.0
    with pytest.raises(InvalidOptions):
        ExponentialSmoother(0.0)


# -- identity lock and face_map ------------------------------------------------------------


def at_distances(reference: np.ndarray, distances, seed=0) -> list[np.ndarray]:
    """Unit vectors at exactly these cosine distances from ``reference``."""
    rng = np.random.default_rng(seed)
    unit = reference / np.linalg.norm(reference)
    vectors = []
    for distance in distances:
        other = rng.standard_normal(unit.shape)
        other -= (other @ unit) * unit
        other /= np.linalg.norm(other)
        cos = 1.0 - distance
        vectors.append(cos * unit + np.sqrt(1 - cos**2) * other)
    return vectors


def test_identity_lock_uses_the_median_of_several_frames():
    reference = np.random.default_rng(1).standard_normal(512)
    wavering_below = [0.52, 0.66, 0.55, 0.63, 0.50, 0.58, 0.65, 0.54, 0.57]  # median 0.57
    wavering_above = [0.68, 0.55, 0.64, 0.70, 0.58, 0.66, 0.62, 0.57, 0.69]  # median 0.64
    tracks = {
        0: at_distances(reference, wavering_below),
        1: at_distances(reference, wavering_above, seed=1),
        2: at_distances(reference, [0.50, 0.55], seed=2),  # short, every frame matches
        3: at_distances(reference, [0.40, 0.65], seed=3),  # short, one frame does not
        4: [],
    }
    np.testing.assert_allclose(cosine_distances(np.stack(tracks[0]), reference), wavering_below)
    decided = decide_tracks(tracks, reference, threshold=0.6, min_frames=3)
    assert decided == {0: True, 1: False, 2: True, 3: False, 4: False}
    # Frame by frame the first track would flicker in and out; per track it does not.
    assert any(d > 0.6 for d in wavering_below) and any(d <= 0.6 for d in wavering_above)


def test_identity_lock_on_a_clip_with_the_standin_recognizer(patches, detector, recognizer):
    """A face whose lighting changes every frame: its distance to the reference wavers.
    With the threshold above the median (below it) every frame of the track is (no
    frame is) swapped, although single frames fall on both sides."""
    face = patches[2]
    gains = [1.0, 0.85, 1.15, 0.9, 1.1, 0.8, 1.2, 0.95, 1.05, 0.88, 1.12, 0.92]
    clip = []
    for t, gain in enumerate(gains):
        frame = compose([(face, 200 + 2 * t, 80)]).astype(np.float32)
        clip.append((t, np.clip(frame * gain, 0, 255).astype(np.uint8)))
    analysis = analyse(clip, detect_with(detector), TrackerSettings(**STANDIN), recognizer.embed)
    (track,) = analysis.tracks
    reference_frame = compose([(face, 200, 80)])
    reference = recognizer.embed(reference_frame, detector.detect(reference_frame)[0])
    samples = analysis.embeddings_by_track
    distances = cosine_distances(np.stack(samples[track.track_id]), reference)
    assert len(distances) == len(gains)
    low, high = np.quantile(distances, [0.3, 0.7])
    for threshold, expected in ((high, True), (low, False)):
        assert (distances > threshold).any() and (distances <= threshold).any()
        decided = analysis.with_decisions(decide_tracks(samples, reference, threshold))
        assert decided.track(track.track_id).swapped is expected
        for t in range(len(gains)):
            (tracked,) = decided.faces_at(t)
            assert decided.track(tracked.track_id).swapped is expected


def test_assign_sources_by_median_distance(patches, detector, recognizer):
    a, b, c = patches[0], patches[2], patches[5]
    clip = [(t, compose([(a, 20 + t, 60), (b, 230, 90 - t), (c, 440 - t, 70)])) for t in range(6)]
    analysis = analyse(clip, detect_with(detector), TrackerSettings(**STANDIN), recognizer.embed)

    def reference(patch):
        frame = compose([(patch, 240, 100)], background=90)
        return recognizer.embed(frame, detector.detect(frame)[0])

    left_to_right = tracks_by_face_index(analysis.faces_at(0))
    mapping = assign_sources(analysis.embeddings_by_track, [reference(c), reference(a)], 0.1)
    assert mapping == {left_to_right[0]: 1, left_to_right[2]: 0}
    assert assign_sources(analysis.embeddings_by_track, [], 0.1) == {}


def test_faces_are_numbered_left_to_right(patches, detector):
    # Pasted right to left and vertically staggered so neither paste nor size order agrees.
    placed = [(patches[4], 440, 40), (patches[1], 20, 150), (patches[3], 230, 100)]
    clip = [(0, compose(placed))]
    analysis = analyse(clip, detect_with(detector), TrackerSettings())
    frame_index, faces = analysis.first_faces()
    numbering = tracks_by_face_index(faces)
    by_track = {tracked.track_id: tracked for tracked in faces}
    xs = [centre(by_track[numbering[i]].face.box)[0] for i in range(3)]
    assert frame_index == 0 and xs == sorted(xs)
    truths = [patches[1].at(20, 150)[0], patches[3].at(230, 100)[0], patches[4].at(440, 40)[0]]
    for index in range(3):
        assert nearest_truth(by_track[numbering[index]].face, truths)[0] == index


# -- the analysis record -------------------------------------------------------------------


def test_analysis_round_trip_faces_at_and_tracks_json(patches, detector, recognizer, tmp_path):
    clip, _ = disappearing_clip(patches, gap=range(12, 17), frames=22)
    clip = [(1000 + t, frame) for t, frame in clip]  # absolute frame numbers after a trim
    analysis = analyse(clip, detect_with(detector), TrackerSettings(**STANDIN), recognizer.embed)
    landmarker_face = analysis.faces_at(1000)[0].face
    assert landmarker_face.landmarks_68 is None
    decided = analysis.with_decisions({0: True, 1: False}, {0: [0, 2]})
    path = tmp_path / "analysis.npz"
    decided.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["analysis.npz"]  # no temp file left
    loaded = VideoAnalysis.load(path)
    assert loaded.tracks_json() == decided.tracks_json()
    assert loaded.tracks_json() == [
        {
            "id": 0,
            "first_frame": 1000,
            "last_frame": 1021,
            "frames": 19,
            "swapped": True,
            "source": [0, 2],
        },
        {
            "id": 1,
            "first_frame": 1000,
            "last_frame": 1021,
            "frames": 22,
            "swapped": False,
            "source": None,
        },
    ]
    assert loaded.cuts == decided.cuts == ()
    np.testing.assert_array_equal(loaded.frames, np.arange(1000, 1022))
    for frame_index in range(995, 1025):
        ours, theirs = decided.faces_at(frame_index), loaded.faces_at(frame_index)
        assert [(t.track_id, t.detected) for t in ours] == [
            (t.track_id, t.detected) for t in theirs
        ]
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a.face.box, b.face.box)
            np.testing.assert_array_equal(a.face.landmarks, b.face.landmarks)
    assert loaded.faces_at(999) == [] and loaded.faces_at(1022) == []
    for track_id, vectors in decided.embeddings.items():
        np.testing.assert_array_equal(loaded.embeddings[track_id], vectors)
    (path.parent / "broken.npz").write_bytes(b"not an npz")
    with pytest.raises(InvalidInput, match="broken.npz"):
        VideoAnalysis.load(path.parent / "broken.npz")


def test_analysis_keeps_68_point_landmarks_smoothed(photo_faces, tmp_path, monkeypatch):
    """Faces with 68 points (a landmarker ran) keep them, smoothed with the rest; the
    record is the same whether it was packed in one block or many."""
    rng = np.random.default_rng(5)
    base = photo_faces[1]
    many = np.concatenate([base.landmarks] * 14)[:68] + rng.normal(0, 3, (68, 2))
    raw = [(many + rng.normal(0, 2, (68, 2))).astype(np.float32) for _ in range(30)]
    frames = [(t, np.zeros((HEIGHT, WIDTH, 3), np.uint8)) for t in range(30)]

    def run():
        detections = iter(raw)
        return analyse(
            frames,
            lambda frame: [replace(base, landmarks_68=next(detections))],
            TrackerSettings(scene_cut=0),
        )

    analysis = run()
    analysis.save(tmp_path / "a.npz")
    loaded = VideoAnalysis.load(tmp_path / "a.npz")
    points = np.array([loaded.faces_at(t)[0].face.landmarks_68 for t in range(30)])
    assert points.shape == (30, 68, 2)
    truth = np.broadcast_to(many, points.shape)
    assert jitter(np.array(raw)[10:], truth[10:]) / jitter(points[10:], truth[10:]) >= 3.0
    monkeypatch.setattr(AnalysisRecorder, "BLOCK", 7)
    blocks = run()
    for name, value in analysis.rows.arrays().items():
        np.testing.assert_array_equal(getattr(blocks.rows, name), value)


def test_analyse_reports_progress_and_stops_when_canceled(patches, detector):
    clip, _ = crossing_clip(patches, frames=6)
    seen = []
    analyse(clip, detect_with(detector), progress=seen.append)
    assert seen == [1, 2, 3, 4, 5, 6]
    token = CancelToken()

    def cancel_after_two(done):
        if done == 2:
            token.cancel()

    with pytest.raises(Canceled):
        analyse(clip, detect_with(detector), progress=cancel_after_two, cancel=token)


def test_greedy_assignment_without_scipy_is_one_to_one():
    cost = np.array([[0.1, 0.5, 1e6], [0.2, 0.3, 1e6], [1e6, 1e6, 1e6]])
    assert sorted(_assign_greedy(cost)) == [(0, 0), (1, 1)]
