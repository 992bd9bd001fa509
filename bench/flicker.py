"""Flicker, lag and kept motion of swapped faces in videos (issue #15's benchmark).

Three clips are made here from insightface's ``t1.jpg`` (six real faces), each with a
motion known exactly, and every setting runs the real job (``engine.jobrun.run_job``:
the whole-video analysis pass, then the segments; embedded MTCNN detector and
``classic`` swapper, selector ``many``, content gate off):

1. **pan**: a 640×360 window panning across the photo at a constant, whole number of
   pixels per frame. The *pan-compensated flicker* of a video is the mean absolute
   change, inside the faces' regions, between frame t and frame t+1 shifted back by
   the pan; ours is the job's output's, divided by the source clip's. The *floor* is
   what a perfect tracker would score: each face as the job swapped it in the first
   frame that shows it whole, pasted rigidly onto the photo, panned, encoded like the
   source clip and re-encoded by the job's own encoder (a pass-through processor).
   Target: ours ≤ 1.5 × the floor with default options, at ≤ 10 % fewer frames per
   second than tracking off (``temporal_smoothing`` 0). A whole-pixel pan is undone
   exactly, so the source's own change is only the codec's (a few hundredths of a
   level) and the floor is strict: the table gives the landmarks' jitter (RMS distance,
   px, of the swap's landmarks from the true ones, less each face's constant offset),
   and a calibration line (renders placed by the true landmarks plus Gaussian noise of
   σ px, encoded by the job's encoder) shows what a given jitter costs on this measure.
2. **turn**: the window moves on a curved path with accelerating speed and turns by a
   few degrees. Lag: the shift τ (frames) that best lines up the landmarks the swap
   used (the job's stored analysis) with the faces' true landmarks at t − τ (a least-
   squares fit on a 0.05-frame grid, one constant offset per face for the detector's
   own bias). For the default options also measured by detecting the swapped faces on
   the output frames. Target: lag ≤ 1 frame.
3. **mouth**: two still windows side by side, each on a face whose mouth opens and
   closes (the region below the nose is stretched vertically with a known period).
   The mouth signal is the mouth corners' height below the eyes; a sinusoid of the
   known period fitted to it gives amplitude and phase. Kept motion: the swap's
   landmarks' amplitude ÷ the raw detections' (``temporal_smoothing`` 0, what
   tracking off follows); lag from the phases. Target: kept ≥ 90 %, lag ≤ 1 frame.
   The table also shows the share of the true (warped) motion the detector reports,
   and how much the still eyes and nose jitter.

The source face is Tom Hanks' photo from the insightface wheel (with a margin, which
SCRFD needs); ``--detector scrfd_2.5g`` runs the real SCRFD weights from
``../shared/models`` instead of MTCNN. Frames per second are end-to-end (decode,
analysis pass, swap, encode) per job, on wall time and on process CPU time (steadier
on a loaded machine); the default's and tracking off's are medians of ``--rounds``
alternating runs. The machine's load average is printed: others' work skews the fps.

    python -m bench.flicker [--frames 32] [--smoothing 0,0.3,0.5,0.8,0.9] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from engine import video
from engine.faces import Face
from engine.frame import FrameResult
from engine.jobrun import JobRequest, run_job
from engine.models.manager import ModelManager
from engine.models.registry import REGISTRY
from engine.models.resolve import BUILTIN_DETECTOR
from engine.options import OutputOptions, SwapOptions
from engine.pipeline import FaceEngine
from engine.tracking import VideoAnalysis
from engine.video_plan import ANALYSIS_PREFIX
from tests.assets import SCRFD_2_5G, T1, TOM_HANKS, load
from tests.media import decode_frames, encode_frames

FPS = 25
SIZE = (640, 360)  # the pan and turn clips
PHOTO_SCALE = 0.8  # t1 (1280×886) at 1024×709: every face fits the window's height
WINDOW_TOP = 30
PAN_SPEED = 6  # pixels per frame, whole, so the pan is compensated exactly
REGION_GROWTH = 1.25  # a face's region: its box grown about its centre (the paste edge)
TURN_DEGREES = 6.0
# x, y, w, h in the full-size photo of the two windows side by side in the mouth clip: t1's
# leftmost and rightmost faces (the two whose mouth corners MTCNN follows best)
MOUTH_WINDOWS = ((0, 250, 320, 240), (960, 220, 320, 240))
MOUTH_PERIOD = 10  # frames per open-close cycle (2.5 Hz at 25 fps)
MOUTH_STRETCH = 0.4  # the stretch below the nose at its widest (1 + this)
NOISE_LEVELS = (0.05, 0.1, 0.25, 0.5)  # px: landmark noise of the calibration renders
LAG_GRID = np.arange(-2.0, 4.0001, 0.05)
TARGET_FLOOR, TARGET_FPS, TARGET_LAG, TARGET_KEPT = 1.5, 0.9, 1.0, 0.9


@dataclass(frozen=True)
class Setting:
    """The options a run varies."""

    smoothing: float
    detect_every: int = 1
    blend: float = 0.0

    def options(self) -> dict:
        return {
            "selector": "many",
            "temporal_smoothing": self.smoothing,
            "detect_every": self.detect_every,
            "temporal_blend": self.blend,
        }

    @property
    def label(self) -> str:
        blend = f", blend {self.blend:g}" if self.blend else ""
        return f"smoothing {self.smoothing:g}, detect_every {self.detect_every}{blend}"


@dataclass(frozen=True)
class Run:
    """One job's output frames, the analysis it swapped by, and its speed."""

    setting: Setting
    frames: list
    analysis: VideoAnalysis
    fps_wall: float
    fps_cpu: float


@dataclass(frozen=True)
class Bench:
    """What every run shares: the warm engine, a scratch folder, the detector, a log."""

    engine: FaceEngine
    tmp: Path
    detector: str
    log: Callable[[str], None]
    source: Path  # the source face: Tom Hanks' 112-px crop with a margin (SCRFD needs one)

    def detect(self, image: np.ndarray) -> list[Face]:
        """The job's detector's faces, left to right."""
        faces = self.engine.detect(image, SwapOptions(detector=self.detector))
        return sorted(faces, key=lambda face: float(face.box[0]))


def default_setting() -> Setting:
    defaults = SwapOptions()
    return Setting(defaults.temporal_smoothing, defaults.detect_every, defaults.temporal_blend)


# -- clips --------------------------------------------------------------------------------


def pan_offsets(count: int, speed: int = PAN_SPEED) -> np.ndarray:
    """The window's left edge per frame, centred on the photo's travel."""
    travel = speed * (count - 1)
    start = (int(1280 * PHOTO_SCALE) - SIZE[0] - travel) // 2
    return start + speed * np.arange(count)


def pan_frames(photo: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    width, height = SIZE
    return [photo[WINDOW_TOP : WINDOW_TOP + height, x : x + width].copy() for x in offsets]


def turn_matrix(t: float, count: int) -> np.ndarray:
    """Photo → frame at (fractional) frame t: the window's centre runs on a curve with a
    speed growing from 0 to 12 px/frame, and the window turns by up to TURN_DEGREES."""
    u = t / (count - 1)
    travel = 6.0 * (count - 1)  # x = travel·u², speed 12·u px/frame
    cx = 512.0 - travel / 2 + travel * u * u
    cy = 210.0 + 25.0 * math.sin(2 * math.pi * u)
    angle = TURN_DEGREES * (u * u - 0.5)
    rotation = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    rotation[:, 2] += np.array([SIZE[0] / 2 - cx, SIZE[1] / 2 - cy])
    return rotation


def turn_frames(photo: np.ndarray, count: int) -> list[np.ndarray]:
    return [
        cv2.warpAffine(photo, turn_matrix(t, count), SIZE, flags=cv2.INTER_LINEAR)
        for t in range(count)
    ]


def transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def mouth_stretch(t: float) -> float:
    return 1.0 + MOUTH_STRETCH * 0.5 * (1.0 - math.cos(2 * math.pi * t / MOUTH_PERIOD))


def mouth_scene(photo: np.ndarray, faces: Sequence[Face]) -> tuple[np.ndarray, list[Face]]:
    """``MOUTH_WINDOWS`` side by side, and the photo faces wholly inside them, moved there."""
    crops, moved, left = [], [], 0
    for x0, y0, width, height in MOUTH_WINDOWS:
        crops.append(photo[y0 : y0 + height, x0 : x0 + width])
        shift = np.array([x0 - left, y0], dtype=np.float32)
        for face in faces:
            box = face.box - np.tile(shift, 2)
            if box[0] >= left and box[1] >= 0 and box[2] <= left + width and box[3] <= height:
                moved.append(replace(face, box=box, landmarks=face.landmarks - shift))
        left += width
    return np.hstack(crops), moved


def mouth_frames(scene: np.ndarray, faces: Sequence[Face], count: int) -> list[np.ndarray]:
    """The still scene with its faces' lower halves stretching down and back (a mouth
    opening and closing): below the nose, y ↦ nose + (y − nose)·s(t) where the weight is
    1 (the mouth and its corners), easing to the identity away from it."""
    height, width = scene.shape[:2]
    window = scene.astype(np.float32)
    grid_x, grid_y = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    frames = []
    for t in range(count):
        map_y = grid_y.copy()
        shrink = 1.0 - 1.0 / mouth_stretch(t)
        for face in faces:
            nose, mouth = face.landmarks[2], face.landmarks[3:5]
            depth = float(mouth[:, 1].mean() - nose[1])
            span = float(mouth[1, 0] - mouth[0, 0])  # the flat part's half-width
            centre = float(mouth[:, 0].mean())
            across = np.clip((np.abs(grid_x - centre) - span) / span, 0, 1)
            below = (grid_y - nose[1]) / depth  # 0 at the nose, 1 at the mouth
            down = np.clip((below - 1.6) / 0.8, 0, 1)
            weight = (0.5 + 0.5 * np.cos(np.pi * across)) * (0.5 + 0.5 * np.cos(np.pi * down))
            weight = np.where(below > 0, weight, 0.0).astype(np.float32)
            map_y -= weight * (grid_y - nose[1]) * shrink
        frames.append(
            cv2.remap(window, grid_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            .clip(0, 255)
            .astype(np.uint8)
        )
    return frames


# -- running ------------------------------------------------------------------------------


class Replay:
    """Hands the job's encoder prepared frames in place of the decoded ones."""

    def __init__(self, frames: Sequence[np.ndarray]) -> None:
        self.frames = frames

    def process(self, frame: np.ndarray) -> FrameResult:
        raise AssertionError("the video driver gives the frame index")

    def process_at(self, frame: np.ndarray, frame_index: int) -> FrameResult:
        return FrameResult(self.frames[frame_index], 1)

    def fork(self) -> Replay:
        return self

    def fork_at(self, frame_index: int) -> Replay:
        return self


class PassThrough:
    """Changes nothing but counts every frame as swapped, so the job's encoder re-encodes
    the clip (a clip with no swapped frame would be copied through)."""

    def process(self, frame: np.ndarray) -> FrameResult:
        return FrameResult(frame, 1)

    def fork(self) -> PassThrough:
        return self


def run_setting(bench: Bench, clip: Path, setting: Setting) -> Run:
    """The job on ``clip`` (sources: Tom Hanks' photo; every face swapped)."""
    name = f"{clip.stem}-{setting.smoothing:g}-{setting.detect_every}-{setting.blend:g}-"
    folder = Path(tempfile.mkdtemp(prefix=name, dir=bench.tmp))  # fresh: nothing to resume
    workdir, output = folder / "work", folder / "out.mp4"
    options = {**setting.options(), "detector": bench.detector}
    request = JobRequest(
        [bench.source], clip, output, options, content_threshold=None, workdir=workdir
    )
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_job(bench.engine, request)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    (stored,) = workdir.glob(f"{ANALYSIS_PREFIX}*.npz")
    frames = decode_frames(output)
    return Run(
        setting, frames, VideoAnalysis.load(stored), result.frames / wall, result.frames / cpu
    )


def reencode(frames: Sequence[np.ndarray], path: Path) -> list[np.ndarray]:
    """``frames`` encoded like a source clip, then re-encoded by the job's encoder."""
    clip = encode_frames(frames, path.with_suffix(".src.mp4"), FPS)
    video.swap_video([PassThrough()], clip, path, OutputOptions())
    return decode_frames(path)


def job_encoded(frames: Sequence[np.ndarray], clip: Path, path: Path) -> list[np.ndarray]:
    """``frames`` (one per frame of ``clip``) encoded by the job's encoder."""
    video.swap_video([Replay(frames)], clip, path, OutputOptions())
    return decode_frames(path)


# -- measures -----------------------------------------------------------------------------


def grown(box: np.ndarray, factor: float = REGION_GROWTH) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * factor / 2, (box[3] - box[1]) * factor / 2
    return np.array([cx - hw, cy - hh, cx + hw, cy + hh])


def regions_in(regions: Sequence[np.ndarray], offset: int) -> list[tuple[int, int, int, int]]:
    """The (photo) regions wholly inside the window at ``offset``, in frame pixels."""
    width, height = SIZE
    inside = []
    for x1, y1, x2, y2 in regions:
        left, top = int(math.floor(x1)) - offset, int(math.floor(y1)) - WINDOW_TOP
        right, bottom = int(math.ceil(x2)) - offset, int(math.ceil(y2)) - WINDOW_TOP
        if left >= 0 and top >= 0 and right <= width and bottom <= height:
            inside.append((left, top, right, bottom))
    return inside


def pan_flicker(frames: Sequence[np.ndarray], offsets: np.ndarray, regions) -> float:
    """Mean |frame t+1 shifted back by the pan − frame t| over the regions wholly inside
    both frames (levels, all channels)."""
    total, count = 0.0, 0
    for t in range(len(frames) - 1):
        shift = int(offsets[t + 1] - offsets[t])
        now = frames[t].astype(np.float32)
        later = frames[t + 1].astype(np.float32)
        for left, top, right, bottom in regions_in(regions, int(offsets[t + 1])):
            if left + shift < 0 or right + shift > SIZE[0]:
                continue  # not wholly inside frame t
            a = now[top:bottom, left + shift : right + shift]
            b = later[top:bottom, left:right]
            total += float(np.abs(a - b).sum())
            count += a.size
    return total / max(count, 1)


def floor_frames(
    photo: np.ndarray, output: Sequence[np.ndarray], offsets: np.ndarray, regions
) -> list[np.ndarray]:
    """The photo with every face as the job swapped it in the first frame that shows it
    whole, panned like the clip: what a perfectly rigid swap would show."""
    pasted = photo.copy()
    for region in regions:
        for t, offset in enumerate(offsets):
            inside = regions_in([region], int(offset))
            if inside:
                left, top, right, bottom = inside[0]
                x, y = left + int(offset), top + WINDOW_TOP
                pasted[y : y + bottom - top, x : x + right - left] = output[t][
                    top:bottom, left:right
                ]
                break
    return pan_frames(pasted, offsets)


def truth_at(faces: Sequence[Face], matrix: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """Each photo face's landmarks in a frame, and whether its box is wholly inside."""
    width, height = SIZE
    result = []
    for face in faces:
        x1, y1, x2, y2 = grown(face.box, 1.1)
        corners = transform(np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]]), matrix)
        inside = bool(
            (corners >= 0).all()
            and (corners[:, 0] < width).all()
            and (corners[:, 1] < height).all()
        )
        result.append((transform(face.landmarks.astype(np.float64), matrix), inside))
    return result


def matched(
    found: Sequence[np.ndarray], truth: Sequence[tuple[np.ndarray, bool]], radius: float = 30.0
) -> list[tuple[int, np.ndarray]]:
    """(photo face, landmarks) for each found landmark set near a whole true face."""
    pairs = []
    for points in found:
        distances = [
            float(np.linalg.norm(points.mean(axis=0) - true.mean(axis=0))) if inside else np.inf
            for true, inside in truth
        ]
        best = int(np.argmin(distances))
        if distances[best] < radius:
            pairs.append((best, np.asarray(points, dtype=np.float64)))
    return pairs


def fit_lag(
    samples: Sequence[tuple[float, int, np.ndarray]], truth: Callable[[float, int], np.ndarray]
) -> float:
    """The τ (frames) that best explains ``samples`` (t, face, landmarks) as the truth at
    t − τ, plus one constant offset per face (least squares on ``LAG_GRID``, refined by
    a parabola through the best three)."""
    faces = np.array([face for _, face, _ in samples])
    found = np.stack([points for _, _, points in samples])
    costs = []
    for tau in LAG_GRID:
        error = found - np.stack([truth(t - tau, face) for t, face, _ in samples])
        for face in np.unique(faces):
            error[faces == face] -= error[faces == face].mean(axis=0)
        costs.append(float((error**2).sum()))
    best = int(np.argmin(costs))
    if 0 < best < len(costs) - 1:
        left, mid, right = costs[best - 1 : best + 2]
        curve = left - 2 * mid + right
        if curve > 0:
            return float(
                LAG_GRID[best] + 0.5 * (left - right) / curve * (LAG_GRID[1] - LAG_GRID[0])
            )
    return float(LAG_GRID[best])


def turn_lag(
    landmarks_by_frame: Sequence[Sequence[np.ndarray]], faces: Sequence[Face], count: int
) -> float:
    samples = []
    for t, found in enumerate(landmarks_by_frame):
        truth = truth_at(faces, turn_matrix(t, count))
        samples += [(float(t), face, points) for face, points in matched(found, truth)]

    def true_points(t: float, face: int) -> np.ndarray:
        return transform(faces[face].landmarks.astype(np.float64), turn_matrix(t, count))

    return fit_lag(samples, true_points)


def pan_matrix(offset: int) -> np.ndarray:
    return np.array([[1.0, 0.0, -offset], [0.0, 1.0, -WINDOW_TOP]])


def jitter(
    landmarks_by_frame: Sequence[Sequence[np.ndarray]],
    faces: Sequence[Face],
    matrices: Sequence[np.ndarray],
) -> float:
    """RMS distance (px) of found landmarks from the true ones, less each face's mean
    offset (a detector's own bias, or a steady lag, is not jitter)."""
    errors: dict[int, list[np.ndarray]] = {}
    for found, matrix in zip(landmarks_by_frame, matrices, strict=True):
        truth = truth_at(faces, matrix)
        for face, points in matched(found, truth):
            errors.setdefault(face, []).append(points - truth[face][0])
    squares = [
        ((np.stack(e) - np.stack(e).mean(axis=0)) ** 2).sum(axis=-1).ravel()
        for e in errors.values()
    ]
    return float(np.sqrt(np.concatenate(squares).mean())) if squares else float("nan")


def plan_landmarks(analysis: VideoAnalysis, count: int) -> list[list[np.ndarray]]:
    return [[tracked.face.landmarks for tracked in analysis.faces_at(t)] for t in range(count)]


def mouth_signals(analysis: VideoAnalysis, count: int) -> dict[int, np.ndarray]:
    """Per track: the mouth corners' height below the eyes, per frame (NaN if absent)."""
    signals: dict[int, np.ndarray] = {}
    for t in range(count):
        for tracked in analysis.faces_at(t):
            points = tracked.face.landmarks
            signal = signals.setdefault(tracked.track_id, np.full(count, np.nan))
            signal[t] = points[3:5, 1].mean() - points[0:2, 1].mean()
    return signals


def still_jitter(analysis: VideoAnalysis, count: int) -> float:
    """RMS distance (px) of the eyes and nose (which the mouth clip keeps still) from
    their mean place on their track."""
    points: dict[int, list[np.ndarray]] = {}
    for t in range(count):
        for tracked in analysis.faces_at(t):
            points.setdefault(tracked.track_id, []).append(tracked.face.landmarks[:3])
    squares = [
        ((np.stack(p) - np.stack(p).mean(axis=0)) ** 2).sum(axis=-1).ravel()
        for p in points.values()
    ]
    return float(np.sqrt(np.concatenate(squares).mean())) if squares else float("nan")


def sinusoid(signal: np.ndarray) -> tuple[float, float]:
    """Amplitude and phase (radians) of the MOUTH_PERIOD component (with a mean and a
    linear trend), by least squares over the frames present."""
    t = np.flatnonzero(~np.isnan(signal)).astype(np.float64)
    omega = 2 * math.pi / MOUTH_PERIOD
    basis = np.stack([np.ones_like(t), t, np.cos(omega * t), np.sin(omega * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, signal[~np.isnan(signal)], rcond=None)
    return float(math.hypot(coef[2], coef[3])), float(math.atan2(coef[3], coef[2]))


def phase_lag(phase: float, reference: float) -> float:
    """Frames by which a sinusoid of phase ``phase`` trails one of phase ``reference``."""
    delta = (phase - reference + math.pi) % (2 * math.pi) - math.pi
    return delta / (2 * math.pi / MOUTH_PERIOD)


def mouth_truth(faces: Sequence[Face], count: int) -> dict[int, np.ndarray]:
    """Per photo face: the true mouth signal per frame."""
    signals = {}
    for index, face in enumerate(faces):
        nose, mouth, eyes = (
            face.landmarks[2, 1],
            face.landmarks[3:5, 1].mean(),
            face.landmarks[0:2, 1].mean(),
        )
        signals[index] = np.array(
            [nose + (mouth - nose) * mouth_stretch(t) - eyes for t in range(count)]
        )
    return signals


def track_faces(
    analysis: VideoAnalysis, faces: Sequence[Face], offset: np.ndarray
) -> dict[int, int]:
    """Track id → photo face, by the track's first box centre."""
    result = {}
    centres = [
        np.array([(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2]) - offset for f in faces
    ]
    for summary in analysis.tracks:
        tracked = next(
            t for t in analysis.faces_at(summary.first_frame) if t.track_id == summary.track_id
        )
        box = tracked.face.box
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        result[summary.track_id] = int(np.argmin([np.linalg.norm(centre - c) for c in centres]))
    return result


def padded_source(path: Path) -> Path:
    """Tom Hanks' photo (a 112-px aligned crop) with a 60-px replicated margin."""
    image = cv2.copyMakeBorder(load(TOM_HANKS), 60, 60, 60, 60, cv2.BORDER_REPLICATE)
    cv2.imwrite(str(path), image)
    return path


def models_engine(models: Path, detector: str, threads: int) -> FaceEngine:
    """A CPU engine on a fresh models folder: embedded models only, plus the real
    SCRFD 2.5G weights when ``detector`` asks for them."""
    models.mkdir(parents=True, exist_ok=True)
    if detector != BUILTIN_DETECTOR:
        if detector != "scrfd_2.5g" or not SCRFD_2_5G.is_file():
            raise SystemExit(f"--detector {detector}: only scrfd_2.5g, from {SCRFD_2_5G}")
        shutil.copy(SCRFD_2_5G, models / REGISTRY[detector].filename)
    return FaceEngine(ModelManager(models), "cpu", threads)


# -- the benchmark ------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def bench_pan(
    bench: Bench,
    photo,
    photo_faces,
    settings: Sequence[Setting],
    count: int,
    speed: int = PAN_SPEED,
    timed: Sequence[Setting] = (),
    rounds: int = 1,
) -> tuple[list[dict], list[dict]]:
    """The pan clip's rows (one per setting) and its calibration rows. The ``timed``
    settings (the default and tracking off) run ``rounds`` times, alternately, and
    report their median fps: the fps target compares them on a machine others use."""
    offsets = pan_offsets(count, speed)
    clip = encode_frames(pan_frames(photo, offsets), bench.tmp / "pan.mp4", FPS)
    run_setting(bench, clip, Setting(0.0, 4))  # warm: sessions, caches, the encoder
    speeds: dict[Setting, list[tuple[float, float]]] = {}
    for _ in range(rounds - 1):
        for setting in timed:
            run = run_setting(bench, clip, setting)
            speeds.setdefault(setting, []).append((run.fps_wall, run.fps_cpu))
    source_frames = decode_frames(clip)
    regions = [grown(face.box) for face in photo_faces]
    matrices = [pan_matrix(int(offset)) for offset in offsets]
    source = pan_flicker(source_frames, offsets, regions)
    rows, floors = [], []
    for setting in settings:
        run = run_setting(bench, clip, setting)
        floor_video = reencode(
            floor_frames(photo, run.frames, offsets, regions), bench.tmp / "floor.mp4"
        )
        ours, floor = (
            pan_flicker(run.frames, offsets, regions),
            pan_flicker(floor_video, offsets, regions),
        )
        floors.append(floor)
        rows.append(
            {
                **asdict(setting),
                "source": source,
                "ours": ours / source,
                "floor": floor / source,
                "ours_over_floor": ours / floor,
                "jitter_px": jitter(plan_landmarks(run.analysis, count), photo_faces, matrices),
                "fps_wall": run.fps_wall,
                "fps_cpu": run.fps_cpu,
            }
        )
        if setting in speeds:
            samples = [*speeds[setting], (run.fps_wall, run.fps_cpu)]
            rows[-1]["fps_wall"] = float(np.median([wall for wall, _ in samples]))
            rows[-1]["fps_cpu"] = float(np.median([cpu for _, cpu in samples]))
            rows[-1]["fps_rounds"] = len(samples)
        bench.log(f"pan, {setting.label}: ours/floor {ours / floor:.2f}, {run.fps_wall:.1f} fps")
    floor = float(np.median(floors))
    calibration = []
    for sigma in (0.0, *NOISE_LEVELS):
        rendered = noisy_render(bench, source_frames, photo_faces, offsets, sigma)
        change = pan_flicker(job_encoded(rendered, clip, bench.tmp / "noise.mp4"), offsets, regions)
        calibration.append({"sigma_px": sigma, "ours_over_floor": change / floor})
    bench.log(
        "pan calibration: "
        + ", ".join(f"σ {c['sigma_px']:g} px → {c['ours_over_floor']:.2f}" for c in calibration)
    )
    return rows, calibration


def noisy_render(bench: Bench, frames, faces, offsets, sigma: float) -> list[np.ndarray]:
    """The job's swap (classic, every face) on the decoded source frames, placed by the
    true landmarks plus Gaussian noise of ``sigma`` px."""
    swapper = bench.engine.prepare(
        [load(bench.source)], SwapOptions(selector="many", detector=bench.detector)
    )
    classic = bench.engine.swapper(swapper.resolved.swapper)
    rng = np.random.default_rng(0)
    rendered = []
    for frame, offset in zip(frames, offsets, strict=True):
        shift = np.array([offset, WINDOW_TOP], dtype=np.float32)
        for face in faces:
            points = face.landmarks - shift + rng.normal(0.0, sigma, (5, 2))
            moved = replace(
                face, box=face.box - np.tile(shift, 2), landmarks=points.astype(np.float32)
            )
            frame = classic.swap(frame, moved, swapper.source, swapper.options)
        rendered.append(frame)
    return rendered


def bench_turn(bench: Bench, photo, photo_faces, settings, count, default) -> list[dict]:
    clip = encode_frames(turn_frames(photo, count), bench.tmp / "turn.mp4", FPS)
    rows = []
    for setting in settings:
        run = run_setting(bench, clip, setting)
        row = {
            **asdict(setting),
            "lag": turn_lag(plan_landmarks(run.analysis, count), photo_faces, count),
        }
        if setting == default:
            detected = [[face.landmarks for face in bench.detect(frame)] for frame in run.frames]
            row["lag_output"] = turn_lag(detected, photo_faces, count)
        rows.append(row)
        bench.log(f"turn, {setting.label}: lag {row['lag']:.2f} frames")
    return rows


def bench_mouth(bench: Bench, full_photo, settings, count) -> list[dict]:
    scene, faces = mouth_scene(full_photo, bench.detect(full_photo))
    clip = encode_frames(mouth_frames(scene, faces, count), bench.tmp / "mouth.mp4", FPS)
    truth = mouth_truth(faces, count)
    offset = np.zeros(2)
    runs = [(setting, run_setting(bench, clip, setting)) for setting in settings]
    raw_run = next(
        (run for setting, run in runs if setting.smoothing == 0 and setting.detect_every == 1), None
    )
    raw = {}
    if raw_run is not None:
        owners = track_faces(raw_run.analysis, faces, offset)
        raw = {
            owners[track]: sinusoid(s)
            for track, s in mouth_signals(raw_run.analysis, count).items()
        }
    rows = []
    for setting, run in runs:
        owners = track_faces(run.analysis, faces, offset)
        kept_raw, kept_truth, lags, lags_truth = [], [], [], []
        for track, signal in mouth_signals(run.analysis, count).items():
            face = owners[track]
            amplitude, phase = sinusoid(signal)
            true_amplitude, true_phase = sinusoid(truth[face])
            kept_truth.append(amplitude / true_amplitude)
            lags_truth.append(phase_lag(phase, true_phase))
            if face in raw:
                kept_raw.append(amplitude / raw[face][0])
                lags.append(phase_lag(phase, raw[face][1]))
        rows.append(
            {
                **asdict(setting),
                "kept": float(np.mean(kept_raw)) if kept_raw else None,
                "kept_truth": float(np.mean(kept_truth)),
                "lag": float(np.mean(lags)) if lags else None,
                "lag_truth": float(np.mean(lags_truth)),
                "still_jitter_px": still_jitter(run.analysis, count),
            }
        )
        bench.log(f"mouth, {setting.label}: kept {rows[-1]['kept']}, lag {rows[-1]['lag']}")
    return rows


def pan_table(rows: list[dict], default: Setting) -> list[str]:
    off = {row["detect_every"]: row for row in rows if row["smoothing"] == 0 and row["blend"] == 0}
    lines = [
        "| temporal_smoothing | detect_every | temporal_blend | ours (× source) | floor (× source) "
        "| ours / floor | jitter (px) | fps (wall) | fps (CPU) | fps vs off (CPU) | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = off.get(row["detect_every"])
        speed = row["fps_cpu"] / base["fps_cpu"] if base else float("nan")
        ok = row["ours_over_floor"] <= TARGET_FLOOR
        is_default = Setting(row["smoothing"], row["detect_every"], row["blend"]) == default
        if is_default:
            ok = ok and speed >= TARGET_FPS
        mark = " (default)" if is_default else ""
        lines.append(
            f"| {row['smoothing']:g}{mark} | {row['detect_every']} | {row['blend']:g} | {row['ours']:.2f} "
            f"| {row['floor']:.2f} | {row['ours_over_floor']:.2f} | {row['jitter_px']:.2f} | {row['fps_wall']:.1f} "
            f"| {row['fps_cpu']:.1f} | {speed:.2f} | {verdict(ok)} |"
        )
    return lines


def turn_table(rows: list[dict], default: Setting) -> list[str]:
    lines = [
        "| temporal_smoothing | detect_every | lag (frames) | lag on output frames | target |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        mark = (
            " (default)"
            if Setting(row["smoothing"], row["detect_every"], row["blend"]) == default
            else ""
        )
        output = f"{row['lag_output']:.2f}" if "lag_output" in row else "–"
        ok = abs(row["lag"]) <= TARGET_LAG and abs(row.get("lag_output", 0.0)) <= TARGET_LAG
        lines.append(
            f"| {row['smoothing']:g}{mark} | {row['detect_every']} | {row['lag']:.2f} | {output} | {verdict(ok)} |"
        )
    return lines


def mouth_table(rows: list[dict], default: Setting) -> list[str]:
    lines = [
        "| temporal_smoothing | detect_every | kept (× raw detections) | lag (frames) "
        "| kept (× true motion) | lag vs truth | still eyes/nose jitter (px) | target |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def shown(value, fmt):
        return "–" if value is None else format(value, fmt)

    for row in rows:
        mark = (
            " (default)"
            if Setting(row["smoothing"], row["detect_every"], row["blend"]) == default
            else ""
        )
        ok = (
            row["kept"] is not None and row["kept"] >= TARGET_KEPT and abs(row["lag"]) <= TARGET_LAG
        )
        lines.append(
            f"| {row['smoothing']:g}{mark} | {row['detect_every']} | {shown(row['kept'], '.0%')} "
            f"| {shown(row['lag'], '.2f')} | {row['kept_truth']:.0%} | {row['lag_truth']:.2f} "
            f"| {row['still_jitter_px']:.2f} | {verdict(ok)} |"
        )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=32, help="frames per clip")
    parser.add_argument(
        "--smoothing", default="0,0.3,0.5,0.8,0.9", help="temporal_smoothing values"
    )
    parser.add_argument("--detect-every", default="1,2,4", help="detect_every values")
    parser.add_argument("--blend", default="", help="temporal_blend values to add at the default")
    parser.add_argument("--clips", default="pan,turn,mouth", help="which clips to run")
    parser.add_argument("--pan-speed", type=int, default=PAN_SPEED, help="pan, px per frame")
    parser.add_argument(
        "--detector",
        default=BUILTIN_DETECTOR,
        help=f"{BUILTIN_DETECTOR} (embedded) or scrfd_2.5g (copied from {SCRFD_2_5G.parent})",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs of the default and of off, for their fps"
    )
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: all)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clips = set(args.clips.split(","))
    smoothing = [float(v) for v in args.smoothing.split(",")]
    every = [int(v) for v in args.detect_every.split(",")]
    default = default_setting()
    smoothing = sorted({0.0, default.smoothing, *smoothing})  # off: the fps and motion reference
    pan_settings = [Setting(s, n) for n in every for s in smoothing]
    pan_settings += [Setting(default.smoothing, 1, float(b)) for b in args.blend.split(",") if b]
    motion_settings = [Setting(s) for s in smoothing] + [
        Setting(default.smoothing, n) for n in every if n != 1
    ]
    log = (lambda text: print(text, file=sys.stderr)) if args.json else print
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-flicker-") as tmp_dir:
        tmp = Path(tmp_dir)
        engine = models_engine(tmp / "models", args.detector, args.threads)
        bench = Bench(engine, tmp, args.detector, log, padded_source(tmp / "source.png"))
        full_photo = load(T1)
        photo = cv2.resize(
            full_photo, None, fx=PHOTO_SCALE, fy=PHOTO_SCALE, interpolation=cv2.INTER_AREA
        )
        photo_faces = bench.detect(photo)
        if "pan" in clips:
            timed = [Setting(0.0), default] if default != Setting(0.0) else []
            results["pan"], results["calibration"] = bench_pan(
                bench,
                photo,
                photo_faces,
                pan_settings,
                args.frames,
                args.pan_speed,
                timed,
                args.rounds,
            )
        if "turn" in clips:
            results["turn"] = bench_turn(
                bench, photo, photo_faces, motion_settings, args.frames, default
            )
        if "mouth" in clips:
            results["mouth"] = bench_mouth(bench, full_photo, motion_settings, args.frames)
    elapsed = time.perf_counter() - started
    machine = {
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "seconds": elapsed,
        "frames": args.frames,
        "detector": args.detector,
        "pan_speed": args.pan_speed,
        "default": asdict(default),
    }
    if args.json:
        print(json.dumps({"machine": machine, **results}, indent=2))
        return 0
    print(
        f"\n{args.frames} frames per clip, {SIZE[0]}×{SIZE[1]} (mouth "
        f"{sum(w[2] for w in MOUTH_WINDOWS)}×{MOUTH_WINDOWS[0][3]}) @ {FPS} fps, detector {args.detector}; {os.cpu_count()} cores, "
        f"load average {load_before:.1f} → {machine['load_after']:.1f}; {elapsed:.0f} s"
    )
    if "pan" in results:
        print(
            f"\n### Pan ({args.pan_speed} px/frame): flicker; target ours/floor ≤ {TARGET_FLOOR}, "
            f"default fps ≥ {TARGET_FPS:.0%} of off\n"
        )
        print("\n".join(pan_table(results["pan"], default)))
        print(
            "\nCalibration: the true landmarks plus noise of σ px score "
            + ", ".join(
                f"{c['ours_over_floor']:.2f} (σ {c['sigma_px']:g})" for c in results["calibration"]
            )
            + " × the floor."
        )
    if "turn" in results:
        print(f"\n### Accelerating, turning window: lag; target ≤ {TARGET_LAG:g} frame\n")
        print("\n".join(turn_table(results["turn"], default)))
    if "mouth" in results:
        print(
            f"\n### Mouth opening and closing (period {MOUTH_PERIOD} frames): "
            f"target kept ≥ {TARGET_KEPT:.0%}, lag ≤ {TARGET_LAG:g}\n"
        )
        print("\n".join(mouth_table(results["mouth"], default)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
