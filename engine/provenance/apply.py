"""Put the three provenance layers on a job's output, in the one order that works.

    1. watermark the pixels  (every frame, before encoding: lossless for the mark)
    2. encode                (the image or video writer)
    3. metadata              (XMP chunk / MP4 tags; rewrites the container, not the pixels)
    4. C2PA sign, LAST       (hashes the final bytes; any later write invalidates it)

How a pipeline uses it:

- once per job: ``stamp = prepare_stamp(data_dir, job_id)`` (registers the job's
  watermark tag, creates the installation identity and signing keys on first use);
  the stamp is a small frozen dataclass, fine to send to a worker process;
- per frame, just before encoding: ``frame = watermark_frame(frame, stamp)``;
- after the file is written: ``finish_file(path, kind, stamp, original_size)``.
  A video writer that already put :func:`metadata.mp4_metadata_tags` into the
  container (with :data:`metadata.MP4_MUXER_OPTIONS`) saves a remux here.

:func:`apply_provenance` does all of it to a finished file that was *not*
watermarked while encoding: an image is decoded, marked and re-encoded (PNG stays
lossless; JPEG/WebP get one more lossy pass at quality 95), a video is re-encoded
once with H.264 (audio copied). That costs quality and time, so it is the
fallback, not the way the job pipeline should do it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import engine.provenance.metadata as metadata
import engine.provenance.watermark as watermark
from engine import imageio
from engine.errors import InvalidInput, InvalidOptions
from engine.progress import CancelToken, Progress, ProgressCallback, RateMeter, ignore_progress
from engine.provenance.c2pa_sign import ensure_credentials, sign_file
from engine.provenance.payload import (
    Installation,
    JobTagRegistry,
    Payload,
    ensure_installation,
)

KINDS = ("image", "video")
REENCODE_QUALITY = 95
REENCODE_CRF = "18"


@dataclass(frozen=True)
class ProvenanceStamp:
    """What marks one job's outputs: where the keys live and the watermark payload."""

    data_dir: Path
    job_id: str
    payload: Payload

    @property
    def payload_bytes(self) -> bytes:
        return self.payload.to_bytes()


@dataclass(frozen=True)
class ProvenanceResult:
    path: Path
    kind: str
    payload: str  # hex
    signed: bool  # False when C2PA does not support the file's format
    reencoded: bool


def prepare_stamp(
    data_dir: str | Path, job_id: str, installation: Installation | None = None
) -> ProvenanceStamp:
    """Register the job's watermark tag and make sure the signing credentials exist."""
    data_dir = Path(data_dir)
    installation = installation or ensure_installation(data_dir)
    ensure_credentials(data_dir)
    tag = JobTagRegistry(data_dir).register(job_id)
    return ProvenanceStamp(data_dir=data_dir, job_id=job_id, payload=Payload(installation.tag, tag))


def watermark_frame(frame: np.ndarray, stamp: ProvenanceStamp | Payload | bytes) -> np.ndarray:
    """The frame with the job's invisible watermark (call on every frame before encoding)."""
    if isinstance(stamp, ProvenanceStamp):
        payload = stamp.payload_bytes
    elif isinstance(stamp, Payload):
        payload = stamp.to_bytes()
    else:
        payload = stamp
    return watermark.embed(frame, payload)


def finish_file(
    path: str | Path,
    kind: str,
    stamp: ProvenanceStamp,
    original_size: tuple[int, int] | None = None,
) -> bool:
    """Metadata, then the C2PA signature (last). Returns whether C2PA could sign the format."""
    path = Path(path)
    _check_kind(kind)
    if kind == "image":
        if original_size is None:
            header = imageio.read_header(path)
            original_size = (header.width, header.height)
        metadata.write_image_metadata(path, original_size)
    elif path.suffix.lower() != ".gif":
        # A GIF carries no container tags: re-muxing it through FFmpeg would only reset its
        # loop count; its frames carry the watermark and the file the C2PA manifest.
        current = metadata.read_video_metadata(path)
        if current.digital_source_type != metadata.DIGITAL_SOURCE_TYPE:
            metadata.write_video_metadata(path, original_size)
    return sign_file(path, ensure_credentials(stamp.data_dir), payload_hex=stamp.payload.hex)


def apply_provenance(
    path: str | Path,
    kind: str,
    data_dir: str | Path,
    job_id: str,
    installation: Installation | None = None,
    *,
    watermarked: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ProvenanceResult:
    """All three layers on a finished output file, in place.

    With ``watermarked=True`` the pixels already carry the mark (the encoder called
    :func:`watermark_frame`), so only metadata and the signature are added.
    """
    path = Path(path)
    _check_kind(kind)
    if not path.is_file():
        raise InvalidInput(f"{path.name}: file not found")
    progress = progress or ignore_progress
    stamp = prepare_stamp(data_dir, job_id, installation)
    original_size = None
    if not watermarked:
        if kind == "image":
            image = imageio.load_image(path)
            imageio.save_image(watermark_frame(image, stamp), path, quality=REENCODE_QUALITY)
            original_size = (image.shape[1], image.shape[0])
        else:
            original_size = watermark_video_file(path, stamp.payload_bytes, progress, cancel)
    progress(Progress(stage="provenance", done=0, total=None, message="signing"))
    signed = finish_file(path, kind, stamp, original_size)
    return ProvenanceResult(path, kind, stamp.payload.hex, signed, reencoded=not watermarked)


def watermark_video_file(
    path: str | Path,
    payload: bytes,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[int, int]:
    """Re-encode a video in place with every frame watermarked; audio is copied.

    The result is H.264 in the same container, with the synthetic-media tags
    already set. Returns the coded (width, height).
    """
    import av

    path = Path(path)
    progress = progress or ignore_progress
    cancel = cancel or CancelToken()
    rotation = _display_rotation(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        with av.open(str(path)) as source:
            if not source.streams.video:
                raise InvalidInput(f"{path.name}: the file has no video stream")
            video_in = source.streams.video[0]
            video_in.thread_type = "AUTO"
            audio_in = list(source.streams.audio)
            size = (video_in.codec_context.width, video_in.codec_context.height)
            total = video_in.frames or None
            meter = RateMeter(total)
            options = metadata.muxer_options(path)
            with av.open(
                str(temp), "w", format=source.format.name.split(",")[0], options=options
            ) as out:
                out.metadata.update(metadata.mp4_metadata_tags(size))
                video_out = out.add_stream(
                    "libx264", rate=video_in.average_rate or video_in.guessed_rate or 25
                )
                video_out.width, video_out.height = size
                video_out.pix_fmt = "yuv420p"
                video_out.codec_context.time_base = video_in.time_base
                video_out.options = {"crf": REENCODE_CRF, "preset": "veryfast"}
                if rotation:
                    video_out.set_display_rotation(rotation)
                audio_out = {
                    stream.index: out.add_stream_from_template(stream) for stream in audio_in
                }
                done = 0
                for packet in source.demux([video_in, *audio_in]):
                    if packet.stream.type == "audio":
                        if packet.dts is not None:
                            packet.stream = audio_out[packet.stream.index]
                            out.mux(packet)
                        continue
                    for frame in packet.decode():
                        cancel.raise_if_canceled()
                        marked = watermark.embed(frame.to_ndarray(format="bgr24"), payload)
                        new = av.VideoFrame.from_ndarray(marked, format="bgr24")
                        new.pts, new.time_base = frame.pts, frame.time_base
                        out.mux(video_out.encode(new))
                        done += 1
                        progress(
                            Progress(
                                stage="watermark",
                                done=done,
                                total=total,
                                fps=meter.fps(done),
                                eta_seconds=meter.eta(done),
                            )
                        )
                out.mux(video_out.encode(None))
        os.replace(temp, path)
    except av.error.FFmpegError as exc:
        raise InvalidInput(f"{path.name}: the video cannot be re-encoded ({exc})") from None
    finally:
        temp.unlink(missing_ok=True)
    return size


def _display_rotation(path: Path) -> int:
    """The first frame's display rotation (degrees counter-clockwise), kept on re-encoding."""
    import av

    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                return int(round((frame.rotation or 0) / 90.0)) * 90 % 360
    except (av.error.FFmpegError, AttributeError, ValueError, TypeError):
        return 0
    return 0


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidOptions(f"output kind {kind!r} must be 'image' or 'video'")
