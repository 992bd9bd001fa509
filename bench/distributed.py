"""Throughput of a batch of real image jobs: local backend vs 1 and 2 Celery workers,
on a Redis broker and on a RabbitMQ broker.

The same batch (Tom Hanks' face onto every face of t1.jpg, embedded mtcnn +
classic swapper) runs several times in one go, each through the real scheduler
(SQLite store, dispatcher):

* ``local``     the local backend, one worker process (1 CPU slot);
* ``celery x1`` one Celery worker node with one CPU slot;
* ``celery x2`` two Celery worker nodes with one CPU slot each;

the Celery series once per broker: ``redis`` (Redis is broker and everything
else) and ``rabbitmq`` (RabbitMQ carries the task messages, durable priority
queue, persistent messages, publisher confirms; Redis keeps results, progress
and announcements). The RabbitMQ node is Debian's ``rabbitmq-server`` started
privately (tests/rabbitmq_server.py).

Every worker first runs a warm-up job (models loaded), then the clock runs from
the first submit to the last finished job. Model sessions use one intra-op
thread everywhere, so slots compare like for like. On a machine with fewer
cores than workers, two workers cannot be twice as fast; the ratio shows what
scaling out buys here and the Celery overhead relative to local processes.

    python -m bench.distributed [--jobs 12] [--width 640] [--appendfsync always|everysec]
                                [--brokers redis,rabbitmq]
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
from tests.rabbitmq_server import RabbitMQServer, rabbitmq_installed
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


async def celery(
    root: Path, target: Path, jobs: int, workers: int, appendfsync: str, broker: str = "redis"
) -> float:
    data = root / f"celery-{broker}{workers}"
    data.mkdir()
    redis_server = RedisServer(root / f"redis-{broker}{workers}", appendfsync=appendfsync)
    redis_server.start()
    rabbit = None
    broker_url, redis_args = redis_server.url, ()
    if broker == "rabbitmq":
        rabbit = RabbitMQServer(root / f"rabbitmq{workers}").start()
        broker_url, redis_args = rabbit.url, ("--redis", redis_server.url)
    nodes = [
        WorkerProcess(
            broker_url,
            data,
            root / "logs",
            devices=f"cpu:{index}",
            extra=(*redis_args, "--threads", "1", "--loglevel", "warning"),
        ).start()
        for index in range(workers)
    ]
    try:
        executor = make_executor(broker_url, data, redis_url=redis_server.url)
        executor.poll_interval = 0.05
        async with scheduler_for(data, executor) as scheduler:
            await asyncio.sleep(0)  # let the executor connect
            return await run_batch(scheduler, target, jobs, warmups=2 * workers)
    finally:
        for node in nodes:
            node.stop()
        redis_server.stop()
        if rabbit is not None:
            rabbit.close()


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
    parser.add_argument(
        "--brokers",
        default="redis,rabbitmq",
        help="comma-separated Celery brokers to measure: redis, rabbitmq",
    )
    args = parser.parse_args()
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    if "rabbitmq" in brokers and not rabbitmq_installed():
        print("rabbitmq-server is not installed: measuring Redis only")
        brokers.remove("rabbitmq")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        root = Path(tmp)
        image = cv2.imread(str(T1))
        height = round(image.shape[0] * args.width / image.shape[1])
        target = root / "group.jpg"
        cv2.imwrite(str(target), cv2.resize(image, (args.width, height), cv2.INTER_AREA))
        results = {"local (1 slot)": asyncio.run(local(root, target, args.jobs))}
        for broker in brokers:
            for workers, slots in ((1, "1 slot"), (2, "1 slot each")):
                seconds = asyncio.run(
                    celery(root, target, args.jobs, workers, args.appendfsync, broker)
                )
                results[f"{broker} x{workers} ({slots})"] = seconds
    print(
        f"{args.jobs} image jobs ({args.width}px wide, six faces), {os.cpu_count()} CPU cores, "
        f"Redis appendfsync {args.appendfsync}"
    )
    print(f"{'backend':<30}{'seconds':>10}{'jobs/s':>10}")
    for name, seconds in results.items():
        print(f"{name:<30}{seconds:>10.2f}{args.jobs / seconds:>10.2f}")
    local_s = results["local (1 slot)"]
    for broker in brokers:
        one = results[f"{broker} x1 (1 slot)"]
        two = results[f"{broker} x2 (1 slot each)"]
        print(f"{broker}: celery x1 / local throughput: {local_s / one:.2f}")
        print(f"{broker}: celery x2 / celery x1 throughput: {one / two:.2f}")
        print(f"{broker}: celery x2 / local throughput: {local_s / two:.2f}")
    if {"redis", "rabbitmq"} <= set(brokers):
        for workers, slots in ((1, "1 slot"), (2, "1 slot each")):
            redis_s = results[f"redis x{workers} ({slots})"]
            rabbit_s = results[f"rabbitmq x{workers} ({slots})"]
            print(f"rabbitmq / redis throughput, x{workers}: {redis_s / rabbit_s:.2f}")


if __name__ == "__main__":
    main()
