"""Scale-out backend: run jobs on Celery workers behind a Redis (or RabbitMQ) broker.

The studio keeps its SQLite store, dispatcher and events; ``CeleryExecutor``
takes the place of ``LocalExecutor`` and hands each attempt to a Celery
worker (``python app.py worker``). See docs/deploy.md.

Modules: ``app`` (Celery app factory and reliability settings), ``tasks``
(the worker's task), ``executor`` (the studio side), ``registry`` (worker
announcements), ``storage`` (how job files travel), ``keys`` and
``messages`` (what studio and workers share).
"""

from __future__ import annotations

from pathlib import Path

from scheduler.celery_backend.app import CelerySettings, create_app


def make_executor(
    broker_url: str,
    data_dir: Path,
    *,
    redis_url: str | None = None,
    queue: str = "fusion-jobs",
    job_time_limit_s: float | None = None,
    **options,
):
    """The executor the studio uses for ``--backend celery --broker URL``.

    ``data_dir`` is the studio's data directory, shared with the workers.
    ``options`` go to ``CelerySettings`` (heartbeat_s, worker_ttl_s, …). Splitting
    a video over several workers is the scheduler's (``SchedulerConfig.split_video``).
    """
    from scheduler.celery_backend.executor import CeleryExecutor

    if job_time_limit_s is not None:
        options["job_time_limit_s"] = job_time_limit_s
    settings = CelerySettings(broker_url=broker_url, redis_url=redis_url, queue=queue, **options)
    return CeleryExecutor(settings, Path(data_dir))


def scheduler_devices(max_in_flight: int = 32) -> dict[str, int]:
    """The dispatcher's slots with the Celery backend: one pseudo device whose slots bound
    how many attempts this studio keeps in Celery at once (running or waiting in the
    broker). Jobs beyond that wait in the SQLite queue, where priority and fairness
    between owners still decide the order. The workers' own slots bound what runs."""
    return {"cpu": max(1, int(max_in_flight))}


__all__ = ["CelerySettings", "create_app", "make_executor", "scheduler_devices"]
