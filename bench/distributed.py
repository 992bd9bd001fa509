"""Throughput of a batch of real image jobs: local backend vs 1 and 2 Celery workers.

The same batch (Tom Hanks' face onto every face of t1.jpg, embedded mtcnn +
classic swapper) runs three times in one go, each through the real scheduler
(SQLite store, dispatcher):

* ``local``     the local backend, one worker process (1 CPU slot);
* ``celery x1`` one Celery worker node with one CPU slot;
* ``celery x2`` two Celery worker nodes with one CPU slot each.

Every worker first runs a warm-up job (models loaded), then the clock runs from
the first submit to the last finished job. Model sessions use one intra-op
thread everywhere, so slots compare like for like. On a machine with fewer
cores than workers, two workers cannot be twice as fast; the ratio shows what
scaling out buys here and the Celery overhead relative to local processes.

    python -m bench.distributed [--jobs 12] [--width 640] [--appendfsync always|everysec]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import cv2

from engine.models.manager import default_models_dir
from scheduler import JobStatus, Scheduler, SchedulerConfig
from scheduler.celery_backend import make_executor, scheduler_devices
from tests.assets import T1, TOM_HANKS
from tests.redis_server import RedisServer, WorkerProcess

OPTIONS = {"swapper": "classic", "detector": "mtcnn", "selector": "many"}


def scheduler_for(data_dir: Path, executor=None) -> Scheduler:
    config = SchedulerConfig(
        data_dir=data_dir,
        devices={"cpu": 1},
        worker_settings={"models_dir": str(default_models_dir(data_dir)), "threads": 1},
        synchronous="NORMAL",
    )
    if executor is not None:
        config = dataclasses.replace(config, devices=scheduler_devices(16))
    return Scheduler(config, executor)


async def run_batch(scheduler: Scheduler, target: Path, jobs: int, warmups: int) -> float:
    """Seconds to finish ``jobs`` jobs, after ``warmups`` jobs that load the models."""

    async def batch(count: int) -> None:
        submitted = [
            await scheduler.submit(
                "bench", [("face.png", TOM_HANKS)], ("group.jpg", target), OPTIONS
            )
            for _ in range(count)
        ]
        for job in submitted:
            while True:
                current = await scheduler.get(job.id)
                if current.finished:
                    if current.status is not JobStatus.SUCCEEDED:
                        raise RuntimeError(f"job failed: {current.error}")
                    break
                await asyncio.sleep(0.02)

    await batch(warmups)
    started = time.perf_counter()
    await batch(jobs)
    return time.perf_counter() - started


async def local(root: Path, target: Path, jobs: int) -> float:
    data = root / "local"
    data.mkdir()
    async with scheduler_for(data) as scheduler:
        return await run_batch(scheduler, target, jobs, warmups=1)


async def celery(root: Path, target: Path, jobs: int, workers: int, appendfsync: str) -> float:
    data = root / f"celery{workers}"
    data.mkdir()
    redis_server = RedisServer(root / f"redis{workers}", appendfsync=appendfsync)
    redis_server.start()
    nodes = [
        WorkerProcess(
            redis_server.url,
            data,
            root / "logs",
            devices=f"cpu:{index}",
            extra=("--threads", "1", "--loglevel", "warning"),
        ).start()
        for index in range(workers)
    ]
    try:
        executor = make_executor(redis_server.url, data)
        executor.poll_interval = 0.05
        async with scheduler_for(data, executor) as scheduler:
            await asyncio.sleep(0)  # let the executor connect
            return await run_batch(scheduler, target, jobs, warmups=2 * workers)
    finally:
        for node in nodes:
            node.stop()
        redis_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--width", type=int, default=640, help="target width in pixels")
    parser.add_argument(
        "--appendfsync",
        choices=("always", "everysec"),
        default="always",
        help="Redis AOF flushing (compose.yaml ships 'always')",
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        root = Path(tmp)
        image = cv2.imread(str(T1))
        height = round(image.shape[0] * args.width / image.shape[1])
        target = root / "group.jpg"
        cv2.imwrite(str(target), cv2.resize(image, (args.width, height), cv2.INTER_AREA))
        results = {
            "local (1 slot)": asyncio.run(local(root, target, args.jobs)),
            "celery x1 (1 slot)": asyncio.run(celery(root, target, args.jobs, 1, args.appendfsync)),
            "celery x2 (1 slot each)": asyncio.run(
                celery(root, target, args.jobs, 2, args.appendfsync)
            ),
        }
    print(
        f"{args.jobs} image jobs ({args.width}px wide, six faces), {os.cpu_count()} CPU cores, "
        f"Redis appendfsync {args.appendfsync}"
    )
    print(f"{'backend':<26}{'seconds':>10}{'jobs/s':>10}")
    for name, seconds in results.items():
        print(f"{name:<26}{seconds:>10.2f}{args.jobs / seconds:>10.2f}")
    local_s = results["local (1 slot)"]
    one = results["celery x1 (1 slot)"]
    two = results["celery x2 (1 slot each)"]
    print(f"celery x1 / local throughput: {local_s / one:.2f}")
    print(f"celery x2 / celery x1 throughput: {one / two:.2f}")
    print(f"celery x2 / local throughput: {local_s / two:.2f}")


if __name__ == "__main__":
    main()
