"""REST API benchmark, all in one run against real studio processes on 127.0.0.1.

1. Submit latency over HTTP (multipart POST /api/v1/jobs → 202), p50/p99, with an
   empty queue and with 10,000 jobs already queued. The submitted jobs use a faceless
   source, so each fails within milliseconds in the worker: the numbers measure the API
   and the durable queue (input copies and commits are fsynced), not face swaps
   competing for the same cores.
2. SSE latency: from a progress event published on the scheduler's event bus
   (its ``at`` stamp, same machine clock) to the client reading it from
   /api/v1/jobs/{id}/events. Progress is throttled to 4 reports/s per job by
   design; a report that arrives inside the throttle window is held and sent
   late, so the spread includes that hold.

    python -m bench.api [--submits 200] [--queued 10000]

Prints a table and the ratio p99(10,000 queued) ÷ p99(empty queue).
"""

from __future__ import annotations

import argparse
import asyncio
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
from studio.testing import StudioProcess, create_key, iter_sse
from tests.assets import T1, TOM_HANKS
from tests.media import make_video

HELD_OWNER = "bench-filler"


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


def submit_latencies(url: str, key: str, files: list, count: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as http:
        http.get("/api/v1/health")
        for _ in range(count):
            started = time.perf_counter()
            response = http.post(
                "/api/v1/jobs", files=files, data={"options": json.dumps({"priority": -1})}
            )
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 202:
                raise RuntimeError(f"submit failed: {response.status_code} {response.text}")
    return latencies


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


def run_phase(root: Path, queued: int, submits: int, files: list, video: Path | None) -> dict:
    data = root / f"data-{queued}"
    data.mkdir(parents=True)
    key = create_key(data, "bench")
    fill_seconds = asyncio.run(prefill(data, queued)) if queued else 0.0
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
        latencies = submit_latencies(server.url, key, files, submits)
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
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        root = Path(tmp)
        target = root / "target.jpg"
        cv2.imwrite(str(target), cv2.resize(cv2.imread(str(T1)), (320, 221)))
        files = [
            ("source", ("me.png", TOM_HANKS.read_bytes())),
            ("target", ("target.jpg", target.read_bytes())),
        ]
        video = make_video(root / "clip.mp4", seconds=4.0, fps=10, size=(320, 240))
        empty = run_phase(root, 0, args.submits, files, video)
        full = run_phase(root, args.queued, args.submits, files, None)
    print(f"submit latency over HTTP, {args.submits} sequential multipart submits (ms)")
    print(f"{'queued before':>14} {'depth':>7} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for phase in (empty, full):
        ms = phase["submit_ms"]
        print(
            f"{phase['queued']:>14} {phase['depth_at_start']:>7} "
            f"{percentile(ms, 50):8.1f} {percentile(ms, 90):8.1f} "
            f"{percentile(ms, 99):8.1f} {max(ms):8.1f}"
        )
    ratio = percentile(full["submit_ms"], 99) / percentile(empty["submit_ms"], 99)
    print(f"p99 with {args.queued} queued ÷ p99 with an empty queue: {ratio:.2f}")
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
