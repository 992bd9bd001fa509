"""Scheduler benchmark, all measured side by side in one run (the machine is shared and noisy).

    python -m bench.scheduler [--jobs 2000] [--queued 10000] [--samples 500] [--image-jobs 12]

1. End-to-end throughput of no-op jobs: submit → worker process → succeeded,
   with durable commits (SQLite ``synchronous=FULL``, inputs fsynced).
2. Submit latency p50/p99 with 10,000 jobs already queued.
3. The same no-op workload through Celery with a Redis broker and result
   backend (``/usr/bin/redis-server`` on 127.0.0.1, prefork worker, same
   concurrency as our slots).
4. Throughput of a real image job (the production ``swap`` kind: content
   gate, MTCNN detector, classic swapper, provenance stamp) with 1 versus 2
   CPU device slots, one thread per slot.
5. One long video (``--video-seconds``, 24, at 10 fps, 640×360, a keyframe
   every 2 s, two-second segments) on ``--devices cpu:0,cpu:1``: split over both devices (the
   default) versus the same job unsplit, frames per second end to end
   (stage, segments, join, provenance).

Each of (4) and (5) alternates its two variants ``--rounds`` times (5) and
reports medians. Printed ratios: ours ÷ Celery (target ≥ 2), p99 submit
latency (target < 50 ms), 2-slot ÷ 1-slot (target ≥ 1.8), split ÷ unsplit
(target ≥ 1.6).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a file: make the repository importable, not bench/
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from typing import Any

from engine.progress import Progress
from scheduler.events import STATUS
from scheduler.jobs import JobStatus
from scheduler.service import Scheduler, SchedulerConfig
from scheduler.tasks import TaskContext, TaskKind

REPO = Path(__file__).resolve().parents[1]
REDIS_SERVER = "/usr/bin/redis-server"
BENCH_TASKS = ("bench.scheduler",)
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


# -- task kinds (imported by the worker processes) ---------------------------------------


def bench_noop(ctx: TaskContext) -> dict:
    ctx.output.write_bytes(b"ok")
    return {}


def bench_block(ctx: TaskContext) -> dict:
    """Holds its slot until canceled, so that submitted jobs stay queued."""
    while not ctx.cancel.canceled:
        ctx.progress(Progress(stage="blocking"))
        time.sleep(0.05)
    ctx.cancel.raise_if_canceled()
    return {}


# -- the Celery side -----------------------------------------------------------------------

_celery_app = None


TASK_KINDS = (
    TaskKind("bench_noop", bench_noop),
    TaskKind("bench_block", bench_block),
)


def make_celery_app(broker_url: str):
    from celery import Celery

    app = Celery("fusion-bench", broker=broker_url, backend=broker_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_expires=600,
    )

    @app.task(name="bench.noop")
    def noop() -> str:
        return "ok"

    return app


def __getattr__(name: str) -> Any:
    """``celery -A bench.scheduler:celery_app`` builds the app from $BENCH_BROKER_URL."""
    global _celery_app
    if name == "celery_app":
        if _celery_app is None:
            _celery_app = make_celery_app(os.environ["BENCH_BROKER_URL"])
        return _celery_app
    raise AttributeError(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def redis_server(workdir: Path):
    port = free_port()
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def celery_throughput(jobs: int, concurrency: int, workdir: Path) -> float:
    """No-op tasks per second through Celery, first send to last result."""
    with redis_server(workdir) as url:
        env = {**os.environ, "BENCH_BROKER_URL": url, "PYTHONPATH": str(REPO)}
        log = (workdir / "celery-worker.log").open("w")
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.scheduler:celery_app", "worker",
             "--pool", "prefork", "--concurrency", str(concurrency), "--without-gossip",
             "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
             "-n", f"bench-{os.getpid()}@localhost"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            from celery.result import ResultSet

            app = make_celery_app(url)
            noop = app.tasks["bench.noop"]
            warm = [noop.apply_async() for _ in range(concurrency * 4)]
            ResultSet(warm).join_native(timeout=120)
            started = time.perf_counter()
            results = [noop.apply_async() for _ in range(jobs)]
            values = ResultSet(results).join_native(timeout=600)
            elapsed = time.perf_counter() - started
            assert values == ["ok"] * jobs
            app.close()
            return jobs / elapsed
        except Exception:
            log.flush()
            print((workdir / "celery-worker.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            log.close()


# -- our side ------------------------------------------------------------------------------


def config(data_dir: Path, **overrides: Any) -> SchedulerConfig:
    settings: dict[str, Any] = {
        "data_dir": data_dir,
        "devices": {"cpu": 2},
        "task_modules": BENCH_TASKS,
        "max_queued": 100_000,
        "max_queued_per_owner": 100_000,
        "synchronous": "FULL",
        "durable_files": True,
        "default_time_limit": 600.0,
    }
    settings.update(overrides)
    return SchedulerConfig(**settings)


async def submit_many(scheduler: Scheduler, count: int, kind: str, concurrency: int = 32, **kw):
    gate = asyncio.Semaphore(concurrency)

    async def one(number: int):
        async with gate:
            return await scheduler.submit(f"owner-{number % 50}", [], None, kind=kind, **kw)

    return await asyncio.gather(*(one(n) for n in range(count)))


async def wait_finished(subscription, ids: set[str], timeout: float) -> None:
    pending = set(ids)
    deadline = time.monotonic() + timeout
    while pending:
        event = await subscription.get(timeout=max(0.1, deadline - time.monotonic()))
        if event is None:
            raise RuntimeError(f"{len(pending)} jobs did not finish in {timeout:.0f} s")
        if event.type == STATUS and event.status in FINISHED and event.job_id in pending:
            if event.status is not JobStatus.SUCCEEDED:
                raise RuntimeError(f"job {event.job_id} ended {event.status}: {event.error}")
            pending.discard(event.job_id)


async def our_throughput(jobs: int, slots: int, workdir: Path, synchronous: str = "FULL") -> float:
    async with Scheduler(
        config(workdir, devices={"cpu": slots}, synchronous=synchronous,
               durable_files=synchronous != "OFF")
    ) as scheduler:  # fmt: skip
        await scheduler.executor.wait_ready()
        subscription = scheduler.subscribe()
        warm = await submit_many(scheduler, slots * 4, "bench_noop")
        await wait_finished(subscription, {j.id for j in warm}, 60)
        started = time.perf_counter()
        submitted = asyncio.get_running_loop().create_task(
            submit_many(scheduler, jobs, "bench_noop")
        )
        done = 0
        while done < jobs:
            event = await subscription.get(timeout=120)
            if event is None:
                raise RuntimeError("no-op jobs stalled")
            if event.type == STATUS and event.status is JobStatus.SUCCEEDED:
                done += 1
        elapsed = time.perf_counter() - started
        await submitted
        return jobs / elapsed


async def submit_latency(queued: int, samples: int, workdir: Path) -> tuple[float, float, int]:
    """p50 and p99 of one submit (ms), measured with ``queued`` jobs already waiting."""
    async with Scheduler(config(workdir, devices={"cpu": 1})) as scheduler:
        await scheduler.executor.wait_ready()
        blocker = await scheduler.submit("blocker", [], None, kind="bench_block")
        while (await scheduler.get(blocker.id)).status is not JobStatus.RUNNING:
            await asyncio.sleep(0.02)
        await submit_many(scheduler, queued, "bench_noop", concurrency=64)
        depth = (await scheduler.stats()).queued
        timings = []
        payload = ("input.bin", os.urandom(4096))
        for number in range(samples):
            started = time.perf_counter()
            await scheduler.submit(f"owner-{number % 50}", [], payload, kind="bench_noop")
            timings.append((time.perf_counter() - started) * 1000)
        await scheduler.cancel(blocker.id)
        timings.sort()
        p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
        return statistics.median(timings), p99, depth


async def image_throughput(jobs: int, slots: int, workdir: Path) -> float:
    """Real swap jobs per second with ``slots`` CPU slots, one thread each."""
    from tests.assets import T1, TOM_HANKS

    models = workdir / "models"
    async with Scheduler(
        config(
            workdir,
            devices={"cpu": slots},
            worker_settings={"models_dir": str(models), "threads": 1},
        )
    ) as scheduler:
        await scheduler.executor.wait_ready()
        subscription = scheduler.subscribe()

        async def run(count: int) -> float:
            started = time.perf_counter()
            submitted = [
                await scheduler.submit(
                    f"owner-{n % 3}",
                    [("tom.png", TOM_HANKS)],
                    ("t1.jpg", T1),
                    {"selector": "many"},
                )  # fmt: skip
                for n in range(count)
            ]
            await wait_finished(subscription, {j.id for j in submitted}, 900)
            return count / (time.perf_counter() - started)

        await run(slots)  # every worker loads its models once
        return await run(jobs)


async def video_throughput(seconds: float, split: bool, workdir: Path) -> float:
    """Frames per second of one long video job on two CPU devices, split or not."""
    from tests.assets import TOM_HANKS
    from tests.media import make_video

    workdir.mkdir(parents=True, exist_ok=True)
    # A keyframe every 2 s, as phones and cameras write them (x264's default of 250
    # frames would make every segment decode from the start of the file).
    clip = make_video(workdir / "long.mp4", seconds=seconds, fps=10, size=(640, 360), gop=20)
    settings = {"models_dir": str(workdir / "models"), "threads": 1, "data_dir": str(workdir)}
    async with Scheduler(
        config(
            workdir,
            devices={"cpu:0": 1, "cpu:1": 1},
            worker_settings=settings,
            split_video=split,
        )
    ) as scheduler:
        await scheduler.executor.wait_ready()
        subscription = scheduler.subscribe()
        warm = await scheduler.submit("warm", [("tom.png", TOM_HANKS)], ("t.png", TOM_HANKS))
        await wait_finished(subscription, {warm.id}, 300)
        started = time.perf_counter()
        job = await scheduler.submit(
            "bench", [("tom.png", TOM_HANKS)], ("long.mp4", clip), {"segment_seconds": 2.0}
        )
        await wait_finished(subscription, {job.id}, 1800)
        elapsed = time.perf_counter() - started
        done = await scheduler.get(job.id)
        if split != ("segments" in (done.result or {})):
            raise RuntimeError(f"the job was not run as asked (split={split}): {done.result}")
        return int(seconds * 10) / elapsed


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="no-op jobs per throughput run")
    parser.add_argument(
        "--slots", type=int, default=2, help="worker slots (and Celery concurrency)"
    )
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=500, help="submits timed for latency")
    parser.add_argument("--image-jobs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs of (4) and (5)")
    parser.add_argument("--video-seconds", type=float, default=24.0)
    parser.add_argument(
        "--skip", action="append", default=[], help="noop, latency, celery, image, video"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-scheduler-"))
    print(f"scheduler benchmark on {os.cpu_count()} CPUs, data in {root}", flush=True)
    results: dict[str, float] = {}
    try:
        if "noop" not in args.skip:
            ours = asyncio.run(our_throughput(args.jobs, args.slots, root / "noop"))
            results["ours"] = ours
            print(f"(1) ours, durable commits: {ours:8.0f} no-op jobs/s "
                  f"({args.jobs} jobs, {args.slots} slots)", flush=True)  # fmt: skip
        if "latency" not in args.skip:
            p50, p99, depth = asyncio.run(submit_latency(args.queued, args.samples, root / "lat"))
            results["p99"] = p99
            print(f"(2) submit latency with {depth} queued: p50 {p50:.2f} ms, p99 {p99:.2f} ms",
                  flush=True)  # fmt: skip
        if "celery" not in args.skip:
            (root / "redis").mkdir()
            celery = celery_throughput(args.jobs, args.slots, root / "redis")
            results["celery"] = celery
            print(f"(3) Celery + Redis:        {celery:8.0f} no-op jobs/s", flush=True)
        if "image" not in args.skip:
            rates: dict[int, list[float]] = {1: [], 2: []}
            for round_ in range(args.rounds):  # alternate, so that drift hits both alike
                for slots in (1, 2):
                    where = root / f"img{slots}-{round_}"
                    rates[slots].append(
                        asyncio.run(image_throughput(args.image_jobs, slots, where))
                    )
            one, two = statistics.median(rates[1]), statistics.median(rates[2])
            results["one"], results["two"] = one, two
            print(f"(4) image swap jobs (median of {args.rounds}): 1 slot {one:.2f}/s, "
                  f"2 slots {two:.2f}/s", flush=True)  # fmt: skip
        if "video" not in args.skip:
            fps: dict[bool, list[float]] = {False: [], True: []}
            for round_ in range(args.rounds):
                for split in (False, True):
                    where = root / f"video-{split}-{round_}"
                    fps[split].append(
                        asyncio.run(video_throughput(args.video_seconds, split, where))
                    )
                    shutil.rmtree(where, ignore_errors=True)
            whole, parts = statistics.median(fps[False]), statistics.median(fps[True])
            results["unsplit"], results["split"] = whole, parts
            print(f"(5) {args.video_seconds:g} s video on cpu:0,cpu:1 (median of {args.rounds}): "
                  f"unsplit {whole:.1f} frames/s, split {parts:.1f} frames/s", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("ratios")
    if "ours" in results and "celery" in results:
        ratio = results["ours"] / results["celery"]
        print(f"  ours / Celery throughput:  {ratio:5.2f}  (target >= 2)")
    if "p99" in results:
        print(f"  p99 submit latency:        {results['p99']:5.1f} ms  (target < 50)")
    if "one" in results:
        print(
            f"  2 slots / 1 slot:          {results['two'] / results['one']:5.2f}  (target >= 1.8)"
        )
    if "split" in results:
        ratio = results["split"] / results["unsplit"]
        print(f"  split / unsplit (video):   {ratio:5.2f}  (target >= 1.6)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
