"""Tracks through whole jobs: identity lock, a source per face, tracks in the result,
resumed jobs, the split path and trims.

Real files throughout: clips are written here with PyAV (a slow pan across insightface's
``t1.jpg``, or one t1 face on a plain background whose lighting changes frame to frame)
and every output is decoded. The jobs run the real pipeline: the embedded MTCNN
detector, the ``classic`` swapper and, for the identity lock, the ArcFace stand-in (a
real ONNX Runtime session: a fixed random projection of the aligned crop) installed
under its catalogue name. Faces are counted left to right everywhere.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine import video_plan
from engine.errors import InvalidOptions
from engine.jobrun import JobRequest, run_job
from engine.options import SwapOptions, options_to_dict, parse_options
from engine.pipeline import FaceEngine
from engine.tracking import VideoAnalysis
from engine.tracking.identity import cosine_distances
from tests.assets import REPO, T1, TOM_HANKS, load
from tests.media import decode_frames, encode_frames
from tests.standins.registry import install_standins

FPS = 10
SCALE = 0.6  # t1 (1280×886) at 768×532: its faces are 60–75 px wide
WINDOW = (512, 288)  # the pan's window, at the top of the scaled photo
TOP = 20
SWAPPED = 6.0  # levels of mean change inside a face box: a classic swap changes 10+
KEPT = 2.5  # levels: a face box left alone differs only by the re-encoding
SAME = 2.0  # levels: the same swap, encoded in two jobs


# -- media -------------------------------------------------------------------------------


def box_diff(a: np.ndarray, b: np.ndarray, box: np.ndarray) -> float:
    """Mean absolute difference (levels) inside ``box`` (clipped to the frame)."""
    height, width = a.shape[:2]
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    return float(np.abs(a[y1:y2, x1:x2].astype(np.int16) - b[y1:y2, x1:x2]).mean())


def left_to_right(faces):
    return sorted(faces, key=lambda face: float(face.box[0] + face.box[2]))


def left_to_right_tracked(faces):
    return sorted(faces, key=lambda tracked: float(tracked.face.box[0] + tracked.face.box[2]))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """t1 at SCALE: the photo the pans cross."""
    return cv2.resize(load(T1), None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def photo_boxes(engine, photo) -> list[np.ndarray]:
    """The boxes of the faces a pan shows from its first frame (left to right)."""
    faces = left_to_right(engine.detect(photo))
    width, height = WINDOW
    inside = [
        face.box
        for face in faces
        if face.box[2] <= width and face.box[1] >= TOP and face.box[3] <= TOP + height
    ]
    assert len(inside) == 4
    return inside


def pan_offsets(frames: int, speed: int) -> list[int]:
    return [speed * t for t in range(frames)]


def pan_clip(path: Path, photo: np.ndarray, frames: int, speed: int) -> Path:
    """The window panning right by ``speed`` px a frame (faces move left)."""
    width, height = WINDOW
    images = [photo[TOP : TOP + height, x : x + width] for x in pan_offsets(frames, speed)]
    return encode_frames(images, path, FPS)


def boxes_at(boxes: list[np.ndarray], offset: int) -> list[np.ndarray]:
    shift = np.array([offset, TOP, offset, TOP], dtype=np.float32)
    return [box - shift for box in boxes]


def analysis_of(workdir: Path) -> tuple[Path, VideoAnalysis]:
    (stored,) = workdir.glob(f"{video_plan.ANALYSIS_PREFIX}*.npz")
    return stored, VideoAnalysis.load(stored)


@pytest.fixture(scope="module")
def pan10(tmp_path_factory, photo) -> Path:
    return pan_clip(tmp_path_factory.mktemp("pan") / "pan10.mp4", photo, frames=10, speed=3)


@pytest.fixture(scope="module")
def source_b(tmp_path_factory) -> Path:
    """A second source identity: t1's rightmost face, with a margin."""
    path = tmp_path_factory.mktemp("source") / "other.png"
    cv2.imwrite(str(path), load(T1)[210:470, 1070:1280])
    return path


def job(engine, target: Path, output: Path, options: dict, sources=(TOM_HANKS,), **kw):
    request = JobRequest(
        list(sources), target, output, options, content_threshold=None, **kw
    )  # the content gate is tested elsewhere; it is off here
    return run_job(engine, request)


# -- identity lock -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recognizing_engine(tmp_path_factory) -> FaceEngine:
    """MTCNN and classic, plus the ArcFace stand-in under its catalogue name."""
    models = install_standins(tmp_path_factory.mktemp("models"), ("arcface_w600k_r50",))
    return FaceEngine(models, "cpu", 1)


def lit_face(gain: float) -> np.ndarray:
    """One t1 face on a grey background, its lighting scaled by ``gain``."""
    image = np.full((240, 320, 3), 110, np.uint8)
    image[30:210, 70:250] = load(T1)[320:500, 700:880]
    return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


# Lighting per frame: the stand-in's distance to the reference grows with |gain − 1|.
# Mostly near 1 with a few strong frames (median low), and the other way round.
GAINS_NEAR = [1.0, 1.3, 0.95, 1.1, 0.85, 1.05, 0.9, 1.3, 1.0, 1.2, 0.95, 1.1]
GAINS_FAR = [1.3, 0.9, 0.8, 1.2, 1.4, 0.85, 1.05, 1.3, 0.8, 1.1, 1.4, 0.85]


def frame_distances(engine: FaceEngine, clip: Path, reference: np.ndarray) -> np.ndarray:
    """Each decoded frame's face's distance to the reference, measured as the job does:
    the job's detector, the stand-in recognizer, cosine distance."""
    options = SwapOptions(selector="reference")
    distances = []
    for frame in decode_frames(clip):
        (face,) = engine.detect(frame, options, embed=True)
        distances.append(float(cosine_distances(face.embedding[None], reference)[0]))
    return np.array(distances)


def test_identity_lock_swaps_a_track_in_every_frame_or_in_none(tmp_path, recognizing_engine):
    engine = recognizing_engine
    reference_path = tmp_path / "reference.png"
    cv2.imwrite(str(reference_path), lit_face(1.0))
    (reference,) = engine.detect(lit_face(1.0), SwapOptions(selector="reference"), embed=True)
    near = encode_frames([lit_face(g) for g in GAINS_NEAR], tmp_path / "near.mp4", FPS)
    far = encode_frames([lit_face(g) for g in GAINS_FAR], tmp_path / "far.mp4", FPS)
    d_near = frame_distances(engine, near, reference.embedding)
    d_far = frame_distances(engine, far, reference.embedding)
    threshold = float(np.median(d_near) + np.median(d_far)) / 2
    # The clips are what the test needs: medians on either side of the threshold, and
    # single frames of each on the other side (a per-frame decision would flicker).
    assert np.median(d_near) < threshold < np.median(d_far)
    assert (d_near > threshold).sum() >= 2 and (d_far <= threshold).sum() >= 2

    options = {"selector": "reference", "reference_distance": threshold}
    outputs = {}
    for name, clip in (("near", near), ("far", far)):
        result = job(engine, clip, tmp_path / f"{name}-out.mp4", options, reference=reference_path)
        (track,) = result.tracks  # one face, one track for the whole clip
        assert (track["first_frame"], track["last_frame"]) == (0, len(GAINS_NEAR) - 1)
        assert track["swapped"] is (name == "near")
        outputs[name] = (result, decode_frames(result.output), decode_frames(clip))
    box = left_to_right(engine.detect(lit_face(1.0)))[0].box

    result, swapped, source = outputs["near"]
    assert result.faces_swapped == len(GAINS_NEAR)
    changes = [box_diff(a, b, box) for a, b in zip(swapped, source, strict=True)]
    assert min(changes) > SWAPPED, changes  # every frame, those far from the reference too
    result, kept, source = outputs["far"]
    assert result.faces_swapped == 0
    changes = [box_diff(a, b, box) for a, b in zip(kept, source, strict=True)]
    assert max(changes) < KEPT, changes  # no frame, those near the reference neither


# -- face_map ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def group(tmp_path_factory) -> Path:
    """The left half of t1: three faces (a PNG, so outputs compare without loss)."""
    path = tmp_path_factory.mktemp("group") / "group.png"
    cv2.imwrite(str(path), load(T1)[:, :640])
    return path


def test_face_map_on_an_image_gives_each_face_its_own_source(tmp_path, engine, group, source_b):
    target = load(group)
    boxes = [face.box for face in left_to_right(engine.detect(target))]
    assert len(boxes) == 3
    sources = (TOM_HANKS, source_b)
    runs = {
        "both": [{"source": 0, "face": 0}, {"source": 1, "face": 2}],
        "only 0": [{"source": 0, "face": 0}],
        "only 1": [{"source": 1, "face": 2}],
        "crossed": [{"source": 1, "face": 0}],
    }
    out = {}
    for name, face_map in runs.items():
        path = tmp_path / f"{name}.png"
        result = job(engine, group, path, {"face_map": face_map}, sources)
        assert result.faces_swapped == len(face_map)
        out[name] = load(path)
    both = out["both"]
    assert box_diff(both, target, boxes[0]) > SWAPPED and box_diff(both, target, boxes[2]) > SWAPPED
    # Each mapped face is what a run with its source alone makes of it…
    assert box_diff(both, out["only 0"], boxes[0]) < 0.5
    assert box_diff(both, out["only 1"], boxes[2]) < 0.5
    # …which is its own source's face, not the other's…
    assert box_diff(both, out["crossed"], boxes[0]) > SWAPPED / 2
    # …and the face no entry names is left as it was.
    assert box_diff(both, target, boxes[1]) < 0.5


def test_face_map_on_a_video_keeps_each_tracks_source(
    tmp_path, engine, pan10, photo_boxes, source_b
):
    sources = (TOM_HANKS, source_b)
    runs = {
        "both": [{"source": 0, "face": 0}, {"source": 1, "face": 2}],
        "only 0": [{"source": 0, "face": 0}],
        "only 1": [{"source": 1, "face": 2}],
    }
    results, frames = {}, {}
    for name, face_map in runs.items():
        results[name] = job(
            engine,
            pan10,
            tmp_path / f"{name}.mp4",
            {"face_map": face_map},
            sources,
            workdir=tmp_path / f"{name}-work",
        )
        frames[name] = decode_frames(results[name].output)
    source = decode_frames(pan10)
    assert results["both"].faces_swapped == len(source)

    # The result lists every track, the two mapped ones swapped with their sources.
    _, analysis = analysis_of(tmp_path / "both-work")
    first, faces = analysis.first_faces()
    assert first == 0
    ids = [tracked.track_id for tracked in left_to_right_tracked(faces)]
    tracks = {track["id"]: track for track in results["both"].tracks}
    assert set(tracks) == {summary.track_id for summary in analysis.tracks}
    assert (tracks[ids[0]]["swapped"], tracks[ids[0]]["source"]) == (True, [0])
    assert (tracks[ids[2]]["swapped"], tracks[ids[2]]["source"]) == (True, [1])
    assert all(not tracks[i]["swapped"] for i in tracks if i not in (ids[0], ids[2]))
    for i in (ids[0], ids[2]):
        assert (tracks[i]["first_frame"], tracks[i]["last_frame"]) == (0, len(source) - 1)

    for t, offset in enumerate(pan_offsets(len(source), 3)):
        boxes = boxes_at(photo_boxes, offset)
        both = frames["both"][t]
        assert box_diff(both, source[t], boxes[0]) > SWAPPED
        assert box_diff(both, source[t], boxes[2]) > SWAPPED
        assert box_diff(both, frames["only 0"][t], boxes[0]) < SAME
        assert box_diff(both, frames["only 1"][t], boxes[2]) < SAME
        assert box_diff(both, frames["only 0"][t], boxes[2]) > SWAPPED  # face 2: its own source
        for unmapped in (1, 3):
            assert box_diff(both, source[t], boxes[unmapped]) < KEPT


def run_cli(*args, data_dir: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "app.py"), "run", "--data-dir", str(data_dir)]
    return subprocess.run(
        [*command, "--quiet", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
    )


@pytest.mark.parametrize(
    ("face_map", "message"),
    [("0:3", "names face 3, but the target's first frame with faces has 3"), ("1:0", "source 1")],
)
def test_cli_refuses_bad_face_map_indices_before_any_work(tmp_path, group, face_map, message):
    output = tmp_path / "out.png"
    proc = run_cli(
        "--source", TOM_HANKS, "--target", group, "--output", output,
        "--face-map", face_map, data_dir=tmp_path / "data",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not output.exists()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """A live studio process (its own data directory and API key)."""
    from tests.live_studio import StudioProcess, create_key

    data = tmp_path_factory.mktemp("studio")
    key = create_key(data, "alice")
    process = StudioProcess(data).start()
    yield process, key
    process.stop()


@pytest.mark.parametrize(
    ("face_map", "message"),
    [
        ([{"source": 1, "face": 0}], "face_map entry 0 names source 1"),
        ([{"source": 0, "face": 0}, {"source": 0, "reference": 0}], "names reference 0"),
        ([{"source": 0, "face": 3}], "names face 3"),
    ],
)
def test_rest_refuses_bad_face_map_indices_with_422(studio, group, face_map, message):
    import httpx

    process, key = studio
    files = [
        ("source", ("tom.png", TOM_HANKS.read_bytes())),
        ("target", ("group.png", group.read_bytes())),
    ]
    data = {"options": json.dumps({"face_map": face_map})}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=process.url, headers=headers, timeout=60) as http:
        before = len(http.get("/api/v1/jobs").json()["jobs"])
        response = http.post("/api/v1/jobs", files=files, data=data)
        assert response.status_code == 422, response.text
        assert message in response.json()["error"]["message"]
        assert len(http.get("/api/v1/jobs").json()["jobs"]) == before  # nothing queued


def test_bad_face_map_indices_fail_before_any_work_in_the_engine(tmp_path, engine, pan10):
    """A face index the video's first frame does not have stops the job before the
    analysis pass (nothing in the work directory, no output)."""
    workdir, output = tmp_path / "work", tmp_path / "out.mp4"
    for face_map, message in (("0:9", "names face 9"), ([{"source": 2, "face": 0}], "source 2")):
        with pytest.raises(InvalidOptions, match=message):
            job(engine, pan10, output, {"face_map": face_map}, workdir=workdir)
        assert not workdir.exists() or not any(workdir.iterdir())
        assert not output.exists()


# -- tracks in the result, resumed jobs, the split path ----------------------------------


@pytest.fixture
def analysis_calls(monkeypatch) -> list[Path]:
    """The targets ``engine.video_plan.run_analysis`` (the whole-video pass) runs on."""
    calls: list[Path] = []
    original = video_plan.run_analysis

    def counted(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(video_plan, "run_analysis", counted)
    return calls


def test_resumed_job_reuses_the_stored_analysis(tmp_path, engine, pan10, analysis_calls):
    calls = analysis_calls
    workdir = tmp_path / "work"
    options = {"selector": "many", "segment_seconds": 0.5}
    first = job(engine, pan10, tmp_path / "first.mp4", options, workdir=workdir)
    assert len(calls) == 1
    stored, analysis = analysis_of(workdir)
    stamp = stored.stat().st_mtime_ns
    frames = len(decode_frames(pan10))
    assert len(first.tracks) == len(analysis.tracks) >= 4
    for track in first.tracks:
        assert set(track) == {"id", "first_frame", "last_frame", "frames", "swapped", "source"}
        assert 0 <= track["first_frame"] <= track["last_frame"] < frames
        assert track["frames"] <= track["last_frame"] - track["first_frame"] + 1
        assert (track["swapped"], track["source"]) == (True, [0])
    assert len({track["id"] for track in first.tracks}) == len(first.tracks)

    # A crash lost the last segment: the resumed job swaps it again, from the stored pass.
    records = sorted(workdir.glob("segment-*.json"))
    assert len(records) == 2
    records[-1].unlink()
    stages = []
    request = JobRequest(
        [TOM_HANKS], pan10, tmp_path / "second.mp4", options, content_threshold=None,
        workdir=workdir,
    )  # fmt: skip
    second = run_job(engine, request, progress=lambda p: stages.append(p.stage))
    assert len(calls) == 1 and "analyse" not in stages and "swap" in stages
    assert stored.stat().st_mtime_ns == stamp
    assert second.tracks == first.tracks
    for a, b in zip(decode_frames(first.output), decode_frames(second.output), strict=True):
        assert np.array_equal(a, b)


def test_split_path_segments_swap_what_the_stage_decided(tmp_path, engine, pan10, analysis_calls):
    from scheduler import video_split
    from scheduler.jobs import JobSpec, StoredFile
    from scheduler.tasks import TaskContext

    calls = analysis_calls
    raw = {"selector": "many", "segment_seconds": 0.5}
    job_dir = tmp_path / "job"
    (job_dir / "inputs").mkdir(parents=True)
    shutil.copy(pan10, job_dir / "inputs" / "target.mp4")
    shutil.copy(TOM_HANKS, job_dir / "inputs" / "source-1.png")
    spec = JobSpec(
        sources=(StoredFile("source-1.png", "tom.png", TOM_HANKS.stat().st_size),),
        target=StoredFile("target.mp4", "pan.mp4", pan10.stat().st_size),
        options=options_to_dict(parse_options(raw)),
        output="result.mp4",
    )
    plan = video_split.plan(job_dir, json.loads(spec.to_json()))
    assert plan is not None and len(plan.segments) == 2

    def context(worker: str) -> TaskContext:  # each worker has its own warm state
        return TaskContext(
            job_id=f"job-tracks~{worker}",
            run=1,
            attempt=1,
            device="cpu",
            spec=spec,
            job_dir=job_dir,
            output=job_dir / "result.mp4",
            workdir=job_dir / "work",
            settings={
                "models_dir": str(tmp_path / "models"),
                "threads": 1,
                "content_threshold": None,
            },
            state={},
        )

    stage = video_split.run_stage(context("stage"))
    assert stage["gate"] == "off" and stage["tracks"] >= 4 and len(calls) == 1
    stored, analysis = analysis_of(plan.workdir)
    stamp = stored.stat().st_mtime_ns
    results = [
        video_split.run_segment(context(f"w{i}"), segment, plan.workdir)
        for i, segment in enumerate(plan.segments)
    ]
    assert len(calls) == 1 and stored.stat().st_mtime_ns == stamp  # no segment re-ran the pass
    summary = video_split.join(plan, results, tmp_path / "split.mp4")
    assert (
        summary["tracks"]
        == analysis.with_decisions(
            {t.track_id: True for t in analysis.tracks}, {t.track_id: [0] for t in analysis.tracks}
        ).tracks_json()
    )

    whole = job(engine, pan10, tmp_path / "whole.mp4", raw)
    assert whole.tracks == summary["tracks"]
    split_frames, whole_frames = decode_frames(tmp_path / "split.mp4"), decode_frames(whole.output)
    assert len(split_frames) == len(whole_frames) == len(decode_frames(pan10))
    assert all(np.array_equal(a, b) for a, b in zip(split_frames, whole_frames, strict=True))


# -- trims ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["keep", "cut"])
def test_tracking_starts_at_the_trim(tmp_path, engine, photo, mode):
    clip = pan_clip(tmp_path / "pan20.mp4", photo, frames=20, speed=2)
    # 10 fps: the frames shown from 0.45 s to 1.45 s are 5 … 14.
    options = {"selector": "many", "trim_start": 0.45, "trim_end": 1.45, "trim_mode": mode}
    result = job(engine, clip, tmp_path / "out.mp4", options, workdir=tmp_path / "work")
    assert result.faces_swapped == 10
    assert len(result.tracks) >= 4
    assert min(track["first_frame"] for track in result.tracks) == 5
    assert max(track["last_frame"] for track in result.tracks) == 14
    _, analysis = analysis_of(tmp_path / "work")
    assert list(analysis.frames) == list(range(5, 15))
    assert len(decode_frames(result.output)) == (20 if mode == "keep" else 10)
