"""Video throughput and memory, measured side by side in one run on the same clip.

1. compute-only: frames already decoded in memory, face pipeline only;
2. end-to-end: ``engine.video.swap_video`` (probe, decode, pipeline, encode,
   join, audio mux) with one lane and with ``--lanes`` lanes (a lane is one
   processor working on its own segments; lanes share one device's warm models);
3. naive: the textbook sequential loop (read a frame, process it, write it);
4. peak RSS of ``swap_video`` in a fresh process for a short and a long clip.

The machine is shared and noisy, so the three throughputs are measured in
interleaved rounds and the median of each is reported, with process CPU
seconds per frame (less sensitive to other load than wall time). Ratios:
end-to-end ÷ compute-only at the same lanes (target ≥ 0.9), end-to-end ÷ naive
(target ≥ 1.5 on 2 cores), RSS(long) ÷ RSS(short) (target ≤ 1.1). The face
pipeline is the embedded one (MTCNN + classic), which needs no download.

    python -m bench.video [--seconds 10] [--long 60] [--size 640x360] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import av

from engine import video
from engine.models.manager import ModelManager
from engine.options import OutputOptions, SwapOptions
from engine.pipeline import FaceEngine
from engine.video.encode import ENCODER_THREADS
from engine.video.formats import encoder_settings
from tests import media
from tests.assets import REPO, TOM_HANKS, load


def make_processor(threads: int, selector: str):
    engine = FaceEngine(ModelManager(Path(tempfile.mkdtemp(prefix="models-"))), "cpu", threads)
    return engine.prepare([load(TOM_HANKS)], SwapOptions(selector=selector))


def measured(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def compute_only(processor, frames: list, lanes: int) -> None:
    """The face pipeline alone: ``lanes`` threads on contiguous chunks of decoded frames."""
    chunk = -(-len(frames) // lanes)
    parts = [frames[i : i + chunk] for i in range(0, len(frames), chunk)]

    def work(part):
        worker = processor.fork()
        for frame in part:
            worker.process(frame)

    threads = [threading.Thread(target=work, args=(part,)) for part in parts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def end_to_end(processor, clip: Path, out: Path, options: OutputOptions, lanes: int) -> None:
    video.swap_video([processor] * lanes, clip, out, options)


def naive(processor, clip: Path, out: Path, options: OutputOptions) -> None:
    """Decode a frame, process it, encode it; one thread, nothing overlapped."""
    worker = processor.fork()
    private, _ = encoder_settings(options.video_codec, options)
    with av.open(str(clip)) as source, av.open(str(out), "w") as sink:
        stream_in = source.streams.video[0]
        stream = sink.add_stream("libx264", rate=stream_in.average_rate)
        stream.width, stream.height, stream.pix_fmt = stream_in.width, stream_in.height, "yuv420p"
        stream.codec_context.time_base = stream_in.time_base
        stream.codec_context.thread_count = ENCODER_THREADS
        stream.options = private
        for frame in source.decode(stream_in):
            result = worker.process(frame.to_ndarray(format="bgr24"))
            encoded = av.VideoFrame.from_ndarray(result.image, format="bgr24")
            encoded.pts, encoded.time_base = frame.pts, stream_in.time_base
            sink.mux(stream.encode(encoded))
        sink.mux(stream.encode(None))


RSS_CHILD = """
import json, resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bench.video import make_processor
from engine import video
from engine.options import OutputOptions
clip, out, threads, selector, segment = (
    sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], float(sys.argv[6]))
processor = make_processor(threads, selector)
options = OutputOptions(segment_seconds=segment)
result = video.swap_video([processor], Path(clip), Path(out), options)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"frames": result.frames, "max_rss_mb": rss}))
"""


def peak_rss(clip: Path, out: Path, threads: int, selector: str, segment: float) -> dict:
    """Peak resident memory of one swap_video job in a fresh process."""
    args = [str(REPO), str(clip), str(out), str(threads), selector, str(segment)]
    proc = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, *args], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="main clip length")
    parser.add_argument("--long", type=float, default=60.0, help="long clip for the RSS ratio")
    parser.add_argument("--size", default="640x360", help="clip size WxH")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--lanes", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per lane")
    parser.add_argument("--selector", default="one", choices=("one", "many"))
    parser.add_argument("--segment", type=float, default=2.5, help="segment_seconds")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak-RSS runs")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        tmp_path = Path(tmp)
        clip = media.make_video(tmp_path / "clip.mp4", args.seconds, args.fps, (width, height))
        info = video.probe(clip)
        options = OutputOptions(segment_seconds=args.segment, preset=args.preset)
        processor = make_processor(args.threads, args.selector)
        frames = media.decode_frames(clip)
        processor.fork().process(frames[0])  # warm the sessions
        print(
            f"clip: {info.frames} frames {width}x{height} @ {info.fps} fps, "
            f"{info.duration:.1f} s, audio {info.audio_codec}; cores {os.cpu_count()}; "
            f"selector {args.selector}; ORT threads/lane {args.threads}; "
            f"x264 {args.preset}, {ENCODER_THREADS} encoder threads; "
            f"segments of {args.segment:g} s; load average {os.getloadavg()[0]:.1f}"
        )
        lane_counts = sorted({1, args.lanes})
        runs = {
            f"compute-only x{n}": (lambda n=n: compute_only(processor, frames, n))
            for n in lane_counts
        }
        runs |= {
            f"end-to-end x{n}": (
                lambda n=n: end_to_end(processor, clip, tmp_path / f"e2e{n}.mp4", options, n)
            )
            for n in lane_counts
        }
        runs["naive"] = lambda: naive(processor, clip, tmp_path / "naive.mp4", options)
        samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for _ in range(args.rounds):
            for name, run in runs.items():
                samples[name].append(measured(run))
        count = len(frames)
        frames.clear()  # free the decoded clip before the RSS runs
        fps = {n: count / statistics.median(w for w, _ in s) for n, s in samples.items()}
        cpu_ms = {n: 1000 * statistics.median(c for _, c in s) / count for n, s in samples.items()}
        for name in runs:
            spread = [count / w for w, _ in samples[name]]
            print(
                f"{name:18s} {fps[name]:6.2f} fps (rounds: "
                f"{', '.join(f'{v:.1f}' for v in spread)}), {cpu_ms[name]:6.1f} CPU ms/frame"
            )
        for n in lane_counts:
            ratio = fps[f"end-to-end x{n}"] / fps[f"compute-only x{n}"]
            print(f"end-to-end / compute-only, {n} lane(s): {ratio:.2f} (target >= 0.9)")
        best = max(fps[f"end-to-end x{n}"] for n in lane_counts)
        print(
            f"end-to-end / naive: {fps['end-to-end x1'] / fps['naive']:.2f} with 1 lane, "
            f"{best / fps['naive']:.2f} with {args.lanes} lanes (target >= 1.5 on 2 cores)"
        )

        if args.skip_rss:
            return
        short = media.make_video(tmp_path / "short.mp4", args.seconds, args.fps, (width, height))
        long = media.make_video(tmp_path / "long.mp4", args.long, args.fps, (width, height))
        rss_short = peak_rss(short, tmp_path / "s.mp4", args.threads, args.selector, args.segment)
        rss_long = peak_rss(long, tmp_path / "l.mp4", args.threads, args.selector, args.segment)
        ratio = rss_long["max_rss_mb"] / rss_short["max_rss_mb"]
        print(
            f"peak RSS: {args.seconds:g} s clip {rss_short['max_rss_mb']:.0f} MB, "
            f"{args.long:g} s clip {rss_long['max_rss_mb']:.0f} MB: "
            f"ratio {ratio:.3f} (target <= 1.1); load average {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
