"""Per-stage time of the embedded image pipeline (mtcnn + classic) on t1.jpg.

Stages: decode, detect, align, swap (colour transfer), paste, encode. Also the
share of the total spent outside model inference (ONNX Runtime ``run`` calls),
which is what our own code costs. All figures come from one run, side by side.

    python -m bench.engine_image [--repeat 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2

from engine import imageio
from engine.align import estimate_affine
from engine.detectors.mtcnn import MtcnnDetector
from engine.options import SwapOptions
from engine.paste import color_transfer, paste_back
from engine.runtime import SessionCache
from engine.swappers.classic import TEMPLATE, crop_size, oval_mask
from tests.assets import T1, TOM_HANKS


class TimedSession:
    """Wraps an ONNX Runtime session and adds up the time spent in ``run``."""

    def __init__(self, session, clock: dict[str, float]) -> None:
        self._session = session
        self._clock = clock

    def run(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            self._clock["inference"] += time.perf_counter() - started

    def __getattr__(self, name):
        return getattr(self._session, name)


class TimedSessionCache(SessionCache):
    def __init__(self, clock: dict[str, float]) -> None:
        super().__init__("cpu")
        self.clock = clock

    def get(self, path):
        return TimedSession(super().get(path), self.clock)


def run_once(detector: MtcnnDetector, source, source_face, out: Path, times: dict) -> None:
    options = SwapOptions(selector="many")

    def stage(name, fn, *args):
        started = time.perf_counter()
        value = fn(*args)
        times[name].append(time.perf_counter() - started)
        return value

    frame = stage("decode", imageio.load_image, T1)
    faces = stage("detect", detector.detect, frame)
    align_t = swap_t = paste_t = 0.0
    for face in faces:
        started = time.perf_counter()
        size = crop_size(face.landmarks)
        target_matrix = estimate_affine(face.landmarks, TEMPLATE, size)
        source_matrix = estimate_affine(source_face.landmarks, TEMPLATE, size)
        source_crop = cv2.warpAffine(
            source, source_matrix, (size, size), borderMode=cv2.BORDER_REPLICATE
        )
        target_crop = cv2.warpAffine(
            frame, target_matrix, (size, size), borderMode=cv2.BORDER_REPLICATE
        )
        mask = oval_mask(size, options.mask_blur, options.mask_padding)
        align_t += time.perf_counter() - started
        started = time.perf_counter()
        swapped = color_transfer(source_crop, target_crop, mask)
        swap_t += time.perf_counter() - started
        started = time.perf_counter()
        frame = paste_back(frame, swapped, target_matrix, mask)
        paste_t += time.perf_counter() - started
    times["align"].append(align_t)
    times["swap"].append(swap_t)
    times["paste"].append(paste_t)
    stage("encode", imageio.save_image, frame, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    clock: dict[str, float] = defaultdict(float)
    detector = MtcnnDetector(TimedSessionCache(clock))
    source = imageio.load_image(TOM_HANKS)
    source_face = detector.detect(source)[0]
    times: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.jpg"
        run_once(detector, source, source_face, out, defaultdict(list))  # warm-up
        clock["inference"] = 0.0
        started = time.perf_counter()
        for _ in range(args.repeat):
            run_once(detector, source, source_face, out, times)
        total = (time.perf_counter() - started) / args.repeat
    inference = clock["inference"] / args.repeat
    print(f"embedded pipeline (mtcnn + classic) on t1.jpg 1280x886, 6 faces, {args.repeat} runs")
    print(f"{'stage':<8} {'median ms':>10} {'share':>7}")
    for name in ("decode", "detect", "align", "swap", "paste", "encode"):
        median = statistics.median(times[name])
        print(f"{name:<8} {median * 1000:>10.1f} {median / total:>7.1%}")
    print(f"{'total':<8} {total * 1000:>10.1f}")
    print(
        f"model inference (ONNX Runtime run): {inference * 1000:.1f} ms = {inference / total:.1%}"
    )
    print(
        f"outside model inference: {(total - inference) * 1000:.1f} ms = "
        f"{(total - inference) / total:.1%}"
    )


if __name__ == "__main__":
    main()
