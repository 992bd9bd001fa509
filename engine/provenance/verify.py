"""``verify``: what provenance an image or video carries (docs/contracts.md).

:func:`verify_file` returns one JSON-ready dict::

    {
      "file": "out.png", "kind": "image" | "video",
      "watermark": null | {"payload": "<12 hex>", "job_id": "<id>" | null,
                           "installation_tag": int, "job_tag": int,
                           "this_installation": bool, "confidence": float,
                           "frames_checked": int},
      "metadata": {"digital_source_type": str | null, "synthetic": bool,
                   "original_size": [w, h] | null, "software": str | null,
                   "container": str | null},
      "c2pa": {"status": "trusted" | "valid" | "invalid" | "absent", "reason": str | null,
               "validation_state", "failures", "digital_source_type", "signer",
               "claim_generator", "watermark_payload", "manifest"},
      "notes": [str]   # e.g. why the watermark could not be checked
    }

``job_id`` is set only when this installation issued the payload's job tag.
``c2pa.status`` is ``trusted`` when the manifest is valid and chains to this
installation's root CA, ``valid`` when it is valid but signed by someone else,
``invalid`` with a ``reason``, and ``absent`` when there is no manifest (or C2PA
does not support the format; the reason says which).

Watermark reading: an image whose size differs from the original size in its
metadata is scaled back first. A video is read on its keyframes (intra-coded
frames keep the mark through H.264; predicted frames may carry motion-shifted
marks), up to ``MAX_VIDEO_FRAMES`` of them, averaging their soft bits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import engine.provenance.metadata as metadata
import engine.provenance.watermark as watermark
from engine import imageio
from engine.errors import EngineError, InvalidInput
from engine.provenance.c2pa_sign import load_credentials, read_manifest
from engine.provenance.payload import Payload, job_for_payload, load_installation

MAX_VIDEO_FRAMES = 12


def verify_file(path: str | Path, data_dir: str | Path) -> dict:
    """Check watermark, metadata and C2PA manifest of one file; reads, never writes."""
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"{path.name}: file not found")
    if not path.is_file():
        raise InvalidInput(f"{path.name}: not a regular file")
    kind = _kind(path)
    found = metadata.read_metadata(path)
    notes: list[str] = []
    reading, frames = None, 0
    try:
        if kind == "image":
            reading, frames = _image_watermark(path, found.original_size), 1
        else:
            reading, frames = _video_watermark(path)
    except InvalidInput as exc:  # damaged pixels: still report metadata and C2PA
        notes.append(f"watermark not checked: {exc.message}")
    credentials = load_credentials(data_dir)
    manifest = read_manifest(path, credentials.root_cert_pem if credentials else None)
    return {
        "file": path.name,
        "kind": kind,
        "watermark": _watermark_dict(reading, frames, data_dir),
        "metadata": found.as_dict(),
        "c2pa": manifest.as_dict(),
        "notes": notes,
    }


def format_report(report: dict) -> str:
    """The report as a few lines a person reads."""
    lines = [f"file: {report['file']} ({report['kind']})"]
    mark = report["watermark"]
    if mark is None:
        lines.append("watermark: none found")
    else:
        origin = (
            f"made by this installation, job {mark['job_id']}"
            if mark.get("job_id")
            else "this installation's tag, unknown job"
            if mark.get("this_installation")
            else "not made by this installation"
        )
        lines.append(
            f"watermark: payload {mark['payload']} (installation tag {mark['installation_tag']}, "
            f"job tag {mark['job_tag']}; confidence {mark['confidence']:.2f}) - {origin}"
        )
    meta = report["metadata"]
    if meta.get("digital_source_type"):
        size = meta.get("original_size")
        lines.append(
            f"metadata: IPTC DigitalSourceType {meta['digital_source_type'].rsplit('/', 1)[-1]}"
            f" ({meta.get('container')})" + (f", original size {size[0]}x{size[1]}" if size else "")
        )
    else:
        lines.append("metadata: no synthetic-media declaration")
    c2pa = report["c2pa"]
    status = {
        "trusted": "trusted (valid, signed by this installation's certificate authority)",
        "valid": "valid (signed by someone else)",
        "invalid": "INVALID",
        "absent": "absent",
    }[c2pa["status"]]
    reason = f": {c2pa['reason']}" if c2pa.get("reason") and c2pa["status"] != "trusted" else ""
    lines.append(f"C2PA: {status}{reason}")
    lines += [f"note: {note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def run_cli(path: str | Path, data_dir: str | Path, as_json: bool = False) -> int:
    """``app.py verify FILE [--json]``: print the report; exit 2 with one error line on bad input."""
    try:
        report = verify_file(path, data_dir)
    except EngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(report) if as_json else format_report(report))
    return 0


def _kind(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(16)
    if not head:
        raise InvalidInput(f"{path.name}: the file is empty (0 bytes)")
    sniffed = imageio.sniff_image_format(head)
    if sniffed and sniffed != "gif":
        return "image"
    import av

    try:
        with av.open(str(path)) as container:
            if container.streams.video:
                for _ in container.decode(video=0):
                    return "video"  # a frame decodes: a real video, not text ffmpeg guessed at
    except (av.error.FFmpegError, OSError):
        pass
    raise InvalidInput(f"{path.name}: not an image or video this program can read")


def _image_watermark(path: Path, original_size: tuple[int, int] | None):
    image = imageio.load_image(path)
    size = (image.shape[1], image.shape[0])
    reading = watermark.read(image)
    if reading is None and original_size is not None and tuple(original_size) != size:
        reading = watermark.read(image, original_size)
    return reading


def _video_watermark(path: Path):
    """Average the soft bits of up to MAX_VIDEO_FRAMES keyframes (coded, then upright)."""
    import av

    coded: list[np.ndarray] = []
    upright: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.skip_frame = "NONKEY"
            for frame in container.decode(stream):
                image = frame.to_ndarray(format="bgr24")
                soft = watermark.soft_bits(image)
                if soft is not None:
                    coded.append(soft)
                turns = int(round((getattr(frame, "rotation", 0) or 0) / 90.0)) % 4
                if turns:
                    soft = watermark.soft_bits(np.ascontiguousarray(np.rot90(image, turns)))
                    if soft is not None:
                        upright.append(soft)
                if len(coded) >= MAX_VIDEO_FRAMES:
                    break
    except av.error.FFmpegError as exc:
        raise InvalidInput(f"{path.name}: the video cannot be decoded ({exc})") from None
    for softs in (coded, upright):
        if softs:
            reading = watermark.decode_soft(np.mean(softs, axis=0))
            if reading is not None:
                return reading, len(softs)
    return None, len(coded)


def _watermark_dict(reading, frames: int, data_dir: str | Path) -> dict | None:
    if reading is None:
        return None
    payload = Payload.from_bytes(reading.payload)
    installation = load_installation(data_dir)
    return {
        "payload": payload.hex,
        "job_id": job_for_payload(data_dir, payload),
        "installation_tag": payload.installation_tag,
        "job_tag": payload.job_tag,
        "this_installation": installation is not None
        and installation.tag == payload.installation_tag,
        "confidence": reading.confidence,
        "frames_checked": frames,
    }
