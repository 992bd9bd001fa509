"""REST API benchmark, all in one run against real studio processes on 127.0.0.1.

1. Submit latency over HTTP (multipart POST /api/v1/jobs → 202), p50/p99, with an
   empty queue and with 10,000 jobs already queued. Each submit sends a source
   and a target that no earlier submit sent (a strip of blocks differs), so the
   content gate classifies two new images every time: its score cache never
   answers. A third series sends one face with a new target each time, as a
   batch does. The submitted jobs are real face swaps: the worker (at its
   default idle CPU priority) runs them on the same two cores while the
   submits go on, so the server is measured on a busy machine. Input copies
   and commits are fsynced. The first few submits warm up and are not counted.
2. SSE latency: from a progress event published on the scheduler's event bus
   (its ``at`` stamp, same machine clock) to the client reading it from
   /api/v1/jobs/{id}/events. Workers report 4 times a second and the bus
   passes up to 5 a second per job (scheduler/progress_gate.py), so a report
   is held only in a rare burst; the spread includes any such hold.

3. Throughput: ``--clients`` (8) concurrent HTTP clients submit at once while the
   submitted jobs run, each request a 512×512 PNG source and a 1280×886 JPEG target
   whose bytes are new each time; submits per second and p50/p95 latency, the
   median of ``--repeat`` (5) runs. The content gate runs where the studio's
   default puts it (``--content-gate dispatch``: in each job's first stage, off
   the request path); ``--gate-at-submit`` measures it in the request instead.

4. Preview latency (POST /api/v1/preview → the JPEG), p50/p90, for a 1280×886 image
   (t1.jpg, six faces) and for a frame of a 720p video, with the embedded models
   (classic swapper, MTCNN), beside the submit→succeeded latency of the same work as a
   job (the image; for the video, a job trimmed to that one frame), polled every 20 ms.
   Every preview moves a slider (a new ``mask_blur``), as the Create panel does, so the
   frame's faces are found once and reused; a "cold" series moves ``detector_score``
   instead, so every preview finds the faces again; the video previews also move along
   the frames (new faces every time). Targets: image preview p50 ≤ 1 s and ≤ 0.5 × the
   job's p50.

    python -m bench.api [--submits 200] [--queued 10000] [--clients 8] [--repeat 5]
    python -m bench.api --throughput-only [--gate-at-submit]
    python -m bench.api --preview-only [--previews 20] [--preview-jobs 5]

Prints a table and the ratio p99(10,000 queued) ÷ p99(empty queue).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import secrets
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import httpx

from scheduler.jobs import Job, JobSpec, JobStatus, StoredFile
from scheduler.service import DB_NAME
from scheduler.store import Store
from tests.assets import T1, TOM_HANKS
from tests.live_studio import StudioProcess, create_key, iter_sse
from tests.media import make_video

HELD_OWNER = "bench-filler"
WARM_UP_SUBMITS = 5

Files = list[tuple[str, tuple[str, bytes]]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def prefill(data_dir: Path, count: int) -> float:
    """Queue ``count`` jobs of another owner that are never due (they stay queued)."""
    store = Store(data_dir / DB_NAME, synchronous="NORMAL")
    await store.open()
    started = time.perf_counter()
    now = time.time()
    spec = JobSpec(
        sources=(StoredFile("source-1.png", "me.png", 1),),
        target=StoredFile("target.jpg", "t.jpg", 1),
        output="result.jpg",
    )
    jobs = [
        Job(
            id=secrets.token_urlsafe(16),
            owner=HELD_OWNER,
            spec=spec,
            status=JobStatus.QUEUED,
            created_at=now,
            updated_at=now,
        )
        for _ in range(count)
    ]
    for start in range(0, count, 500):
        await asyncio.gather(*(store.insert(job) for job in jobs[start : start + 500]))
    await store.close()
    with sqlite3.connect(data_dir / DB_NAME) as db:  # hold them: due in ~30,000 years
        db.execute("UPDATE jobs SET run_after = 1e12 WHERE owner = ?", (HELD_OWNER,))
    return time.perf_counter() - started


def distinct_uploads(count: int, first: int = 0, same_source: bool = False) -> list[Files]:
    """``count`` submissions whose files differ from each other's by a strip of blocks."""
    source = cv2.imread(str(TOM_HANKS))
    target = cv2.resize(cv2.imread(str(T1)), (320, 221))
    uploads, seen = [], set()
    for number in range(first, first + count):
        face, scene = source.copy(), target.copy()
        for bit in range(14):  # the number as a strip of black and white 8×8 blocks
            shade = 255 if number >> bit & 1 else 0
            if not same_source:
                face[:8, 8 * bit : 8 * bit + 8] = shade
            scene[:8, 8 * bit : 8 * bit + 8] = shade
        face_png = cv2.imencode(".png", face)[1].tobytes()
        scene_jpg = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        seen.update({face_png, scene_jpg})
        uploads.append([("source", ("me.png", face_png)), ("target", ("target.jpg", scene_jpg))])
    expected = count + 1 if same_source else 2 * count
    if len(seen) != expected:
        raise RuntimeError(f"the bench images are not distinct ({len(seen)} of {expected})")
    return uploads


def submit_latencies(url: str, key: str, uploads: list[Files]) -> list[float]:
    latencies = []
    options = {"options": json.dumps({"priority": -1})}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        http.get("/api/v1/health")
        for files in uploads:
            started = time.perf_counter()
            response = http.post("/api/v1/jobs", files=files, data=options)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 202:
                raise RuntimeError(f"submit failed: {response.status_code} {response.text}")
    return latencies[WARM_UP_SUBMITS:]


def sse_latencies(url: str, key: str, video: Path) -> list[float]:
    files = [
        ("source", ("me.png", TOM_HANKS.read_bytes())),
        ("target", ("clip.mp4", video.read_bytes())),
    ]
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        job_id = http.post(
            "/api/v1/jobs", files=files, data={"options": json.dumps({"priority": 100})}
        ).json()["id"]
        latencies = []
        with http.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
            for name, data in iter_sse(response):
                if name == "progress" and data.get("at"):
                    latencies.append((time.time() - data["at"]) * 1000)
    return latencies


def throughput_uploads(count: int, first: int = 0) -> list[Files]:
    """``count`` requests of a 512×512 PNG source and a 1280×886 JPEG target, each new."""
    source = cv2.resize(cv2.imread(str(TOM_HANKS)), (512, 512), interpolation=cv2.INTER_AREA)
    target = cv2.resize(cv2.imread(str(T1)), (1280, 886), interpolation=cv2.INTER_CUBIC)
    uploads = []
    for number in range(first, first + count):
        face, scene = source.copy(), target.copy()
        for bit in range(16):
            shade = 255 if number >> bit & 1 else 0
            face[:8, 8 * bit : 8 * bit + 8] = shade
            scene[:8, 8 * bit : 8 * bit + 8] = shade
        face_png = cv2.imencode(".png", face)[1].tobytes()
        scene_jpg = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        uploads.append([("source", ("me.png", face_png)), ("target", ("target.jpg", scene_jpg))])
    return uploads


def concurrent_run(url: str, key: str, uploads: list[Files], clients: int) -> dict:
    """All ``uploads`` sent by ``clients`` threads at once; throughput and latencies."""
    options = {"options": json.dumps({"priority": -1})}
    work = list(uploads)
    latencies: list[float] = []

    def client() -> None:
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as http:
            while True:
                try:
                    files = work.pop()
                except IndexError:
                    return
                started = time.perf_counter()
                response = http.post("/api/v1/jobs", files=files, data=options)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 202:
                    raise RuntimeError(f"submit failed: {response.status_code} {response.text}")

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    elapsed = time.perf_counter() - started
    return {
        "per_second": len(uploads) / elapsed,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
    }


def throughput(root: Path, submits: int, clients: int, repeat: int, gate_at_submit: bool) -> dict:
    """The median of ``repeat`` concurrent runs against one studio (jobs keep running)."""
    data = root / "data-throughput"
    data.mkdir(parents=True)
    key = create_key(data, "bench")
    total = (submits + WARM_UP_SUBMITS) * repeat
    args = ["--max-queued", str(total + 100), "--max-queued-per-owner", str(total + 100)]
    args += ["--log-level", "warning"]
    if gate_at_submit:
        args += ["--content-gate", "submit"]
    runs = []
    with StudioProcess(data, args) as server:
        for number in range(repeat):
            first = number * (submits + WARM_UP_SUBMITS)
            warm = throughput_uploads(WARM_UP_SUBMITS, first)
            concurrent_run(server.url, key, warm, clients)
            batch = throughput_uploads(submits, first + WARM_UP_SUBMITS)
            runs.append(concurrent_run(server.url, key, batch, clients))
    return {
        name: statistics.median(run[name] for run in runs) for name in ("per_second", "p50", "p95")
    } | {"runs": runs}


def print_throughput(result: dict, submits: int, clients: int, gate_at_submit: bool) -> None:
    where = "in the request" if gate_at_submit else "in each job's first stage"
    print(
        f"throughput: {clients} concurrent clients, {submits} submits per run, "
        f"median of {len(result['runs'])} runs (content gate {where})"
    )
    print(
        f"  {result['per_second']:.1f} submits/s, p50 {result['p50']:.0f} ms, "
        f"p95 {result['p95']:.0f} ms"
    )
    for run in result["runs"]:
        print(f"    run: {run['per_second']:.1f}/s p50 {run['p50']:.0f} ms p95 {run['p95']:.0f} ms")


PREVIEW_OPTIONS = {"selector": "many", "consent": True}
VIDEO_720P = (1280, 720)
VIDEO_FPS = 25
POLL_SECONDS = 0.02


def preview_inputs(root: Path) -> dict[str, tuple[str, bytes]]:
    """The source, a 1280×886 JPEG of t1.jpg and a 720p clip panning over it."""
    photo = cv2.imread(str(T1))
    if photo.shape[:2] != (886, 1280):
        photo = cv2.resize(photo, (1280, 886), interpolation=cv2.INTER_AREA)
    image = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    video = make_video(root / "clip720.mp4", seconds=2.0, fps=VIDEO_FPS, size=VIDEO_720P)
    return {
        "source": ("me.png", TOM_HANKS.read_bytes()),
        "image": ("t1.jpg", image),
        "video": ("clip720.mp4", video.read_bytes()),
    }


def preview_latencies(
    http: httpx.Client,
    inputs: dict,
    target: str,
    count: int,
    frames: int = 1,
    slider: str = "mask_blur",
) -> list[float]:
    """``count`` previews, each with a new value of ``slider`` (and, for a video, a new
    frame). ``mask_blur`` only changes compositing (the frame's faces are found once);
    ``detector_score`` makes every preview find the faces again, as a new frame does."""
    latencies = []
    for number in range(count + 1):  # the first one loads the models: not counted
        step = number / max(count, 1)
        value = 0.1 + 0.4 * step if slider == "mask_blur" else 0.5 + 0.05 * step
        options = {**PREVIEW_OPTIONS, slider: round(value, 4)}
        data = {"options": json.dumps(options), "frame": str(number * 7 % frames)}
        files = [("source", inputs["source"]), ("target", inputs[target])]
        started = time.perf_counter()
        response = http.post("/api/v1/preview", files=files, data=data)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"preview failed: {response.status_code} {response.text}")
        if number:
            latencies.append(elapsed)
    return latencies


def job_latencies(http: httpx.Client, inputs: dict, target: str, count: int, options: dict):
    """Submit → ``succeeded`` of ``count`` jobs, one at a time (the first not counted)."""
    latencies = []
    files = [("source", inputs["source"]), ("target", inputs[target])]
    for number in range(count + 1):
        started = time.perf_counter()
        response = http.post("/api/v1/jobs", files=files, data={"options": json.dumps(options)})
        if response.status_code != 202:
            raise RuntimeError(f"submit failed: {response.status_code} {response.text}")
        job_id = response.json()["id"]
        while True:
            status = http.get(f"/api/v1/jobs/{job_id}").json()["status"]
            if status == "succeeded":
                break
            if status in ("failed", "canceled"):
                raise RuntimeError(f"job {job_id} {status}")
            time.sleep(POLL_SECONDS)
        if number:
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def preview_bench(root: Path, previews: int, jobs: int) -> dict[str, list[float]]:
    """Preview and job latencies of the same work against one idle studio."""
    data = root / "data-preview"
    data.mkdir(parents=True)
    key = create_key(data, "bench")
    inputs = preview_inputs(root)
    frames = int(2.0 * VIDEO_FPS)
    second = 1.0 / VIDEO_FPS
    one_frame = {**PREVIEW_OPTIONS, "trim_start": 1.0, "trim_end": 1.0 + second}
    with StudioProcess(data, ["--log-level", "warning"]) as server:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=300) as http:
            return {
                "preview image": preview_latencies(http, inputs, "image", previews),
                "preview image, cold": preview_latencies(
                    http, inputs, "image", previews, slider="detector_score"
                ),
                "preview 720p frame": preview_latencies(http, inputs, "video", previews, frames),
                "job image": job_latencies(http, inputs, "image", jobs, PREVIEW_OPTIONS),
                "job 720p one frame": job_latencies(http, inputs, "video", jobs, one_frame),
            }


def print_previews(result: dict[str, list[float]]) -> None:
    print("preview vs job latency, the same work, embedded models (ms)")
    print(f"{'':>22} {'n':>4} {'p50':>8} {'p90':>8} {'max':>8}")
    for name, ms in result.items():
        print(
            f"{name:>22} {len(ms):>4} {percentile(ms, 50):8.0f} {percentile(ms, 90):8.0f} "
            f"{max(ms):8.0f}"
        )
    image, job = percentile(result["preview image"], 50), percentile(result["job image"], 50)
    video = percentile(result["preview 720p frame"], 50)
    frame_job = percentile(result["job 720p one frame"], 50)
    print(
        f"image: preview p50 ÷ job p50 = {image / job:.2f} (target ≤ 0.5: "
        f"{'met' if image <= 0.5 * job else 'NOT met'}); preview p50 {image / 1000:.2f} s "
        f"(target ≤ 1 s: {'met' if image <= 1000 else 'NOT met'})"
    )
    cold = percentile(result["preview image, cold"], 50)
    print(
        f"image, faces found again every time: preview p50 ÷ job p50 = {cold / job:.2f}; "
        f"p50 {cold / 1000:.2f} s"
    )
    print(f"720p frame: preview p50 ÷ one-frame job p50 = {video / frame_job:.2f}")


NEW_IMAGES = "new source and target"
ONE_FACE = "one face, new targets"


def run_phase(root: Path, queued: int, series: dict[str, list[Files]], video: Path | None) -> dict:
    data = root / f"data-{queued}"
    data.mkdir(parents=True)
    key = create_key(data, "bench")
    fill_seconds = asyncio.run(prefill(data, queued)) if queued else 0.0
    submits = sum(len(uploads) for uploads in series.values())
    args = [
        "--max-queued",
        str(queued + submits + 100),
        "--max-queued-per-owner",
        str(queued + submits + 100),
        "--log-level",
        "warning",
    ]
    with StudioProcess(data, args) as server:
        depth = httpx.get(f"{server.url}/api/v1/health").json()["queue_depth"]
        latencies = {name: submit_latencies(server.url, key, up) for name, up in series.items()}
        sse = sse_latencies(server.url, key, video) if video else []
    return {
        "queued": queued,
        "depth_at_start": depth,
        "fill_s": fill_seconds,
        "submit_ms": latencies,
        "sse_ms": sse,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--throughput-only", action="store_true")
    parser.add_argument("--gate-at-submit", action="store_true")
    parser.add_argument("--preview-only", action="store_true")
    parser.add_argument("--previews", type=int, default=20)
    parser.add_argument("--preview-jobs", type=int, default=5)
    args = parser.parse_args(argv)
    if args.preview_only:
        with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
            print_previews(preview_bench(Path(tmp), args.previews, args.preview_jobs))
        return
    count = args.submits + WARM_UP_SUBMITS
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        result = throughput(Path(tmp), args.submits, args.clients, args.repeat, args.gate_at_submit)
    print_throughput(result, args.submits, args.clients, args.gate_at_submit)
    if args.throughput_only:
        return
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        root = Path(tmp)
        video = make_video(root / "clip.mp4", seconds=4.0, fps=10, size=(320, 240))
        fresh = distinct_uploads(count)
        empty = run_phase(
            root,
            0,
            {NEW_IMAGES: fresh, ONE_FACE: distinct_uploads(count, first=count, same_source=True)},
            video,
        )
        full = run_phase(root, args.queued, {NEW_IMAGES: fresh}, None)
    print(f"submit latency over HTTP, {args.submits} sequential multipart submits (ms)")
    print(
        f"{'queued before':>14} {'depth':>7} {'uploads':>24} "
        f"{'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}"
    )
    for phase in (empty, full):
        for name, ms in phase["submit_ms"].items():
            print(
                f"{phase['queued']:>14} {phase['depth_at_start']:>7} {name:>24} "
                f"{percentile(ms, 50):8.1f} {percentile(ms, 90):8.1f} "
                f"{percentile(ms, 99):8.1f} {max(ms):8.1f}"
            )
    ratio = percentile(full["submit_ms"][NEW_IMAGES], 99) / percentile(
        empty["submit_ms"][NEW_IMAGES], 99
    )
    print(f"p99 with {args.queued} queued ÷ p99 with an empty queue ({NEW_IMAGES}): {ratio:.2f}")
    print(f"(prefilling {args.queued} held jobs took {full['fill_s']:.1f} s)")
    sse = empty["sse_ms"]
    if sse:
        print(
            f"SSE progress latency (event bus → client), {len(sse)} events: "
            f"p50 {percentile(sse, 50):.1f} ms, p90 {percentile(sse, 90):.1f} ms, "
            f"max {max(sse):.1f} ms, mean {statistics.mean(sse):.1f} ms"
        )
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        print_previews(preview_bench(Path(tmp), args.previews, args.preview_jobs))


if __name__ == "__main__":
    main()
