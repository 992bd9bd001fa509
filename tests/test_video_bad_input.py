"""Bad video inputs and outputs: each fails early with an error that names the problem.

Every bad file here is a real file made on the spot (see tests/media.py); the
checks go through ``probe`` and ``swap_video`` as a job would, and no output
or partial file may be left behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import video
from engine.errors import InvalidInput, InvalidOptions
from engine.frame import FrameResult
from engine.options import OutputOptions, SwapOptions
from tests import media
from tests.assets import T1, TOM_HANKS, load


class Untouched:
    """A processor that must never be reached: bad input fails before any frame."""

    def process(self, frame: np.ndarray) -> FrameResult:
        raise AssertionError("a frame was processed for a bad input")

    def fork(self) -> Untouched:
        return self


def leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


def assert_refused(target: Path, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as probed:
        video.probe(target)
    assert fragment in probed.value.message
    assert target.name in probed.value.message
    output = tmp_path / "out.mp4"
    with pytest.raises(InvalidInput) as swapped:
        video.swap_video([Untouched()], target, output, OutputOptions())
    assert fragment in swapped.value.message
    assert leftovers(tmp_path, {target.name}) == []


def test_file_with_video_extension_that_is_not_a_video(tmp_path):
    target = media.write_junk(tmp_path / "clip.mp4")
    assert not video.is_video(target)
    assert_refused(target, "not a video file", tmp_path)


def test_image_named_like_a_video(tmp_path):
    target = tmp_path / "holiday.mp4"
    target.write_bytes(T1.read_bytes())
    assert not video.is_video(target)
    assert_refused(target, "still image", tmp_path)


@pytest.mark.parametrize("faststart", [False, True], ids=["index-at-end", "index-at-start"])
def test_truncated_video(tmp_path, faststart):
    target = media.make_truncated(tmp_path / "cut.mp4", keep=0.5, faststart=faststart)
    assert_refused(target, "truncated", tmp_path)


def test_truncated_matroska(tmp_path):
    full = media.make_video(tmp_path / "full.mkv", seconds=2.0)
    target = tmp_path / "cut.mkv"
    data = full.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    full.unlink()
    assert_refused(target, "truncated", tmp_path)


def test_audio_only_file(tmp_path):
    target = media.make_audio_only(tmp_path / "voice.mp4")
    assert not video.is_video(target)
    assert_refused(target, "no video stream (it is audio only)", tmp_path)


def test_audio_only_wav(tmp_path):
    target = media.pcm_wav(tmp_path / "tone.mov")
    assert_refused(target, "no video stream", tmp_path)


def test_zero_byte_file(tmp_path):
    target = tmp_path / "empty.mp4"
    target.write_bytes(b"")
    assert not video.is_video(target)
    assert_refused(target, "empty (0 bytes)", tmp_path)


def test_video_stream_with_zero_frames(tmp_path):
    target = media.make_zero_frames(tmp_path / "nothing.avi")
    assert_refused(target, "no frames (a zero-length video)", tmp_path)


def test_unsupported_codec(tmp_path):
    target = media.make_unsupported_codec(tmp_path / "odd.mp4")
    assert_refused(target, "codec is not supported", tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(InvalidInput, match="file not found"):
        video.probe(tmp_path / "nope.mp4")


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        ("out.webm", OutputOptions(), "cannot hold h264 video"),
        ("out.mov", OutputOptions(video_codec="vp9"), "cannot hold vp9 video"),
        ("out.mp4", OutputOptions(container="mkv"), "does not match the chosen container"),
        ("out.avi", OutputOptions(), "must end in one of"),
        ("out", OutputOptions(), "must end in one of"),
    ],
)
def test_output_extension_must_match_codec_and_container(tmp_path, name, options, fragment):
    target = media.make_video(tmp_path / "in.mp4", seconds=0.4, audio=False)
    with pytest.raises(InvalidOptions) as raised:
        video.swap_video([Untouched()], target, tmp_path / name, options)
    assert fragment in raised.value.message
    assert name in raised.value.message
    assert leftovers(tmp_path, {"in.mp4"}) == []


def test_output_may_not_overwrite_target(tmp_path):
    target = media.make_video(tmp_path / "in.mp4", seconds=0.4, audio=False)
    with pytest.raises(InvalidOptions, match="overwrite the target"):
        video.swap_video([Untouched()], target, target, OutputOptions())


def test_output_directory_must_exist(tmp_path):
    target = media.make_video(tmp_path / "in.mp4", seconds=0.4, audio=False)
    with pytest.raises(InvalidInput, match="does not exist"):
        video.swap_video([Untouched()], target, tmp_path / "missing" / "out.mp4", OutputOptions())


def test_trim_outside_the_video(tmp_path):
    target = media.make_video(tmp_path / "in.mp4", seconds=1.0, audio=False)
    with pytest.raises(InvalidOptions, match="beyond the end"):
        video.swap_video([Untouched()], target, tmp_path / "out.mp4", OutputOptions(trim_start=5))


def test_video_without_faces_is_copied_with_a_warning(tmp_path, engine):
    """No face in any frame: the output holds exactly the input's frames, and says so."""
    target = media.make_video(tmp_path / "table.mp4", seconds=1.0, fps=10, faces=False)
    output = tmp_path / "out.mp4"
    swapper = engine.prepare([load(TOM_HANKS)], SwapOptions(selector="many"))
    result = video.swap_video([swapper], target, output, OutputOptions(segment_seconds=0.5))
    assert result.frames_with_faces == 0
    assert result.warnings and "no face found in any frame" in result.warnings[0]
    before, after = media.decode_frames(target), media.decode_frames(output)
    assert len(after) == len(before) == 10
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert media.stream_durations(output) == pytest.approx(media.stream_durations(target), abs=0.03)
    assert leftovers(tmp_path, {"table.mp4", "out.mp4"}) == []
