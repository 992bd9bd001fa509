"""``trim_mode`` (cut | keep), absolute frame indices for processors, and GIF output.

Real files throughout: clips made here with PyAV (a pan across t1.jpg, with a
sound that is silent except for one beep, so that audio sync is measurable),
GIFs made with Pillow, real decoding of every output. The plumbing tests use
``Recorder``, a real processor that inverts every frame and records which
frames it got and where it was forked; the split-path and provenance tests run
the real face pipeline (embedded MTCNN detector, classic swapper).
"""

from __future__ import annotations

import json
import math
import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from engine import video
from engine.errors import InvalidOptions
from engine.frame import FrameResult
from engine.jobrun import JobRequest, run_job
from engine.options import OutputOptions, options_to_dict, parse_options
from engine.provenance.apply import prepare_stamp
from engine.provenance.frames import WatermarkingProcessor
from engine.provenance.verify import verify_file
from engine.video.segments import plan_key
from tests import media
from tests.assets import T1, TOM_HANKS

RATE = 48000
AUDIO_FRAME = 1024 / RATE  # one AAC frame: the audio's time resolution
BEEP_AT = 1.0  # seconds into the source clip
TRIM = {"trim_start": 0.5, "trim_end": 1.5}
ACTIVE = range(13, 38)  # 25 fps: the frames shown at 0.52 s … 1.48 s


class Recorder:
    """Inverts every frame; records where each fork started and which frames it got.

    It has ``fork_at``/``process_at`` only: a driver that called the plain
    ``fork``/``process`` would fail the test."""

    def __init__(self, log: list | None = None) -> None:
        self.log = log if log is not None else []  # (fork index, [frame indices])
        self.indices: list[int] | None = None

    def fork(self) -> Recorder:
        raise AssertionError("fork() called although fork_at exists")

    def process(self, frame: np.ndarray) -> FrameResult:
        raise AssertionError("process() called although process_at exists")

    def fork_at(self, frame_index: int) -> Recorder:
        child = Recorder(self.log)
        child.indices = []
        self.log.append((frame_index, child.indices))
        return child

    def process_at(self, frame: np.ndarray, frame_index: int) -> FrameResult:
        assert self.indices is not None, "a frame was processed before any fork"
        self.indices.append(frame_index)
        return FrameResult(255 - frame, 1)


class Untouched:
    """Changes nothing and finds no face."""

    def process(self, frame: np.ndarray) -> FrameResult:
        return FrameResult(frame, 0)

    def fork(self) -> Untouched:
        return self


def make_clip(
    path: Path, size: tuple[int, int] = (640, 480), fps: int = 25, seconds: float = 2.0
) -> Path:
    """A pan with each frame's index stamped in, and an AAC track silent but for one beep."""
    count = int(seconds * fps)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        sound = out.add_stream("aac", rate=RATE)
        sound.layout = "mono"
        for index in range(count):
            image = media.stamp(media.scene(index, count, size), index)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        t = np.arange(int(seconds * RATE)) / RATE
        beep = (t >= BEEP_AT) & (t < BEEP_AT + 0.1)
        samples = np.where(beep, 0.5 * np.sin(2 * math.pi * 440 * t), 0).astype(np.float32)
        for start in range(0, len(samples), 1024):
            chunk = av.AudioFrame.from_ndarray(
                samples[None, start : start + 1024], format="fltp", layout="mono"
            )
            chunk.sample_rate, chunk.pts, chunk.time_base = RATE, start, Fraction(1, RATE)
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return path


def beep_onset(path: Path) -> float:
    """Seconds from the start of the file's audio to the beep."""
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            loud = np.flatnonzero(np.abs(frame.to_ndarray()[0]) > 0.1)
            if len(loud):
                return float(frame.pts * frame.time_base) + loud[0] / frame.sample_rate
    raise AssertionError(f"{path.name} has no beep")


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def changed_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels that changed by more than codec noise (a swapped face, say)."""
    return float((np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 40).mean())


def make_gif(
    path: Path,
    durations: list[int],
    size: tuple[int, int] = (161, 121),
    loop: int | None = 0,
    faces: bool = True,
) -> Path:
    frames = len(durations)
    images = [
        Image.fromarray(cv2.cvtColor(media.scene(i, frames, size, faces), cv2.COLOR_BGR2RGB))
        for i in range(frames)
    ]
    extra = {} if loop is None else {"loop": loop}
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, **extra)
    return path


def read_gif(path: Path) -> tuple[list[np.ndarray], list[int], int | None]:
    """Every frame (BGR), each frame's duration in ms, and the loop count (None: plays once)."""
    frames, durations = [], []
    with Image.open(path) as image:
        assert image.format == "GIF"
        loop = image.info.get("loop")
        for number in range(image.n_frames):
            image.seek(number)
            durations.append(image.info["duration"])
            frames.append(cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR))
    return frames, durations, loop


def blurred_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean difference as the eye sees a dithered GIF: after a 5x5 blur."""
    blur = [cv2.GaussianBlur(x.astype(np.float32), (5, 5), 0) for x in (a, b)]
    return float(np.abs(blur[0] - blur[1]).mean())


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture(scope="module")
def source_frames(clip) -> list[np.ndarray]:
    return media.decode_frames(clip)


# -- trim_mode ------------------------------------------------------------------------


def test_keep_outputs_the_whole_clip_and_processes_only_the_range(tmp_path, clip, source_frames):
    recorder = Recorder()
    output = tmp_path / "keep.mp4"
    options = OutputOptions(**TRIM, trim_mode="keep", segment_seconds=0.5)
    result = video.swap_video([recorder], clip, output, options)

    assert sorted(i for _, indices in recorder.log for i in indices) == list(ACTIVE)
    assert (result.frames, result.frames_with_faces) == (50, 25)
    frames = media.decode_frames(output)
    assert len(frames) == len(source_frames) == 50
    assert media.frame_pts(output) == media.frame_pts(clip)
    for index, (got, source) in enumerate(zip(frames, source_frames, strict=True)):
        if index in ACTIVE:
            assert mean_diff(got, 255 - source) < 3, index  # processed (inverted), re-encoded
            assert mean_diff(got, source) > 80, index
        else:
            assert mean_diff(got, source) < 2, index  # copied through, re-encoded
    durations, source = media.stream_durations(output), media.stream_durations(clip)
    assert durations["video"] == pytest.approx(2.0, abs=1e-3)
    assert durations["audio"] == pytest.approx(source["audio"], abs=AUDIO_FRAME)
    assert beep_onset(output) == pytest.approx(beep_onset(clip), abs=AUDIO_FRAME)


def test_cut_outputs_only_the_range_with_the_sound_in_sync(tmp_path, clip, source_frames):
    cut, keep = tmp_path / "cut.mp4", tmp_path / "keep.mp4"
    result = video.swap_video(
        [Recorder()], clip, cut, OutputOptions(**TRIM, segment_seconds=0.5)
    )  # trim_mode defaults to cut
    video.swap_video(
        [Recorder()], clip, keep, OutputOptions(**TRIM, trim_mode="keep", segment_seconds=0.5)
    )
    assert result.frames == 25 and result.duration == pytest.approx(1.0)
    cut_frames, keep_frames = media.decode_frames(cut), media.decode_frames(keep)
    assert len(cut_frames) == 25 and len(keep_frames) == 50
    assert [media.read_stamp(255 - f) for f in cut_frames] == list(ACTIVE)
    for offset, frame in enumerate(cut_frames):
        # The range's frames are the same processed frames in both modes.
        assert mean_diff(frame, keep_frames[ACTIVE[offset]]) < 3
        assert mean_diff(frame, 255 - source_frames[ACTIVE[offset]]) < 3
    assert media.stream_durations(cut)["audio"] == pytest.approx(1.0, abs=AUDIO_FRAME)
    start = ACTIVE[0] / 25  # the first frame of the range becomes time 0
    assert beep_onset(cut) == pytest.approx(beep_onset(clip) - start, abs=AUDIO_FRAME)
    assert beep_onset(keep) == pytest.approx(beep_onset(clip), abs=AUDIO_FRAME)


def test_keep_with_nothing_changed_is_the_source_itself(tmp_path, clip, source_frames):
    output = tmp_path / "copy.mp4"
    options = OutputOptions(**TRIM, trim_mode="keep")
    result = video.swap_video([Untouched()], clip, output, options)
    assert result.frames_with_faces == 0 and result.frames == 50
    frames = media.decode_frames(output)
    assert all(np.array_equal(a, b) for a, b in zip(frames, source_frames, strict=True))
    assert media.stream_durations(output)["audio"] == pytest.approx(2.0, abs=AUDIO_FRAME)


def test_resume_key_follows_the_trim_mode(clip):
    info = video.probe(clip)
    keep = OutputOptions(**TRIM, trim_mode="keep")
    whole = OutputOptions()
    segments = video.plan_segments(info, keep)
    assert segments == video.plan_segments(info, whole)  # keep plans the whole clip
    assert video.output_range(info.timeline, keep) == (0, 50)
    assert video.trim_range(info.timeline, keep) == (ACTIVE[0], ACTIVE[-1] + 1)
    processor = Recorder()
    keys = {
        plan_key(clip, segments, "h264", options, processor)
        for options in (whole, keep, OutputOptions(trim_start=0.5, trim_mode="keep"))
    }
    assert len(keys) == 3
    assert plan_key(clip, segments, "h264", OutputOptions(trim_mode="keep"), processor) in keys


def test_a_trim_holding_no_frame_fails_in_keep_mode_too(tmp_path, clip):
    for mode in ("cut", "keep"):
        options = OutputOptions(trim_start=5.0, trim_mode=mode)
        with pytest.raises(InvalidOptions, match="trim_start 5"):
            video.swap_video([Untouched()], clip, tmp_path / "out.mp4", options)


# -- absolute frame indices -------------------------------------------------------------


def expected_forks(segments: list[video.Segment], active: range) -> list[tuple[int, list[int]]]:
    """Each segment that holds frames of ``active``: forked at its first one, then in order."""
    forks = []
    for segment in segments:
        frames = [i for i in range(segment.start_frame, segment.end_frame) if i in active]
        if frames:
            forks.append((frames[0], frames))
    return forks


@pytest.mark.parametrize("mode", ["cut", "keep"])
def test_fork_at_and_process_at_get_the_timeline_indices(tmp_path, clip, mode):
    options = OutputOptions(trim_start=0.7, trim_end=1.7, trim_mode=mode, segment_seconds=0.5)
    active = range(18, 43)  # 25 fps: 0.72 s … 1.68 s
    segments = video.plan_segments(clip, options)
    expected = expected_forks(segments, active)
    if mode == "cut":
        assert [s.start_frame for s in segments] == [18, 31]
    else:  # the whole clip is planned; the range starts inside its second segment
        assert [s.start_frame for s in segments] == [0, 13, 25, 38]
        assert [fork for fork, _ in expected] == [18, 25, 38]

    one = Recorder()
    video.swap_video([one], clip, tmp_path / "one.mp4", options)
    assert one.log == expected

    lanes = [Recorder(), Recorder()]
    lanes[1].log = lanes[0].log  # one log for both devices
    video.swap_video(lanes, clip, tmp_path / "two.mp4", options)
    assert sorted(lanes[0].log) == expected

    # As the split path runs them: one call per segment, the active range passed or
    # found from the options.
    info = video.probe(clip)
    first_pts = int(info.timeline.pts[0])
    for passed in (video.trim_range(info.timeline, options), None):
        alone = Recorder()
        for segment in segments:
            video.run_segments(
                alone,
                clip,
                [segment],
                tmp_path / f"work-{passed is None}",
                "h264",
                options,
                first_pts=first_pts,
                active=passed,
            )
        assert alone.log == expected


def test_the_watermarking_wrapper_forwards_the_indices(tmp_path, clip):
    stamp = prepare_stamp(tmp_path / "data", "job-indices")
    inner = Recorder()
    options = OutputOptions(**TRIM, trim_mode="keep", segment_seconds=0.5)
    video.swap_video([WatermarkingProcessor(inner, stamp)], clip, tmp_path / "marked.mp4", options)
    assert inner.log == expected_forks(video.plan_segments(clip, options), ACTIVE)


# -- the split path -------------------------------------------------------------------


def test_split_path_keeps_the_whole_clip_like_an_unsplit_run(tmp_path, engine):
    from scheduler import video_split
    from scheduler.jobs import JobSpec, StoredFile
    from scheduler.tasks import TaskContext

    raw = {**TRIM, "trim_mode": "keep", "segment_seconds": 0.5, "selector": "many"}
    clip = media.make_video(tmp_path / "clip.mp4", seconds=2.0, fps=10, size=(640, 480))
    job_dir = tmp_path / "job"
    (job_dir / "inputs").mkdir(parents=True)
    shutil.copy(clip, job_dir / "inputs" / "target.mp4")
    shutil.copy(TOM_HANKS, job_dir / "inputs" / "source-1.png")
    spec = JobSpec(
        sources=(StoredFile("source-1.png", "tom.png", TOM_HANKS.stat().st_size),),
        target=StoredFile("target.mp4", "clip.mp4", clip.stat().st_size),
        options=options_to_dict(parse_options(raw)),
        output="result.mp4",
    )
    plan = video_split.plan(job_dir, json.loads(spec.to_json()))
    assert plan is not None and plan.total_frames == 20 and len(plan.segments) == 4
    ctx = TaskContext(
        job_id="job-split",
        run=1,
        attempt=1,
        device="cpu",
        spec=spec,
        job_dir=job_dir,
        output=job_dir / "result.mp4",
        workdir=job_dir / "work",
        settings={"models_dir": str(tmp_path / "models"), "threads": 1},
    )
    results = [video_split.run_segment(ctx, segment, plan.workdir) for segment in plan.segments]
    split = tmp_path / "split.mp4"
    summary = video_split.join(plan, results, split)
    assert summary["frames"] == 20 and summary["faces_swapped"] == 10  # frames 5 … 14

    whole = tmp_path / "whole.mp4"
    request = JobRequest([TOM_HANKS], clip, whole, raw, content_threshold=None)
    assert run_job(engine, request).faces_swapped == 10
    split_frames, whole_frames = media.decode_frames(split), media.decode_frames(whole)
    assert all(np.array_equal(a, b) for a, b in zip(split_frames, whole_frames, strict=True))
    source = media.decode_frames(clip)
    changes = [mean_diff(a, b) for a, b in zip(split_frames, source, strict=True)]
    assert max(changes[:5] + changes[15:]) < 2  # outside the range: copied through
    swapped = [changed_share(a, b) for a, b in zip(split_frames, source, strict=True)]
    assert max(swapped[:5] + swapped[15:]) < 0.001, swapped  # no face changed there
    assert min(swapped[5:15]) > 0.005, swapped  # the faces (1–2 % of the picture) are new
    assert media.stream_durations(split)["audio"] == pytest.approx(2.0, abs=AUDIO_FRAME)


# -- GIF ----------------------------------------------------------------------------------

GIF_DURATIONS = [100, 200, 50, 300, 70, 120, 40, 500]  # ms, as GIFs count them (10 ms)


@pytest.mark.parametrize("loop", [3, None])
def test_gif_to_gif_keeps_every_frame_and_its_duration(tmp_path, loop):
    target = make_gif(tmp_path / "in.gif", GIF_DURATIONS, loop=loop)
    output = tmp_path / "out.gif"
    recorder = Recorder()
    result = video.swap_video([recorder], target, output, OutputOptions(segment_seconds=0.5))
    assert result.frames == 8 and result.warnings == []
    assert [i for _, indices in recorder.log for i in indices] == list(range(8))
    frames, durations, got_loop = read_gif(output)
    source, source_durations, source_loop = read_gif(target)
    assert durations == source_durations == GIF_DURATIONS
    assert got_loop == source_loop == loop
    assert frames[0].shape == (121, 161, 3)  # the 4:2:0 padding is cropped off again
    for got, original in zip(frames, source, strict=True):
        assert blurred_diff(got, 255 - original) < 4  # dithering noise: about 2


def test_mp4_to_gif_rounds_timing_on_a_running_clock(tmp_path):
    target = media.make_video(tmp_path / "in.mp4", seconds=1.0, fps=30, size=(160, 120))
    output = tmp_path / "out.gif"
    result = video.swap_video([Recorder()], target, output, OutputOptions())
    frames, durations, loop = read_gif(output)
    assert len(frames) == 30 and loop == 0  # a video loops forever as a GIF
    assert set(durations) == {30, 40} and sum(durations) == 1000  # 33.3 ms each, 1 s in all
    assert result.warnings == ["a GIF holds no sound; the video's audio track was left out"]


def test_gif_to_mp4_keeps_the_gif_timing(tmp_path):
    target = make_gif(tmp_path / "in.gif", GIF_DURATIONS)
    output = tmp_path / "out.mp4"
    video.swap_video([Recorder()], target, output, OutputOptions())
    info = video.probe(output)
    assert info.frames == 8 and info.codec == "h264"
    stamps = [float(p * info.time_base) for p in info.timeline.pts]
    starts = np.cumsum([0, *GIF_DURATIONS[:-1]]) / 1000
    assert stamps == pytest.approx(starts.tolist(), abs=1e-6)
    assert info.duration == pytest.approx(sum(GIF_DURATIONS) / 1000)


def test_gif_with_trim_keep(tmp_path):
    target = make_gif(tmp_path / "in.gif", GIF_DURATIONS)
    output = tmp_path / "out.gif"
    recorder = Recorder()
    options = OutputOptions(trim_start=0.3, trim_end=0.72, trim_mode="keep")
    video.swap_video([recorder], target, output, options)
    assert [i for _, indices in recorder.log for i in indices] == [2, 3, 4]  # 0.30, 0.35, 0.65 s
    frames, durations, _ = read_gif(output)
    source, _, _ = read_gif(target)
    assert durations == GIF_DURATIONS
    for index, (got, original) in enumerate(zip(frames, source, strict=True)):
        expected = 255 - original if index in (2, 3, 4) else original
        assert blurred_diff(got, expected) < 4, index


def test_gif_without_faces_is_copied_byte_for_byte(tmp_path):
    target = make_gif(tmp_path / "in.gif", GIF_DURATIONS, faces=False)
    output = tmp_path / "out.gif"
    result = video.swap_video([Untouched()], target, output, OutputOptions())
    assert result.frames_with_faces == 0
    assert output.read_bytes() == target.read_bytes()


def test_gif_output_names_and_codecs():
    gif = video.output_format("out.gif", OutputOptions())
    assert (gif.container, gif.codec, gif.holds_audio) == ("gif", "h264", False)
    # video_codec picks the codec of the intermediate segments the GIF is made from.
    assert video.output_format("out.GIF", OutputOptions(video_codec="vp9")).codec == "vp9"
    with pytest.raises(InvalidOptions, match=r"\.gif does not match the chosen container 'mp4'"):
        video.output_format("out.gif", OutputOptions(container="mp4"))
    with pytest.raises(InvalidOptions, match=r"must end in one of .*\.gif"):
        video.output_format("out.png", OutputOptions())


def test_a_still_image_target_cannot_make_a_gif(tmp_path, engine):
    request = JobRequest([TOM_HANKS], T1, tmp_path / "out.gif", {}, content_threshold=None)
    with pytest.raises(InvalidOptions, match="an image target needs an image output"):
        run_job(engine, request)
    assert not (tmp_path / "out.gif").exists()


def test_provenance_watermark_survives_the_gif_palette(tmp_path, engine):
    """Frames are marked before encoding; the GIF's 256-colour palettes must not erase it."""
    target = make_gif(tmp_path / "in.gif", [100, 200, 50, 300, 70, 120], size=(320, 240))
    output = tmp_path / "out.gif"
    stamp = prepare_stamp(tmp_path / "data", "job-gif")
    options = {"selector": "many"}
    request = JobRequest([TOM_HANKS], target, output, options, content_threshold=None, stamp=stamp)
    result = run_job(engine, request)
    assert result.kind == "video" and result.faces_swapped == 6
    report = verify_file(output, tmp_path / "data")
    assert report["watermark"]["payload"] == stamp.payload.hex
    assert report["watermark"]["job_id"] == "job-gif"
    assert report["c2pa"]["status"] == "trusted"
    frames, durations, _ = read_gif(output)
    assert len(frames) == 6 and durations == [100, 200, 50, 300, 70, 120]
