"""``python app.py worker``: a Celery worker that runs studio jobs on this machine's devices.

    python app.py worker --broker redis://HOST:6379/0 --devices cuda:0 [--slots 2]

One worker node per machine (or per GPU); ``--slots`` jobs at once per
device. The node uses Celery's *prefork* pool: one pool process per slot,
each bound to its device and keeping its models warm between jobs. Prefork
(not ``solo`` or threads) because time limits and terminate work by
signalling or killing the pool process that runs a job, and because a job
that crashes its process (a CUDA fault, the OOM killer) then takes down only
that process, which Celery replaces, not the node.

The node announces itself (devices, slots, busy slots) in Redis every
``--heartbeat`` seconds; the studio's System panel lists it, and the studio
retries the jobs of a node that stops announcing itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import time
from pathlib import Path

import redis

from cli.args import ArgumentParser
from engine.datadir import default_data_dir
from engine.devices import parse_devices
from engine.errors import InvalidOptions
from engine.models.licences import model_flags
from engine.models.manager import default_models_dir
from scheduler.celery_backend.app import CelerySettings, create_app
from scheduler.celery_backend.registry import (
    Heartbeat,
    WorkerInfo,
    WorkerRegistry,
    default_worker_name,
)
from scheduler.celery_backend.tasks import WorkerConfig, pool_process, register
from scheduler.cpu import DEFAULT_WORKER_PRIORITY, WORKER_PRIORITIES
from scheduler.tasks import load_kinds

log = logging.getLogger(__name__)

REDIS_WAIT_S = 60.0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="app.py worker", description="Run studio jobs from a Celery broker on this machine."
    )
    parser.add_argument(
        "--broker",
        required=True,
        help="broker URL: redis://HOST:PORT/DB or amqp://USER:PASSWORD@HOST:PORT/VHOST",
    )
    parser.add_argument(
        "--redis",
        default=None,
        help="Redis URL for results, progress and announcements (default: the broker, "
        "when it is Redis; required with RabbitMQ)",
    )
    parser.add_argument("--devices", default="cpu", help="devices, e.g. cuda:0 or cuda:0,cuda:1")
    parser.add_argument("--slots", type=int, default=1, help="jobs at once per device")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="this machine's mount of the studio's shared data directory",
    )
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads per model session (0 = auto)"
    )
    parser.add_argument(
        "--priority",
        choices=WORKER_PRIORITIES,
        default=DEFAULT_WORKER_PRIORITY,
        help="CPU priority of the pool processes: idle (default) yields to every other "
        "program here, low is nice 10, normal is unchanged",
    )
    parser.add_argument(
        "--content-threshold",
        type=float,
        default=0.8,
        help="content gate threshold for video frames (the studio's --content-threshold)",
    )
    parser.add_argument("--queue", default="fusion-jobs", help="the studio's queue name")
    parser.add_argument("--name", default=None, help="worker name (default: host-pid-devices)")
    parser.add_argument(
        "--job-time-limit",
        type=float,
        default=None,
        help="hard limit of one job in seconds; must match the studio's (default 6 h)",
    )
    parser.add_argument(
        "--heartbeat", type=float, default=None, help="seconds between announcements"
    )
    parser.add_argument(
        "--worker-ttl",
        type=float,
        default=None,
        help="seconds without announcement after which the studio retries this worker's jobs",
    )
    parser.add_argument(
        "--task-module",
        action="append",
        default=[],
        help="extra module that registers task kinds (repeatable)",
    )
    parser.add_argument(
        "--pool",
        choices=("prefork", "solo"),
        default="prefork",
        help="prefork (default) enables time limits and terminate; solo is for debugging",
    )
    parser.add_argument(
        "--licences",
        default=None,
        help="run only models of these licence classes (permissive, non-commercial, "
        "research, unknown; comma-separated): the same filter as the studio's",
    )
    parser.add_argument(
        "--model-memory-gb",
        type=float,
        default=None,
        help="keep each slot's loaded models within this much memory (LRU)",
    )
    parser.add_argument("--loglevel", default="info")
    return parser


def settings_from_args(args: argparse.Namespace) -> CelerySettings:
    extra: dict = {}
    if args.job_time_limit is not None:
        extra["job_time_limit_s"] = args.job_time_limit
    if args.heartbeat is not None:
        extra["heartbeat_s"] = args.heartbeat
    if args.worker_ttl is not None:
        extra["worker_ttl_s"] = args.worker_ttl
    return CelerySettings(broker_url=args.broker, redis_url=args.redis, queue=args.queue, **extra)


def wait_for_redis(url: str, timeout: float = REDIS_WAIT_S) -> redis.Redis:
    """The coordination Redis, once it answers; a clear error when it never does."""
    client = redis.Redis.from_url(
        url, socket_keepalive=True, socket_connect_timeout=5, socket_timeout=10
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return client
        except redis.RedisError as exc:
            if time.monotonic() >= deadline:
                raise InvalidOptions(f"cannot reach Redis at {url}: {exc}") from None
            log.warning("waiting for Redis at %s: %s", url, exc)
            time.sleep(1.0)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.slots < 1:
        raise InvalidOptions("--slots must be at least 1")
    devices = tuple(str(device) for device in parse_devices(args.devices))
    if len(set(devices)) != len(devices):
        raise InvalidOptions(f"a device is listed twice in --devices {args.devices}")
    if args.pool == "solo" and (len(devices) > 1 or args.slots > 1):
        raise InvalidOptions("--pool solo runs one job at a time: give one device and --slots 1")
    settings = settings_from_args(args)
    data_dir = (args.data_dir or default_data_dir()).resolve()
    if not data_dir.is_dir():
        raise InvalidOptions(
            f"the data directory {data_dir} does not exist: mount the studio's shared "
            "data directory and pass it with --data-dir"
        )
    models_dir = args.models_dir or default_models_dir(data_dir)
    licences, budget = model_flags(args.licences, args.model_memory_gb)
    host = socket.gethostname()
    name = args.name or default_worker_name(devices)
    nodename = name if "@" in name else f"{name}@{host}"
    config = WorkerConfig(
        settings=settings,
        name=nodename,
        devices=devices,
        slots_per_device=args.slots,
        data_dir=data_dir,
        task_modules=tuple(args.task_module),
        task_settings={
            "models_dir": str(models_dir),
            "threads": args.threads,
            "priority": args.priority,
            "data_dir": str(data_dir),  # provenance keys are shared with the studio
            "content_threshold": args.content_threshold,
            "licences": sorted(licences) if licences is not None else None,
            "model_memory_bytes": budget,
        },
    )
    # Import the task kinds once in the main process: forked pool processes share them.
    load_kinds(tuple(config.task_modules))
    client = wait_for_redis(settings.redis_url)
    registry = WorkerRegistry(client, settings.keys, settings.worker_ttl_s)
    info = WorkerInfo(
        name=nodename,
        host=host,
        pid=os.getpid(),
        devices=list(devices),
        slots_per_device=args.slots,
        started_at=time.time(),
    )
    heartbeat = Heartbeat(registry, info, settings.heartbeat_s, running_task_ids)

    app = create_app(settings)
    register(app, config)
    _connect_signals(config, heartbeat)
    print(
        f"worker {nodename}: {', '.join(devices)} × {args.slots} slot(s), "
        f"queue {settings.queue}, data {data_dir}",
        flush=True,
    )
    app.worker_main(
        [
            "worker",
            f"--pool={args.pool}",
            f"--concurrency={config.concurrency}",
            f"--queues={settings.queue}",
            f"--hostname={nodename}",
            "--optimization=fair",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--loglevel={args.loglevel}",
        ]
    )
    return 0


def running_task_ids() -> set[str]:
    """Ids of the tasks this node runs now (Celery's worker state, main process)."""
    from celery.worker import state

    for _ in range(3):
        try:
            return {request.id for request in list(state.active_requests)}
        except RuntimeError:  # the set changed while being copied
            continue
    return set()


def _connect_signals(config: WorkerConfig, heartbeat: Heartbeat) -> None:
    from celery import signals

    def on_ready(**_: object) -> None:
        heartbeat.start()  # announce only once the pool can take jobs

    def on_shutdown(**_: object) -> None:
        heartbeat.stop(withdraw=True)

    def on_process_init(**_: object) -> None:
        pool_process(config)  # Redis connection and device binding, before the first job

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    signals.worker_process_init.connect(on_process_init, weak=False)
