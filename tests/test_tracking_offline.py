"""Zero-lag offline smoothing of whole face tracks (engine.tracking.offline, issue #15).

Tracks are made with a known path (a 5-point face moved by a similarity per frame) plus
landmark noise, fed as ``FaceRows`` to ``smooth_rows`` and, once, through ``analyse`` with
a detector that reports those faces; the smoothed landmarks are compared with the truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.faces import Face
from engine.tracking.analysis import FaceRows, analyse
from engine.tracking.offline import smooth_rows
from engine.tracking.tracker import TrackerSettings

DEFAULT = 0.3  # temporal_smoothing's default
NOISE = 1.5  # px, i.i.d. per landmark coordinate
# a 5-point face about its centre (eyes, nose, mouth corners), ~110 px wide
SHAPE = np.array([[-19.0, -22.0], [19.0, -22.0], [0.0, 0.0], [-16.0, 20.0], [16.0, 20.0]])
BOX = np.array([[-40.0, -50.0], [40.0, 55.0]])


def similarity(points: np.ndarray, x: float, y: float, scale: float, angle: float):
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return points @ np.array([[c, s], [-s, c]]) + np.array([x, y])


def path(t: np.ndarray, kind: str) -> np.ndarray:
    """(n × 4): x, y, scale, angle of the face per (fractional) frame t."""
    if kind == "constant":
        x, y = 200 + 4.0 * t, 150 + 1.5 * t
    else:  # accelerating along a curve, turning and growing
        x, y = 200 + 0.12 * t**2, 150 + 20 * np.sin(t / 8.0)
    scale = 1.0 + 0.004 * t
    angle = np.deg2rad(0.15 * t)
    return np.stack([x, y, scale, angle], axis=1)


def faces_on(states: np.ndarray, shape: np.ndarray | None = None) -> np.ndarray:
    shapes = np.broadcast_to(SHAPE if shape is None else shape, (len(states), 5, 2))
    return np.stack([similarity(p, *s) for p, s in zip(shapes, states, strict=True)])


def rows_of(frames, tracks, landmarks, boxes=None, many=None) -> FaceRows:
    n = len(frames)
    if boxes is None:
        boxes = np.concatenate([landmarks.min(axis=1) - 20, landmarks.max(axis=1) + 20], 1)
    row68 = np.arange(n, dtype=np.int32) if many is not None else np.full(n, -1, np.int32)
    return FaceRows(
        frame=np.asarray(frames, dtype=np.int64),
        track=np.asarray(tracks, dtype=np.int32),
        box=np.asarray(boxes, dtype=np.float32).reshape(n, 4),
        score=np.ones(n, dtype=np.float32),
        landmarks=np.asarray(landmarks, dtype=np.float32),
        detected=np.ones(n, dtype=bool),
        row68=row68,
        landmarks_68=np.zeros((0, 68, 2), np.float32) if many is None else many.astype(np.float32),
    )


def jitter(points: np.ndarray, truth: np.ndarray) -> float:
    """RMS frame-to-frame change of the residual from the true path (px)."""
    residual = points - truth
    return float(np.sqrt((np.diff(residual, axis=0) ** 2).sum(axis=-1).mean()))


def lag(points: np.ndarray, kind: str) -> float:
    """The shift τ (frames) that best lines ``points`` up with the truth at t − τ."""
    t = np.arange(len(points), dtype=np.float64)
    grid = np.arange(-2.0, 2.0001, 0.05)
    inner = slice(3, len(points) - 3)
    errors = [((points - faces_on(path(t - tau, kind)))[inner] ** 2).sum() for tau in grid]
    return float(grid[int(np.argmin(errors))])


@pytest.mark.parametrize("kind", ["constant", "accelerating"])
def test_jitter_falls_threefold_without_lag(kind):
    rng = np.random.default_rng(7)
    n = 60
    truth = faces_on(path(np.arange(n, dtype=np.float64), kind))
    noisy = truth + rng.normal(0.0, NOISE, truth.shape)
    rows = smooth_rows(rows_of(range(n), [1] * n, noisy), np.arange(n), (), DEFAULT)
    before, after = jitter(noisy, truth), jitter(rows.landmarks, truth)
    assert after * 3 <= before, (before, after)
    assert abs(lag(rows.landmarks.astype(np.float64), kind)) <= 0.1
    # the whole path is followed, not just its changes: no bias beyond the noise's
    assert np.abs(rows.landmarks - truth).mean() < NOISE


def test_cross_correlation_of_speed_peaks_at_zero():
    rng = np.random.default_rng(3)
    n = 80
    truth = faces_on(path(np.arange(n, dtype=np.float64), "accelerating"))
    noisy = truth + rng.normal(0.0, NOISE, truth.shape)
    smoothed = smooth_rows(rows_of(range(n), [1] * n, noisy), np.arange(n), (), DEFAULT)
    speed = np.diff(smoothed.landmarks[:, 2, 1])  # the nose's vertical speed (a sinusoid)
    true_speed = np.diff(truth[:, 2, 1])
    speed, true_speed = speed - speed.mean(), true_speed - true_speed.mean()
    shifts = range(-4, 5)
    scores = [np.dot(np.roll(speed, -s)[5:-5], true_speed[5:-5]) for s in shifts]
    assert list(shifts)[int(np.argmax(scores))] == 0


def test_mouth_opening_keeps_its_motion():
    """Mouth corners drop 8 px and come back every 10 frames (2.5 Hz at 25 fps) on a
    panning face: the swap's mouth keeps ≥ 90 % of that motion and the eyes stay still."""
    n, period, depth = 60, 10, 8.0
    t = np.arange(n, dtype=np.float64)
    opening = depth * 0.5 * (1 - np.cos(2 * np.pi * t / period))
    shapes = np.repeat(SHAPE[None], n, axis=0)
    shapes[:, 3:, 1] += opening[:, None]
    states = path(t, "constant")
    truth = np.stack([similarity(s, *p) for s, p in zip(shapes, states, strict=True)])
    smoothed = smooth_rows(rows_of(range(n), [1] * n, truth), t, (), DEFAULT).landmarks

    def amplitude(points):
        eyes = points[:, :2].mean(axis=1)
        mouth = points[:, 3:].mean(axis=1)
        height = np.linalg.norm(mouth - eyes, axis=1)[10:-10]
        phase = 2 * np.pi * t[10:-10] / period
        design = np.stack([np.cos(phase), np.sin(phase), np.ones_like(phase)], axis=1)
        (c, s, _), *_ = np.linalg.lstsq(design, height, rcond=None)
        return float(np.hypot(c, s))

    assert amplitude(smoothed) >= 0.9 * amplitude(truth)
    eyes_error = np.abs(smoothed[:, :2] - truth[:, :2])[10:-10].max()
    assert eyes_error < 0.5, eyes_error


def test_rigid_correction_moves_68_points_and_box():
    """Noise that shakes the whole face (detector's box and points together) is taken out
    of the 68 points and the box as well."""
    rng = np.random.default_rng(11)
    n = 60
    states = path(np.arange(n, dtype=np.float64), "accelerating")
    shake = rng.normal(0.0, NOISE, (n, 1, 2))
    truth5 = faces_on(states)
    many_shape = np.concatenate([SHAPE, rng.uniform(-45, 45, (63, 2))])
    truth68 = np.stack([similarity(many_shape, *s) for s in states])
    truth_box = np.stack([similarity(BOX, *s) for s in states])  # rotation small
    rows = rows_of(
        range(n),
        [4] * n,
        truth5 + shake,
        (truth_box + shake).reshape(n, 4),
        truth68 + shake,
    )
    smoothed = smooth_rows(rows, np.arange(n), (), DEFAULT)
    assert jitter(smoothed.landmarks_68, truth68) * 3 <= jitter(truth68 + shake, truth68)
    box = smoothed.box.reshape(n, 2, 2)
    assert jitter(box.mean(axis=1), truth_box.mean(axis=1)) * 3 <= jitter(
        (truth_box + shake).mean(axis=1), truth_box.mean(axis=1)
    )
    size = box[:, 1] - box[:, 0]
    true_size = truth_box[:, 1] - truth_box[:, 0]
    assert np.abs(size - true_size).max() < 2.0


@pytest.mark.parametrize("split", ["cut", "gap"])
def test_cuts_and_gaps_split_the_smoothing(split):
    """The face jumps 150 px between two runs of frames: at a cut (same track id, the
    cut frame given) or across frames where the track is absent. Each run is smoothed
    on its own, so the frames next to the jump stay on their own run's path; smoothed
    as one run they would be dragged tens of px towards the other."""
    t = np.arange(20, dtype=np.float64)
    first = faces_on(path(t, "constant"))
    second = faces_on(path(t, "constant")) + np.array([150.0, 60.0])
    landmarks = np.concatenate([first, second])
    analysed = np.arange(45)
    frames = np.concatenate([t, t + (20 if split == "cut" else 25)]).astype(np.int64)
    cuts = (20,) if split == "cut" else ()
    rows = rows_of(frames, [2] * 40, landmarks)
    smoothed = smooth_rows(rows, analysed, cuts, DEFAULT)
    assert np.abs(smoothed.landmarks - landmarks).max() < 0.5
    joined = smooth_rows(rows, frames, (), DEFAULT)  # nothing separates the runs
    assert np.abs(joined.landmarks - landmarks).max() > 10.0


def test_other_tracks_and_short_tracks_are_apart():
    """Two tracks on the same frames are smoothed separately; a 4-frame track is kept."""
    rng = np.random.default_rng(5)
    n = 30
    t = np.arange(n, dtype=np.float64)
    a = faces_on(path(t, "constant"))
    b = faces_on(path(t, "accelerating")) + np.array([300.0, 0.0])
    short = faces_on(path(t[:4], "constant")) + np.array([0.0, 200.0])
    noisy = [a + rng.normal(0, NOISE, a.shape), b + rng.normal(0, NOISE, b.shape)]
    short_noisy = short + rng.normal(0, NOISE, short.shape)
    frames = np.concatenate([t, t, t[:4]]).astype(np.int64)
    tracks = [1] * n + [2] * n + [3] * 4
    rows = rows_of(frames, tracks, np.concatenate([*noisy, short_noisy]))
    smoothed = smooth_rows(rows, t.astype(np.int64), (), DEFAULT).landmarks
    assert jitter(smoothed[:n], a) * 3 <= jitter(noisy[0], a)
    assert jitter(smoothed[n : 2 * n], b) * 3 <= jitter(noisy[1], b)
    np.testing.assert_array_equal(smoothed[2 * n :], short_noisy.astype(np.float32))


def test_strength_zero_changes_nothing():
    rng = np.random.default_rng(1)
    n = 30
    noisy = faces_on(path(np.arange(n, dtype=np.float64), "constant"))
    noisy = noisy + rng.normal(0, NOISE, noisy.shape)
    rows = rows_of(range(n), [1] * n, noisy)
    same = smooth_rows(rows, np.arange(n), (), 0.0)
    for name in ("landmarks", "box", "landmarks_68", "frame", "track"):
        np.testing.assert_array_equal(getattr(same, name), getattr(rows, name))


@pytest.mark.parametrize("strength", [0.0, DEFAULT])
def test_analyse_smooths_stored_tracks(strength):
    """The analysis pass over a video whose detector reports a noisy face on a known
    path stores the track smoothed (or, at 0, exactly as detected)."""
    rng = np.random.default_rng(9)
    n = 40
    truth = faces_on(path(np.arange(n, dtype=np.float64), "accelerating"))
    noisy = truth + rng.normal(0.0, NOISE, truth.shape)
    frame = np.full((360, 640, 3), 90, np.uint8)

    def detect(index_frame):
        index = detect.calls
        detect.calls += 1
        points = noisy[index].astype(np.float32)
        box = np.concatenate([points.min(0) - 20, points.max(0) + 20]).astype(np.float32)
        return [Face(box=box, score=0.99, landmarks=points)]

    detect.calls = 0
    analysis = analyse(
        ((i, frame) for i in range(n)), detect, TrackerSettings(smoothing=strength, min_hits=1)
    )
    assert len(analysis.tracks) == 1
    stored = np.stack([analysis.faces_at(i)[0].face.landmarks for i in range(n)])
    if strength == 0.0:
        np.testing.assert_array_equal(stored, noisy.astype(np.float32))
    else:
        assert jitter(stored, truth) * 3 <= jitter(noisy, truth)
        assert abs(lag(stored.astype(np.float64), "accelerating")) <= 0.1


def test_quick_head_shake_is_followed():
    """A head shaking ±12 px every 8 frames is far faster than what the strong rigid fit
    passes: the part it rounds off stands out of the noise and is followed."""
    rng = np.random.default_rng(4)
    n = 60
    t = np.arange(n, dtype=np.float64)
    states = path(t, "constant")
    states[:, 0] += 12.0 * np.sin(2 * np.pi * t / 8) * (t >= 20)  # still, then shaking
    truth = faces_on(states)
    noisy = truth + rng.normal(0.0, NOISE, truth.shape)
    smoothed = smooth_rows(rows_of(range(n), [1] * n, noisy), t, (), DEFAULT).landmarks
    error = np.linalg.norm((smoothed - truth)[:, :3].mean(axis=1), axis=-1)
    assert error[22:-2].max() < 3.0, error[22:-2].max()
    # before the shake, still smoothed
    assert jitter(smoothed[:18], truth[:18]) * 3 <= jitter(noisy[:18], truth[:18])
