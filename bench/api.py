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

    python -m bench.api [--submits 200] [--queued 10000] [--clients 8] [--repeat 5]
    python -m bench.api --throughput-only [--gate-at-submit]

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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
