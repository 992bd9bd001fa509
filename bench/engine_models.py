"""Time spent outside the networks per face: every swapper family, and the face masks.

Everything runs on ONE CPU thread (OpenCV, ONNX Runtime intra-op, OpenMP/BLAS), so the
numbers are the cost of our own pre- and post-processing per face, as one worker slot
pays it. The networks are stand-ins that do next to nothing (``tests/standins``); their
``session.run`` time is measured on its own and subtracted: outside = total − network.

1. Swappers (issue #13): ``NeuralSwapper.swap`` of each family (inswapper, hyperswap,
   ghost, simswap, hififace, blendswap, uniface) at the native size, 512 and 1024
   (pixel boost), with the default options (box mask blur 0.3, colour correction,
   alpha paste), on two 1080p frames: t1.jpg resized to 1920×1080 (six faces of
   ~150 px) and a 1080p close-up of one t1 face (~470 px wide). Beside the total, the
   stages timed one by one with the same engine functions (medians of a quarter as many
   samples, at least 5): identity input, crop (warp), normalise + pixel-boost
   split/merge (``swap_crop`` minus the network), split/merge alone, box mask as the
   swapper builds it, colour correction, paste-back.
2. Masks (issue #14): ``MaskBuilder.build`` at crop sizes 256 and 512 for box,
   box+occlusion, box+occlusion+area, box+occlusion+region and all four; the occluder's
   and the parser's ``session.run`` subtracted. Also the region post-processing alone
   (best class over 19 score planes at 512², resize to the crop, soften).

Targets (PASS/FAIL in the tables): a swapper ≤ 5 ms per face outside the network at
its native size and ≤ 25 ms at 1024; box+occlusion+area ≤ 8 ms per face at 256; region
post-processing ≤ 20 ms. Medians of ``--repeat`` (≥ 20) samples after a warm-up, in
this thread's CPU time by default (``--clock wall`` for wall time): on a machine busy
with other work, wall time also counts the waits for a core.

    python -m bench.engine_models [--repeat 20] [--json results.json] [--profile]
    python -m bench.engine_models --quick      # 5 samples, t1 frame only: a smoke run

``--profile`` runs cProfile over 5 calls of each configuration that misses its target
and prints the functions with the most own time (ONNX Runtime's ``run`` included, for
scale). A full run takes about three minutes on two busy cores.
"""

from __future__ import annotations

import os

# One thread everywhere, set before numpy/OpenCV/ONNX Runtime load their pools.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from engine import paste  # noqa: E402
from engine.align import template_points, transform_points, warp_face  # noqa: E402
from engine.converters import Converter  # noqa: E402
from engine.detectors.mtcnn import MtcnnDetector  # noqa: E402
from engine.faces import Face  # noqa: E402
from engine.families.table import ONE, SWAPPER_FAMILIES, ZERO  # noqa: E402
from engine.masks import (  # noqa: E402
    REGION_CLASSES,
    FaceParser,
    MaskBuilder,
    MaskSettings,
    Occluder,
    best_class_in,
    soften,
)
from engine.masks import box_mask as cached_box_mask  # noqa: E402
from engine.models.registry import REGISTRY  # noqa: E402
from engine.options import SwapOptions  # noqa: E402
from engine.runtime import SessionCache  # noqa: E402
from engine.swappers.base import SourceIdentity  # noqa: E402
from engine.swappers.neural import NeuralSwapper  # noqa: E402
from engine.swappers.pixel_boost import explode, implode  # noqa: E402
from tests.assets import T1, TOM_HANKS, load  # noqa: E402
from tests.standins.maskers import make_occluder, make_parser  # noqa: E402
from tests.standins.swapper_families import make_converter, make_swapper  # noqa: E402

cv2.setNumThreads(1)

FRAME_SIZE = (1920, 1080)
CLOSE_UP_ZOOM = 3  # the close-up shows a third of the 1080p frame's width
MODELS = {  # family → the catalogue entry whose interface the stand-in copies
    "inswapper": "inswapper_128",
    "hyperswap": "hyperswap_1a_256",
    "ghost": "ghost_1_256",
    "simswap": "simswap_256",
    "hififace": "hififace_unofficial_256",
    "blendswap": "blendswap_256",
    "uniface": "uniface_256",
}
BOOSTS = (512, 1024)
MASK_SIZES = (256, 512)
MASK_CONFIGS: dict[str, tuple[str, ...]] = {
    "box": ("box",),
    "box+occlusion": ("box", "occlusion"),
    "box+occlusion+area": ("box", "occlusion", "area"),
    "box+occlusion+region": ("box", "occlusion", "region"),
    "box+occlusion+region+area": ("box", "occlusion", "region", "area"),
}
PARSER_CLASSES = 19
PARSER_SIZE = 512

SWAP_NATIVE_MS = 5.0
SWAP_1024_MS = 25.0
MASK_BOX_OCCLUSION_AREA_256_MS = 8.0
REGION_POST_MS = 20.0
PROFILE_CALLS = 5


class Clock:
    """The bench's clock and the network time the ``TimedSession``s add up.

    ``cpu`` (the default) is this thread's CPU time: everything runs on this one thread
    (OpenCV and ONNX Runtime with one thread work in the caller), and CPU time does not
    count the time the thread waits for a core while other work loads the machine.
    ``wall`` is ``perf_counter``.
    """

    def __init__(self, kind: str = "cpu") -> None:
        self.kind = kind
        self.now: Callable[[], float] = time.thread_time if kind == "cpu" else time.perf_counter
        self.network = 0.0


class TimedSession:
    """An ONNX Runtime session whose ``run`` time is added to ``clock.network``."""

    def __init__(self, session, clock: Clock) -> None:
        self._session = session
        self._clock = clock

    def run(self, *args, **kwargs):
        started = self._clock.now()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            self._clock.network += self._clock.now() - started

    def __getattr__(self, name):
        return getattr(self._session, name)


@dataclass(frozen=True)
class Scene:
    """A 1080p frame and the faces to swap in it."""

    name: str
    frame: np.ndarray
    faces: tuple[Face, ...]


@dataclass
class Row:
    """One measured configuration: medians in ms, the target and the verdict."""

    table: str
    name: str
    scene: str
    size: int
    total_ms: float
    network_ms: float
    outside_ms: float
    target_ms: float | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.target_ms is None:
            return "—"
        return "PASS" if self.outside_ms <= self.target_ms else "FAIL"


def stage_repeat(repeat: int) -> int:
    """Samples per stage of the breakdown: a quarter of the rows' (at least 5)."""
    return max(5, repeat // 4)


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000.0


def sample(fn: Callable[[int], object], clock: Clock, repeat: int, warm_up: int = 2):
    """Medians (ms) of total, network and total − network over ``repeat`` calls of
    ``fn(i)`` after ``warm_up`` calls; the network time is what the timed sessions add."""
    for i in range(warm_up):
        fn(i)
    totals, networks, outsides = [], [], []
    for i in range(repeat):
        clock.network = 0.0
        started = clock.now()
        fn(i)
        total = clock.now() - started
        network = clock.network
        totals.append(total)
        networks.append(network)
        outsides.append(total - network)
    return median_ms(totals), median_ms(networks), median_ms(outsides)


def timed(fn: Callable[[], object], clock: Clock, repeat: int) -> float:
    """Median ms of ``fn()`` after one warm-up call."""
    fn()
    values = []
    for _ in range(repeat):
        started = clock.now()
        fn()
        values.append(clock.now() - started)
    return median_ms(values)


# -- inputs ------------------------------------------------------------------------------


def scenes(sessions: SessionCache) -> list[Scene]:
    """t1.jpg at 1920×1080 with its detected faces, and a 1080p close-up of its largest."""
    frame = cv2.resize(load(T1), FRAME_SIZE, interpolation=cv2.INTER_LINEAR)
    faces = MtcnnDetector(sessions).detect(frame, 0.5)
    if not faces:
        raise SystemExit("no face found on t1.jpg: the detector is broken")
    width, height = FRAME_SIZE
    big = max(faces, key=lambda face: face.area)
    cx, cy = (big.box[:2] + big.box[2:]) / 2
    w, h = width // CLOSE_UP_ZOOM, height // CLOSE_UP_ZOOM
    x0 = int(np.clip(cx - w / 2, 0, width - w))
    y0 = int(np.clip(cy - h / 2, 0, height - h))
    close = cv2.resize(frame[y0 : y0 + h, x0 : x0 + w], FRAME_SIZE, interpolation=cv2.INTER_CUBIC)
    shift = np.array([x0, y0], np.float32)
    zoomed = Face(
        box=((big.box.reshape(2, 2) - shift) * CLOSE_UP_ZOOM).reshape(4),
        score=big.score,
        landmarks=(big.landmarks - shift) * CLOSE_UP_ZOOM,
    )
    return [Scene("t1 1080p", frame, tuple(faces)), Scene("close-up 1080p", close, (zoomed,))]


def source_identity() -> SourceIdentity:
    """Tom_Hanks_54745.png is an arcface_112_v2 crop at 112 px; a fixed random embedding."""
    image = load(TOM_HANKS)
    points = template_points("arcface_112_v2", 112)
    face = Face(np.array([0, 0, 112, 112], np.float32), 1.0, points)
    embedding = np.random.default_rng(7).normal(size=512).astype(np.float32)
    return SourceIdentity(image=image, face=face, embedding=embedding)


def build_swapper(
    family_name: str, folder: Path, sessions: SessionCache, clock: Clock
) -> NeuralSwapper:
    """A ``NeuralSwapper`` on a stand-in with the family's tensors (batch 1, like the
    real files), its session wrapped so that ``run`` adds to ``clock``."""
    spec = REGISTRY[MODELS[family_name]]
    family = SWAPPER_FAMILIES[spec.family]
    size = spec.input_size if isinstance(spec.input_size, int) else family.default_size
    emap = None
    if family.source == "emap":
        emap = np.random.default_rng(11).normal(size=(512, 512)) / np.sqrt(512)
    path = make_swapper(
        folder / f"{spec.name}.onnx",
        size=size,
        undo_mean=family.mean,
        undo_std=family.std,
        out_mean=family.mean if family.denormalise else ZERO,
        out_std=family.std if family.denormalise else ONE,
        source_size=family.source_size or None,
        batch=1,
        mask_output=family_name == "hyperswap",
        emap=emap,
    )
    converter = None
    if family.needs_converter:
        matrix = np.random.default_rng(3).normal(size=(512, 512)) / np.sqrt(512)
        converter_path = make_converter(folder / f"{spec.converter}.onnx", matrix)
        converter = Converter(sessions, REGISTRY[spec.converter], converter_path)
    swapper = NeuralSwapper(sessions, spec, path, converter)
    swapper.session = TimedSession(swapper.session, clock)
    return swapper


# -- swappers ----------------------------------------------------------------------------


def swapper_stages(
    swapper: NeuralSwapper,
    scene: Scene,
    source: SourceIdentity,
    options: SwapOptions,
    size: int,
    clock: Clock,
    repeat: int,
) -> dict[str, float]:
    """Each step of ``NeuralSwapper.swap`` timed on its own (median ms), with the same
    engine functions and arguments, on the scene's first face."""
    face = scene.faces[0]
    template = SWAPPER_FAMILIES[swapper.family].template
    k = size // swapper.native_size
    identity = swapper._cached_source_input(source, None, options.swapper_weight)
    crop, matrix = warp_face(scene.frame, face.landmarks, template, size)
    swapped = swapper.swap_crop(crop, identity)
    mask = paste.box_mask(size, options.mask_blur, options.mask_padding)
    tiles = implode(crop, k).astype(np.float32)

    def swap_crop_outside() -> float:
        clock.network = 0.0
        started = clock.now()
        swapper.swap_crop(crop, identity)
        return clock.now() - started - clock.network

    def split_merge() -> None:
        implode(crop, k)
        explode(tiles, k)

    swap_crop_outside()
    normalise = median_ms([swap_crop_outside() for _ in range(repeat)])
    return {
        "identity": timed(
            lambda: swapper._cached_source_input(source, None, options.swapper_weight),
            clock,
            repeat,
        ),
        "crop": timed(
            lambda: warp_face(scene.frame, face.landmarks, template, size), clock, repeat
        ),
        "normalise+boost": normalise,
        "split/merge": timed(split_merge, clock, repeat),
        "box mask": timed(
            lambda: paste.box_mask(size, options.mask_blur, options.mask_padding), clock, repeat
        ),
        "colour": timed(lambda: paste.color_transfer(swapped, crop, mask), clock, repeat),
        "paste": timed(lambda: paste.paste_back(scene.frame, swapped, matrix, mask), clock, repeat),
    }


def swapper_target(swapper: NeuralSwapper, size: int) -> float | None:
    if size == swapper.native_size:
        return SWAP_NATIVE_MS
    return SWAP_1024_MS if size == 1024 else None


def bench_swappers(
    swappers: dict[str, NeuralSwapper],
    scene_list: list[Scene],
    source: SourceIdentity,
    clock: Clock,
    repeat: int,
    profile: bool,
) -> list[Row]:
    options = SwapOptions()
    rows = []
    for name, swapper in swappers.items():
        for scene in scene_list:
            for size in (swapper.native_size, *BOOSTS):

                def swap_one(i: int, swapper=swapper, scene=scene, size=size) -> None:
                    face = scene.faces[i % len(scene.faces)]
                    swapper.swap(scene.frame, face, source, options, size=size)

                total, network, outside = sample(swap_one, clock, repeat)
                stages = swapper_stages(
                    swapper, scene, source, options, size, clock, stage_repeat(repeat)
                )
                row = Row(
                    "swappers", name, scene.name, size, total, network, outside,
                    swapper_target(swapper, size), stages,
                )  # fmt: skip
                rows.append(row)
                print(f"  {name:<10} {scene.name:<15} {size:>5}: outside {outside:7.2f} ms "
                      f"(network {network:6.2f} ms) {row.verdict}", flush=True)  # fmt: skip
                if profile and row.verdict == "FAIL":
                    print_profile(swap_one, clock, PROFILE_CALLS, f"{name} {scene.name} {size}")
    return rows


# -- masks -------------------------------------------------------------------------------


def synthetic_68(size: int) -> np.ndarray:
    """A plausible 68-point face (iBUG order) in an S×S arcface_128 crop: jaw, brows,
    nose, eyes and mouth at the template's proportions."""
    points = np.zeros((68, 2))
    jaw = np.pi - np.arange(17) * np.pi / 16
    points[:17] = np.stack([0.5 + 0.35 * np.cos(jaw), 0.43 + 0.43 * np.sin(jaw)], 1)
    points[17:22] = np.stack([np.linspace(0.21, 0.45, 5), np.full(5, 0.29)], 1)
    points[22:27] = np.stack([np.linspace(0.55, 0.79, 5), np.full(5, 0.29)], 1)
    points[27:31] = np.stack([np.full(4, 0.5), np.linspace(0.35, 0.55, 4)], 1)
    points[31:36] = np.stack([np.linspace(0.42, 0.58, 5), np.full(5, 0.59)], 1)
    eye = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    points[36:42] = np.stack([0.36 + 0.06 * np.cos(eye), 0.40 + 0.02 * np.sin(eye)], 1)
    points[42:48] = np.stack([0.64 + 0.06 * np.cos(eye), 0.40 + 0.02 * np.sin(eye)], 1)
    outer = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    points[48:60] = np.stack([0.5 + 0.12 * np.cos(outer), 0.72 + 0.05 * np.sin(outer)], 1)
    inner = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    points[60:68] = np.stack([0.5 + 0.08 * np.cos(inner), 0.72 + 0.02 * np.sin(inner)], 1)
    return points * size


def mask_models(folder: Path, sessions: SessionCache, clock: Clock) -> tuple[Occluder, FaceParser]:
    """Stand-in XSeg and BiSeNet files (tests/standins/maskers.py), sessions timed."""
    occluder = Occluder(sessions, REGISTRY["xseg_1"], make_occluder(folder / "xseg.onnx"))
    blocks = {1: [(64, 448, 64, 448)], 10: [(192, 320, 192, 320)], 11: [(352, 416, 160, 352)]}
    parser_path = make_parser(folder / "bisenet.onnx", blocks=blocks)
    parser = FaceParser(sessions, REGISTRY["bisenet_resnet_34"], parser_path)
    occluder.session = TimedSession(occluder.session, clock)
    parser.session = TimedSession(parser.session, clock)
    return occluder, parser


def region_post(scores: np.ndarray, classes: tuple[int, ...], size: int) -> np.ndarray:
    """What ``FaceParser.mask`` does after the network: best class, resize, soften."""
    chosen = best_class_in(scores, classes).astype(np.float32)
    if chosen.shape != (size, size):
        chosen = cv2.resize(chosen, (size, size), interpolation=cv2.INTER_LINEAR)
    return soften(chosen)


def bench_masks(
    scene: Scene,
    occluder: Occluder,
    parser: FaceParser,
    clock: Clock,
    repeat: int,
    profile: bool,
) -> list[Row]:
    rows = []
    face = scene.faces[0]
    classes = tuple(REGION_CLASSES.values())
    scores = np.random.default_rng(5).standard_normal(
        (PARSER_CLASSES, PARSER_SIZE, PARSER_SIZE), dtype=np.float32
    )
    for size in MASK_SIZES:
        crop, matrix = warp_face(scene.frame, face.landmarks, "arcface_128", size)
        swapped = cv2.GaussianBlur(crop, (0, 0), 1.0)
        frame_68 = transform_points(synthetic_68(size), cv2.invertAffineTransform(matrix))
        target = Face(face.box, face.score, face.landmarks, landmarks_68=frame_68)
        for label, types in MASK_CONFIGS.items():
            builder = MaskBuilder(MaskSettings(types=types), (occluder,), parser)

            def build(_: int, builder=builder, crop=crop, swapped=swapped, matrix=matrix,
                      target=target) -> None:  # fmt: skip
                builder.build(crop, swapped, matrix, target)

            total, network, outside = sample(build, clock, repeat)
            goal = MASK_BOX_OCCLUSION_AREA_256_MS
            target_ms = goal if (label, size) == ("box+occlusion+area", 256) else None
            row = Row("masks", label, scene.name, size, total, network, outside, target_ms)
            rows.append(row)
            print(f"  {label:<26} {size:>4}: outside {outside:6.2f} ms "
                  f"(network {network:6.2f} ms) {row.verdict}", flush=True)  # fmt: skip
            if profile and row.verdict == "FAIL":
                print_profile(build, clock, PROFILE_CALLS, f"masks {label} {size}")

        def post(_: int, size=size) -> None:
            region_post(scores, classes, size)

        total, network, outside = sample(post, clock, repeat)
        stages = {
            "best class": timed(lambda: best_class_in(scores, classes), clock, repeat),
            "np.argmax": timed(lambda: np.argmax(scores, axis=0), clock, repeat),
        }
        row = Row(
            "masks", "region post-processing", "random scores", size, total, network, outside,
            REGION_POST_MS, stages,
        )  # fmt: skip
        rows.append(row)
        print(f"  {row.name:<26} {size:>4}: {outside:6.2f} ms {row.verdict}", flush=True)
        if profile and row.verdict == "FAIL":
            print_profile(post, clock, PROFILE_CALLS, f"region post-processing {size}")
    return rows


# -- output ------------------------------------------------------------------------------


def print_profile(
    fn: Callable[[int], object], clock: Clock, repeat: int, title: str, top: int = 8
) -> None:
    """cProfile (on the bench's clock) over ``repeat`` calls: the functions with the most
    own time."""
    profiler = cProfile.Profile(clock.now)
    profiler.enable()
    for i in range(repeat):
        fn(i)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next((n for n, line in enumerate(lines) if "ncalls" in line), 0)
    print(f"\n  profile of {title} ({repeat} calls, by own time):")
    for line in lines[start:]:
        print("    " + line)
    print()


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def swapper_table(rows: list[Row]) -> str:
    stage_names = list(rows[0].stages_ms) if rows else []
    head = ["family", "frame", "size", "network", "outside", "target", "result", *stage_names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            row.name, row.scene, str(row.size), fmt(row.network_ms), f"**{row.outside_ms:.2f}**",
            "≤ " + fmt(row.target_ms) if row.target_ms else "—", row.verdict,
            *(fmt(row.stages_ms[name]) for name in stage_names),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mask_table(rows: list[Row]) -> str:
    head = ["masks", "crop", "network", "outside", "target", "result", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        notes = ", ".join(f"{k} {v:.2f}" for k, v in row.stages_ms.items())
        cells = [
            row.name, str(row.size), fmt(row.network_ms), f"**{row.outside_ms:.2f}**",
            "≤ " + fmt(row.target_ms) if row.target_ms else "—", row.verdict, notes,
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def box_cache_note(clock: Clock, repeat: int) -> str:
    """What the swappers' box path (``engine.paste.box_mask``, built per face) costs
    against the cached ``engine.masks.box_mask``, per size."""
    parts = []
    for size in (128, 256, 512, 1024):
        built = timed(lambda size=size: paste.box_mask(size, 0.3, 0.0), clock, repeat)
        cached = timed(lambda size=size: cached_box_mask(size, 0.3), clock, repeat)
        parts.append(f"{size}: {built:.2f} ms built vs {cached:.3f} ms cached")
    return "box mask per face (blur 0.3): " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="samples per row (default 20)")
    parser.add_argument("--quick", action="store_true", help="5 samples, t1 frame only")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--profile", action="store_true", help="cProfile each row that fails")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: this thread's CPU time (default; robust to other load); wall: perf_counter",
    )
    parser.add_argument(
        "--families", default=",".join(MODELS), help="comma-separated families to run"
    )
    args = parser.parse_args()
    repeat = 5 if args.quick else args.repeat
    families = [name.strip() for name in args.families.split(",") if name.strip()]
    unknown = sorted(set(families) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; choose from {', '.join(MODELS)}")

    started = time.perf_counter()
    load_before = os.getloadavg()
    clock = Clock(args.clock)
    sessions = SessionCache("cpu", intra_op_threads=1)
    scene_list = scenes(sessions)
    if args.quick:
        scene_list = scene_list[:1]
    source = source_identity()
    print(f"one thread, {clock.kind} time; {repeat} samples per row; load average {load_before[0]:.2f} "
          f"on {os.cpu_count()} cores", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        swappers = {name: build_swapper(name, folder, sessions, clock) for name in families}
        print("swappers (ms per face):", flush=True)
        swap_rows = bench_swappers(swappers, scene_list, source, clock, repeat, args.profile)
        occluder, face_parser = mask_models(folder, sessions, clock)
        print("masks (ms per face):", flush=True)
        mask_rows = bench_masks(scene_list[-1], occluder, face_parser, clock, repeat, args.profile)
    note = box_cache_note(clock, repeat)
    load_after = os.getloadavg()
    elapsed = time.perf_counter() - started

    print()
    print(
        f"## Swappers: ms per face outside the network (median of {repeat}, one thread, {clock.kind} time)\n"
    )
    print(swapper_table(swap_rows))
    print(
        f"\n## Masks: ms per face outside the networks (median of {repeat}, one thread, {clock.kind} time)\n"
    )
    print(mask_table(mask_rows))
    print(f"\n{note}")
    print(f"load average {load_before[0]:.2f} → {load_after[0]:.2f} on {os.cpu_count()} cores; "
          f"{elapsed:.0f} s")  # fmt: skip
    failed = [row for row in swap_rows + mask_rows if row.verdict == "FAIL"]
    print(f"{len(failed)} of {sum(r.target_ms is not None for r in swap_rows + mask_rows)} "
          f"targets missed")  # fmt: skip
    if args.json:
        result = {
            "repeat": repeat,
            "threads": 1,
            "clock": clock.kind,
            "cores": os.cpu_count(),
            "load_average": [load_before[0], load_after[0]],
            "seconds": round(elapsed, 1),
            "rows": [asdict(row) | {"result": row.verdict} for row in swap_rows + mask_rows],
            "box_mask_cache": note,
        }
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
