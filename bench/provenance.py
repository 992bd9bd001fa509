"""Added cost of the content gate and of each provenance layer, per image and per video frame.

Run: ``python -m bench.provenance [--frames 50] [--repeat 7]``

Everything is measured in one run on this machine, and each cost is also shown as
a ratio to a reference operation timed in the same run (encoding the image; encoding
one 720p H.264 frame), because absolute times on a shared machine are noisy.
Also prints the watermark's PSNR on the shipped photo and on 720p frames.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from engine.imageio import load_image, save_image
from engine.provenance import metadata, watermark
from engine.provenance.apply import prepare_stamp
from engine.provenance.c2pa_sign import ensure_credentials, read_manifest, sign_file
from engine.runtime import SessionCache
from engine.safety import ContentGate, sample_video_frames
from tests.assets import T1
from tests.media import scene

VIDEO_SIZE = (1280, 720)
VIDEO_FPS = 25


def timed(action: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``action`` in milliseconds (after one warm-up call)."""
    action()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def fresh_copy(source: Path, work: Path, count: int) -> Callable[[], Path]:
    """Copies of ``source`` made before timing; each call hands out the next one."""
    folder = Path(tempfile.mkdtemp(dir=work))
    copies = []
    for index in range(count):
        target = folder / f"{index}{source.suffix}"
        shutil.copyfile(source, target)
        copies.append(target)
    return iter(copies).__next__


def image_costs(
    work: Path, repeat: int, gate: ContentGate, creds
) -> list[tuple[str, float, float]]:
    image = load_image(T1)
    stamp_payload = bytes.fromhex("a1b2c3d4e5f6")
    rows = []
    for suffix in (".png", ".jpg"):
        encode_ms = timed(lambda s=suffix: save_image(image, work / f"ref{s}"), repeat)
        rows.append((f"reference: encode {suffix[1:].upper()} 1280x886", encode_ms, encode_ms))
        marked = watermark.embed(image, stamp_payload)
        base = save_image(marked, work / f"base{suffix}")
        copies = fresh_copy(base, work, repeat + 2)
        with_xmp = copies()
        metadata.write_image_metadata(with_xmp, (1280, 886))
        signed_copies = fresh_copy(with_xmp, work, repeat + 2)
        rows.append(
            (
                f"  metadata (XMP) {suffix[1:].upper()}",
                timed(lambda c=copies: metadata.write_image_metadata(c(), (1280, 886)), repeat),
                encode_ms,
            )
        )
        rows.append(
            (
                f"  C2PA sign {suffix[1:].upper()}",
                timed(lambda c=signed_copies: sign_file(c(), creds), repeat),
                encode_ms,
            )
        )
        signed = signed_copies()
        sign_file(signed, creds)
        rows.append(
            (
                f"  C2PA verify {suffix[1:].upper()} (verify only)",
                timed(lambda p=signed: read_manifest(p, creds.root_cert_pem), repeat),
                encode_ms,
            )
        )
    reference = rows[0][1]
    rows.insert(1, ("  content gate (score)", timed(lambda: gate.score(image), repeat), reference))
    rows.insert(
        2,
        (
            "  watermark embed",
            timed(lambda: watermark.embed(image, stamp_payload), repeat),
            reference,
        ),
    )
    marked = watermark.embed(image, stamp_payload)
    rows.insert(
        3,
        (
            "  watermark read (verify only)",
            timed(lambda: watermark.read(marked), repeat),
            reference,
        ),
    )
    return rows


def make_720p(path: Path, frames: int, mark: bytes | None) -> float:
    """Write a 720p H.264 clip; returns the encoder's milliseconds per frame."""
    encode_ms = 0.0
    with av.open(str(path), "w", options=metadata.muxer_options(path)) as out:
        stream = out.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = *VIDEO_SIZE, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for index in range(frames):
            image = scene(index, frames, VIDEO_SIZE)
            if mark is not None:
                image = watermark.embed(image, mark)
            start = time.perf_counter()
            packets = stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24"))
            encode_ms += (time.perf_counter() - start) * 1000
            out.mux(packets)
        start = time.perf_counter()
        packets = stream.encode(None)
        encode_ms += (time.perf_counter() - start) * 1000
        out.mux(packets)
    return encode_ms / frames


def video_costs(
    work: Path, frames: int, repeat: int, gate: ContentGate, creds
) -> list[tuple[str, float, float]]:
    payload = bytes.fromhex("a1b2c3d4e5f6")
    clip = work / "clip.mp4"
    encode_ms = make_720p(clip, frames, payload)
    frame = scene(0, frames, VIDEO_SIZE)
    rows = [("reference: H.264 encode, per 720p frame", encode_ms, encode_ms)]
    rows.append(
        (
            "  watermark embed, per frame",
            timed(lambda: watermark.embed(frame, payload), repeat),
            encode_ms,
        )
    )
    # The gate looks at one frame per second: its cost per frame is 1/fps of one sample.
    samples = list(sample_video_frames(clip))
    sample_ms = timed(lambda: gate.score(samples[0][1]), repeat)
    rows.append(("  content gate, per frame (1 sample/s)", sample_ms / VIDEO_FPS, encode_ms))
    decode_ms = timed(lambda: list(sample_video_frames(clip)), max(1, repeat // 3)) / frames
    rows.append(("  gate's sampling decode, per frame", decode_ms, encode_ms))
    copies = fresh_copy(clip, work, 2 * repeat + 4)
    remux_ms = timed(
        lambda: metadata.write_video_metadata(copies(), VIDEO_SIZE), max(1, repeat // 2)
    )
    rows.append(("  metadata by remux, per frame (writer tags: 0)", remux_ms / frames, encode_ms))
    sign_ms = timed(lambda: sign_file(copies(), creds), max(1, repeat // 2))
    rows.append(("  C2PA sign, per frame", sign_ms / frames, encode_ms))
    return rows


def psnr_rows() -> list[tuple[str, float]]:
    payload = bytes.fromhex("a1b2c3d4e5f6")
    image = load_image(T1)
    rows = [("t1.jpg 1280x886", watermark.psnr(image, watermark.embed(image, payload)))]
    values = []
    for index in range(0, 50, 10):
        frame = scene(index, 50, VIDEO_SIZE)
        values.append(watermark.psnr(frame, watermark.embed(frame, payload)))
    rows.append(("720p frames of the pan (mean)", float(np.mean(values))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50, help="frames in the 720p test clip")
    parser.add_argument("--repeat", type=int, default=7, help="timed repetitions per measurement")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = all)")
    args = parser.parse_args()
    gate = ContentGate(SessionCache("cpu", intra_op_threads=args.threads))
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        prepare_stamp(work / "data", "bench")
        creds = ensure_credentials(work / "data")
        print(f"{'per image':<48} {'ms':>9} {'× ref':>7}")
        for name, ms, ref in image_costs(work, args.repeat, gate, creds):
            print(f"{name:<48} {ms:9.2f} {ms / ref:7.2f}")
        print()
        print(f"{'per video frame':<48} {'ms':>9} {'× ref':>7}")
        for name, ms, ref in video_costs(work, args.frames, args.repeat, gate, creds):
            print(f"{name:<48} {ms:9.2f} {ms / ref:7.2f}")
    print()
    print("watermark PSNR (dB)")
    for name, value in psnr_rows():
        print(f"  {name:<46} {value:9.2f}")


if __name__ == "__main__":
    main()
