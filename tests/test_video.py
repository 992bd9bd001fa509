"""Video in, video out: frames, timing, audio, rotation, progress and cancel.

The videos are made here with PyAV from insightface's photo t1.jpg (a pan
across six real faces, a sine-tone AAC track). The face tests run the real
face pipeline (embedded MTCNN detector + classic swapper on ONNX Runtime);
tests about the video plumbing itself use ``BoxInverter``, a small real
processor that inverts a fixed rectangle, so that what must change is known.
"""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from engine import video
from engine.errors import Canceled
from engine.frame import FrameResult
from engine.options import OutputOptions, SwapOptions
from engine.pipeline import FaceEngine
from engine.progress import CancelToken, Progress
from tests import media
from tests.assets import TOM_HANKS, load

BOX = (slice(150, 200), slice(200, 300))  # rows, columns inverted by BoxInverter
BOX_AND_MARGIN = (slice(142, 208), slice(192, 308))  # the box and the codec's ringing around it


class BoxInverter:
    """Inverts a fixed rectangle and counts frames (shared between forks)."""

    def __init__(self, counter: list[int] | None = None) -> None:
        self.counter = counter if counter is not None else [0]

    def process(self, frame: np.ndarray) -> FrameResult:
        out = frame.copy()
        out[BOX] = 255 - out[BOX]
        self.counter[0] += 1
        return FrameResult(out, 1)

    def fork(self) -> BoxInverter:
        return BoxInverter(self.counter)


class Counting:
    """Wraps a real processor and counts the frames it processed (forks share the count)."""

    def __init__(self, inner, counter: list[int] | None = None, on_frame=None) -> None:
        self.inner = inner
        self.counter = counter if counter is not None else [0]
        self.on_frame = on_frame
        self._lock = threading.Lock()

    def process(self, frame: np.ndarray) -> FrameResult:
        result = self.inner.process(frame)
        with self._lock:
            self.counter[0] += 1
        if self.on_frame is not None:
            self.on_frame(self.counter[0])
        return result

    def fork(self) -> Counting:
        return Counting(self.inner.fork(), self.counter, self.on_frame)


@pytest.fixture(scope="module")
def swapper(engine):
    return engine.prepare([load(TOM_HANKS)], SwapOptions(selector="many"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s, 10 fps, 320×240, with faces and a sine tone."""
    return media.make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=2.0, fps=10)


def face_boxes(engine: FaceEngine, frame: np.ndarray) -> list[np.ndarray]:
    return [face.box for face in engine.detect(frame)]


def box_mask(shape, boxes, scale: float) -> np.ndarray:
    """Pixels inside the boxes, each scaled about its centre by ``scale``."""
    mask = np.zeros(shape[:2], bool)
    for x1, y1, x2, y2 in boxes:
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * scale, (y2 - y1) * scale
        top, bottom = int(max(0, cy - h / 2)), int(min(shape[0], cy + h / 2))
        left, right = int(max(0, cx - w / 2)), int(min(shape[1], cx + w / 2))
        mask[top:bottom, left:right] = True
    return mask


def test_probe_describes_the_clip(clip):
    info = video.probe(clip)
    assert (info.width, info.height) == (320, 240)
    assert info.frames == 20
    assert info.fps == Fraction(10)
    assert info.duration == pytest.approx(2.0)
    assert info.codec == "h264" and info.rotation == 0
    assert info.has_audio and info.audio_codec == "aac"
    assert len(info.timeline) == 20


def test_is_video_goes_by_content(tmp_path, clip):
    disguised = tmp_path / "photo.jpg"
    disguised.write_bytes(clip.read_bytes())
    assert video.is_video(disguised)
    assert video.is_video(media.make_animated_gif(tmp_path / "anim.gif"))
    assert not video.is_video(media.make_animated_gif(tmp_path / "still.gif", frames=1))


def test_swap_keeps_frames_duration_and_audio(tmp_path, clip, swapper):
    output = tmp_path / "out.mp4"
    result = video.swap_video([swapper], clip, output, OutputOptions(segment_seconds=1.0))
    assert result.output == output and result.frames == 20 and result.warnings == []
    info_in, info_out = video.probe(clip), video.probe(output)
    assert info_out.frames == info_in.frames == 20
    assert info_out.fps == info_in.fps
    assert info_out.codec == "h264" and info_out.container.startswith("mov,mp4")
    assert media.frame_pts(output)[0] == media.frame_pts(clip)[0]
    durations_in, durations_out = media.stream_durations(clip), media.stream_durations(output)
    frame = 1 / 10
    assert durations_out["video"] == pytest.approx(durations_in["video"], abs=1e-3)
    assert durations_out["audio"] == pytest.approx(durations_in["audio"], abs=frame)
    assert info_out.audio_codec == "aac"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_faces_changed_background_unchanged_frame_by_frame(tmp_path, clip, engine, swapper):
    output = tmp_path / "out.mp4"
    result = video.swap_video([swapper], clip, output, OutputOptions(segment_seconds=1.0))
    before, after = media.decode_frames(clip), media.decode_frames(output)
    assert len(before) == len(after) == 20
    assert result.frames_with_faces == 20
    for index, (a, b) in enumerate(zip(before, after, strict=True)):
        boxes = face_boxes(engine, a)
        assert boxes, f"frame {index}: the test clip should show faces"
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2)
        core = box_mask(a.shape, boxes, 0.5)
        background = ~box_mask(a.shape, boxes, 1.8)
        assert diff[core].mean() > 12, f"frame {index}: faces look unchanged"
        assert diff[background].mean() < 2.5, f"frame {index}: the background changed"


def test_progress_reports_stages_counts_and_previews(tmp_path, clip):
    reports: list[Progress] = []
    video.swap_video(
        [BoxInverter()],
        clip,
        tmp_path / "out.mp4",
        OutputOptions(segment_seconds=0.5),
        progress=reports.append,
    )
    stages = [r.stage for r in reports]
    order = ["decode", "swap", "encode", "mux"]
    positions = [stages.index(stage) for stage in order]
    assert positions == sorted(positions)
    swap = [r for r in reports if r.stage == "swap"]
    assert all(r.total == 20 and 0 < r.done <= 20 for r in swap)
    assert [r.done for r in swap] == sorted(r.done for r in swap)
    assert swap[-1].done == 20
    assert all(r.fps and r.fps > 0 for r in swap)
    assert any(r.eta_seconds is not None for r in swap)
    previews = [r.preview for r in reports if r.preview is not None]
    assert previews
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[1] <= 256 for p in previews)
    assert reports[-1].done == reports[-1].total == 20


def test_cancel_mid_run_stops_and_leaves_no_partial_output(tmp_path, clip, swapper):
    cancel = CancelToken()
    seen: list[int] = []

    def cancel_after_three(count: int) -> None:
        seen.append(count)
        if count == 3:
            cancel.cancel()

    processor = Counting(swapper, on_frame=cancel_after_three)
    output = tmp_path / "out.mp4"
    with pytest.raises(Canceled):
        video.swap_video(
            [processor], clip, output, OutputOptions(segment_seconds=0.5), cancel=cancel
        )
    # The processing loop checks the token before each frame: nothing after the cancel.
    assert processor.counter[0] == 3
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []


def test_cancel_keeps_finished_segments_but_no_partial_files(tmp_path, clip):
    cancel = CancelToken()
    workdir = tmp_path / "work"

    def watch(report: Progress) -> None:
        if report.stage == "swap" and report.done >= 12:
            cancel.cancel()

    with pytest.raises(Canceled):
        video.swap_video(
            [BoxInverter()],
            clip,
            tmp_path / "out.mp4",
            OutputOptions(segment_seconds=0.5),
            progress=watch,
            cancel=cancel,
            workdir=workdir,
        )
    names = sorted(p.name for p in workdir.iterdir())
    records = [n for n in names if n.startswith("segment-") and n.endswith(".json")]
    assert records, names  # the finished segments are recorded for a later run
    for record in records:
        assert record.removesuffix(".json") + ".mp4" in names
    assert not [n for n in names if ".part" in n]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_variable_frame_rate_keeps_every_timestamp(tmp_path):
    target = media.make_video(tmp_path / "vfr.mp4", seconds=2.0, fps=20, vfr=True, stamp_index=True)
    output = tmp_path / "out.mp4"
    video.swap_video([BoxInverter()], target, output, OutputOptions(segment_seconds=0.5))
    pts_in, base_in = media.frame_pts(target)
    pts_out, base_out = media.frame_pts(output)
    assert [p * base_out for p in pts_out] == [p * base_in for p in pts_in]
    steps = set(np.diff(pts_in))
    assert len(steps) > 1, "the test clip should have a variable frame rate"
    stamps = [media.read_stamp(f) for f in media.decode_frames(output)]
    assert stamps == list(range(len(pts_in)))
    assert media.stream_durations(output)["video"] == pytest.approx(
        media.stream_durations(target)["video"], abs=1e-3
    )


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotated_video_is_processed_and_written_upright(tmp_path, rotation):
    target = media.make_video(
        tmp_path / "phone.mp4", seconds=0.6, fps=10, rotation=rotation, stamp_index=True
    )
    info = video.probe(target)
    assert info.rotation == rotation and (info.width, info.height) == (320, 240)
    assert info.coded_size == (240, 320)
    output = tmp_path / "out.mp4"
    video.swap_video([BoxInverter()], target, output, OutputOptions())
    out_info = video.probe(output)
    assert out_info.rotation == 0 and (out_info.width, out_info.height) == (320, 240)
    before, after = media.decode_frames(target), media.decode_frames(output)
    for a, b in zip(before, after, strict=True):
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        # The inverted box sits where the processor put it in the upright picture.
        assert diff[BOX].mean() > 60
        outside = np.ones(a.shape[:2], bool)
        outside[BOX_AND_MARGIN] = False
        assert diff[outside].mean() < 5  # codec noise; a wrong rotation differs by tens
    assert [media.read_stamp(f) for f in after] == list(range(6))


def test_trim_range_keeps_only_those_frames_and_audio(tmp_path):
    target = media.make_video(tmp_path / "in.mp4", seconds=2.0, fps=25, stamp_index=True)
    output = tmp_path / "out.mp4"
    options = OutputOptions(trim_start=0.5, trim_end=1.5, segment_seconds=0.5)
    result = video.swap_video([BoxInverter()], target, output, options)
    assert result.frames == 25 and result.duration == pytest.approx(1.0)
    stamps = [media.read_stamp(f) for f in media.decode_frames(output)]
    assert stamps == list(range(13, 38))  # the frames shown at 0.52 s … 1.48 s
    durations = media.stream_durations(output)
    assert durations["video"] == pytest.approx(1.0, abs=1e-3)
    assert durations["audio"] == pytest.approx(1.0, abs=1 / 25)


@pytest.mark.parametrize(
    ("name", "codec", "audio"),
    [
        ("out.webm", "vp9", "opus"),
        ("out.mkv", "h264", "aac"),
        ("out.mov", "mpeg4", "aac"),
        ("out.mp4", "hevc", "aac"),
    ],
)
def test_containers_and_codecs(tmp_path, name, codec, audio):
    target = media.make_video(tmp_path / "in.mp4", seconds=0.8, fps=10, stamp_index=True)
    output = tmp_path / name
    options = OutputOptions(video_codec=codec, preset="ultrafast", segment_seconds=0.5)
    video.swap_video([BoxInverter()], target, output, options)
    info = video.probe(output)
    assert info.codec == codec and info.frames == 8 and info.audio_codec == audio
    assert [media.read_stamp(f) for f in media.decode_frames(output)] == list(range(8))
    assert media.stream_durations(output)["audio"] == pytest.approx(0.8, abs=0.1)


def test_audio_is_reencoded_when_the_container_needs_it(tmp_path):
    target = media.make_video(tmp_path / "in.mov", seconds=0.6, fps=10, audio_codec="pcm_s16le")
    assert video.probe(target).audio_codec == "pcm_s16le"
    output = tmp_path / "out.mp4"
    video.swap_video([BoxInverter()], target, output, OutputOptions())
    assert video.probe(output).audio_codec == "aac"
    assert media.stream_durations(output)["audio"] == pytest.approx(0.6, abs=0.1)


def test_keep_audio_false_drops_the_track(tmp_path, clip):
    output = tmp_path / "silent.mp4"
    video.swap_video([BoxInverter()], clip, output, OutputOptions(keep_audio=False))
    assert not video.probe(output).has_audio


def test_animated_gif_target(tmp_path):
    target = media.make_animated_gif(tmp_path / "anim.gif", frames=6, size=(161, 121))
    output = tmp_path / "out.mp4"
    result = video.swap_video([BoxInverter()], target, output, OutputOptions())
    info = video.probe(output)
    assert info.frames == 6 and info.duration == pytest.approx(0.6)
    assert (info.width, info.height) == (162, 122)  # padded to even for 4:2:0
    assert any("padded" in w for w in result.warnings)


def test_read_frame_returns_upright_frame(tmp_path):
    target = media.make_video(
        tmp_path / "in.mp4", seconds=1.0, fps=10, rotation=90, stamp_index=True
    )
    for index in (0, 4, 9):
        assert media.read_stamp(video.read_frame(target, index)) == index


class Failing:
    """Raises on the fifth frame, as a broken model would."""

    def __init__(self, counter: list[int] | None = None) -> None:
        self.counter = counter if counter is not None else [0]

    def process(self, frame: np.ndarray) -> FrameResult:
        self.counter[0] += 1
        if self.counter[0] == 5:
            raise RuntimeError("model exploded")
        return FrameResult(frame, 0)

    def fork(self) -> Failing:
        return Failing(self.counter)


def test_processor_error_stops_the_job_and_cleans_up(tmp_path, clip):
    output = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="model exploded"):
        video.swap_video([Failing()], clip, output, OutputOptions(segment_seconds=0.5))
    assert list(tmp_path.iterdir()) == []


def test_frames_in_flight_stay_bounded(tmp_path, monkeypatch):
    """Decoding runs ahead of processing by a few frames only, however long the video."""
    from engine.video import stream

    decoded = [0]
    original = stream.decode_range

    def counting_decode(*args, **kwargs):
        for frame in original(*args, **kwargs):
            decoded[0] += 1
            yield frame

    monkeypatch.setattr(stream, "decode_range", counting_decode)
    ahead: list[int] = []

    class Slow(BoxInverter):
        def process(self, frame):
            ahead.append(decoded[0] - self.counter[0])
            threading.Event().wait(0.005)
            return super().process(frame)

        def fork(self):
            return Slow(self.counter)

    target = media.make_video(tmp_path / "in.mp4", seconds=4.0, fps=25, audio=False)
    video.swap_video([Slow()], target, tmp_path / "out.mp4", OutputOptions())
    assert len(ahead) == 100
    assert max(ahead) <= stream.QUEUE_FRAMES + 2
