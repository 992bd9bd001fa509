"""Segments: frame-exact cuts and joins, resume after a real kill, several devices.

A segment's output must not depend on where or when it was made: after a
crash the job resumes from the last finished segment, and segments spread over
two devices give the same frames as one device. Frames are compared exactly
(decoded arrays), which works because the encoders are deterministic.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine import video
from engine.frame import FrameResult
from engine.models.manager import ModelManager
from engine.options import OutputOptions, SwapOptions
from engine.pipeline import FaceEngine
from engine.video.segments import describe_processor
from tests import media
from tests.assets import REPO, TOM_HANKS, load

OPTIONS = OutputOptions(segment_seconds=0.5)


class Stamper:
    """Leaves frames as they are apart from a small mark; counts frames (forks share it)."""

    def __init__(self, counter: list[int] | None = None) -> None:
        self.counter = counter if counter is not None else [0]

    def process(self, frame: np.ndarray) -> FrameResult:
        out = frame.copy()
        out[-20:, -20:] = (0, 0, 255)
        self.counter[0] += 1
        return FrameResult(out, 1)

    def fork(self) -> Stamper:
        return Stamper(self.counter)


class Counting:
    """Counts the frames a real processor handles; same fingerprint as the processor."""

    def __init__(self, inner, counter: list[int] | None = None) -> None:
        self.inner = inner
        self.counter = counter if counter is not None else [0]
        self._lock = threading.Lock()

    def process(self, frame: np.ndarray) -> FrameResult:
        with self._lock:
            self.counter[0] += 1
        return self.inner.process(frame)

    def fork(self) -> Counting:
        return Counting(self.inner.fork(), self.counter)

    def fingerprint(self) -> str:
        return describe_processor(self.inner)


def new_engine(device: str) -> FaceEngine:
    return FaceEngine(ModelManager(Path(tempfile.mkdtemp(prefix="models-"))), device, 1)


@pytest.fixture(scope="module")
def swappers():
    """The same job prepared on two devices (separate engines and sessions)."""
    sources = [load(TOM_HANKS)]
    options = SwapOptions(selector="many")
    return [new_engine(d).prepare(sources, options) for d in ("cpu:0", "cpu:1")]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s at 10 fps with faces: four segments of five frames at 0.5 s."""
    return media.make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=2.0, fps=10)


def frames_of(path: Path) -> np.ndarray:
    return np.stack(media.decode_frames(path))


def test_plan_cuts_every_frame_exactly_once(tmp_path):
    target = media.make_video(tmp_path / "vfr.mp4", seconds=3.0, fps=20, vfr=True, audio=False)
    info = video.probe(target)
    segments = video.plan_segments(info, OutputOptions(segment_seconds=0.5))
    assert segments[0].start_frame == 0 and segments[-1].end_frame == info.frames
    for before, after in zip(segments, segments[1:], strict=False):
        assert before.end_frame == after.start_frame
        assert before.end_pts == after.start_pts
    starts = [info.timeline.seconds(s.start_frame) for s in segments]
    # Each cut is the first frame at or after a multiple of 0.5 s.
    for number, start in enumerate(starts):
        assert start >= 0.5 * number - 1e-9
        previous = info.timeline.seconds(segments[number].start_frame - 1) if number else -1
        assert previous < 0.5 * number
    assert video.plan_segments(target, OutputOptions(segment_seconds=0.5)) == segments


def test_plan_with_trim(tmp_path):
    target = media.make_video(tmp_path / "in.mp4", seconds=3.0, fps=10, audio=False)
    segments = video.plan_segments(
        target, OutputOptions(trim_start=1.0, trim_end=2.5, segment_seconds=1.0)
    )
    assert [(s.start_frame, s.end_frame) for s in segments] == [(10, 20), (20, 25)]
    assert all(s.origin_pts == segments[0].start_pts for s in segments)


@pytest.mark.parametrize("vfr", [False, True], ids=["cfr", "vfr"])
def test_join_is_frame_exact_across_many_borders(tmp_path, vfr):
    """Every frame carries its index; after 8 segments and a join, all are there in order."""
    target = media.make_video(
        tmp_path / "in.mp4", seconds=4.0, fps=25, vfr=vfr, stamp_index=True, gop=7
    )
    output = tmp_path / "out.mp4"
    video.swap_video([Stamper()], target, output, OPTIONS)
    count = video.probe(target).frames
    stamps = [media.read_stamp(f) for f in media.decode_frames(output)]
    assert stamps == list(range(count))
    assert media.frame_pts(output)[0] == media.frame_pts(target)[0]


def test_segment_api_as_a_scheduler_would_use_it(tmp_path, clip):
    """Segments made out of order by separate calls, then joined, equal one swap_video run."""
    workdir = tmp_path / "work"
    segments = video.plan_segments(clip, OPTIONS)
    assert len(segments) == 4
    reports = []
    paths = {}
    for segment in reversed(segments):
        paths[segment.index] = video.process_segment(
            Stamper(), clip, segment, workdir, OPTIONS, progress=reports.append
        )
    assert all(p.is_file() and p.parent == workdir for p in paths.values())
    assert any(r.stage == "swap" and r.total == 5 for r in reports)
    joined = video.join_segments(
        clip, [paths[i] for i in range(4)], tmp_path / "joined.mp4", OPTIONS
    )
    direct = tmp_path / "direct.mp4"
    video.swap_video([Stamper()], clip, direct, OPTIONS)
    assert np.array_equal(frames_of(joined), frames_of(direct))
    assert video.probe(joined).has_audio


def test_join_refuses_segments_that_do_not_fit(tmp_path, clip):
    workdir = tmp_path / "work"
    segments = video.plan_segments(clip, OPTIONS)
    paths = [video.process_segment(Stamper(), clip, s, workdir, OPTIONS) for s in segments]
    with pytest.raises(Exception, match="segments hold 15 frames"):
        video.join_segments(clip, paths[:3], tmp_path / "out.mp4", OPTIONS)
    assert not (tmp_path / "out.mp4").exists()


def test_two_devices_give_the_same_frames_as_one(tmp_path, clip, swappers):
    one = tmp_path / "one.mp4"
    video.swap_video([swappers[0]], clip, one, OPTIONS)
    counters = [[0], [0]]
    workers = [Counting(s, c) for s, c in zip(swappers, counters, strict=True)]
    two = tmp_path / "two.mp4"
    result = video.swap_video(workers, clip, two, OPTIONS)
    assert result.frames == 20 and result.frames_with_faces == 20
    assert counters[0][0] > 0 and counters[1][0] > 0, "both devices should have had segments"
    assert counters[0][0] + counters[1][0] == 20
    assert np.array_equal(frames_of(one), frames_of(two))


def test_second_call_with_workdir_reuses_every_segment(tmp_path, clip):
    workdir = tmp_path / "work"
    first = Stamper()
    video.swap_video([first], clip, tmp_path / "a.mp4", OPTIONS, workdir=workdir)
    records = sorted(path.name for path in workdir.glob("segment-*.json"))
    assert records == [f"segment-{index:05d}.json" for index in range(4)]
    again = Stamper()
    result = video.swap_video([again], clip, tmp_path / "b.mp4", OPTIONS, workdir=workdir)
    assert again.counter[0] == 0 and result.resumed_segments == 4
    assert np.array_equal(frames_of(tmp_path / "a.mp4"), frames_of(tmp_path / "b.mp4"))
    # Other options: the old segments do not apply, the job starts from frame 0.
    other = Stamper()
    video.swap_video(
        [other], clip, tmp_path / "c.mp4", OutputOptions(segment_seconds=1.0), workdir=workdir
    )
    assert other.counter[0] == 20


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, tempfile, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from engine import video
    from engine.models.manager import ModelManager
    from engine.options import OutputOptions, SwapOptions
    from engine.pipeline import FaceEngine
    from tests.assets import TOM_HANKS, load

    class Slow:
        # The real swapper, slowed down so that the test can kill it halfway.
        def __init__(self, inner):
            self.inner = inner
        def process(self, frame):
            time.sleep(0.4)  # 2 s a segment: the kill lands before the last one, under load too
            return self.inner.process(frame)
        def fork(self):
            return Slow(self.inner.fork())
        def fingerprint(self):
            from engine.video.segments import describe_processor
            return describe_processor(self.inner)

    target, output, workdir = map(Path, sys.argv[1:4])
    engine = FaceEngine(ModelManager(Path(tempfile.mkdtemp())), "cpu", 1)
    swapper = engine.prepare([load(TOM_HANKS)], SwapOptions(selector="many"))
    video.swap_video([Slow(swapper)], target, output, OutputOptions(segment_seconds=0.5),
                     workdir=workdir)
    """
)


def finished_segments(workdir: Path) -> int:
    return len(list(workdir.glob("segment-*.json")))


def test_killed_run_resumes_from_last_finished_segment(tmp_path, clip, swappers):
    reference = tmp_path / "reference.mp4"
    video.swap_video([swappers[0]], clip, reference, OPTIONS)

    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT)
    workdir, output = tmp_path / "work", tmp_path / "out.mp4"
    process = subprocess.Popen(
        [sys.executable, str(script), str(clip), str(output), str(workdir), str(REPO)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while finished_segments(workdir) < 1:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no segment finished in time"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    done_before = finished_segments(workdir)
    assert 1 <= done_before < 4
    assert not output.exists()

    resumed = Counting(swappers[0])
    result = video.swap_video([resumed], clip, output, OPTIONS, workdir=workdir)
    assert result.resumed_segments == done_before
    assert resumed.counter[0] == 20 - 5 * done_before  # only the unfinished segments
    assert result.frames == 20 and result.frames_with_faces == 20
    assert np.array_equal(frames_of(output), frames_of(reference))
    assert not [p for p in workdir.iterdir() if ".part" in p.name]
