"""Building the studio's ``Scheduler`` from its ``StudioConfig``.

Kept apart from ``studio.core`` so that tools and tests can build (or inspect) the
scheduler a server would run without creating a whole ``Studio``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from engine.models.manager import default_models_dir
from scheduler.jobs import InputLimits
from scheduler.retention import RetentionPolicy
from scheduler.service import Scheduler, SchedulerConfig
from studio.config import StudioConfig


def build_scheduler(config: StudioConfig) -> Scheduler:
    """The scheduler with the configured execution backend (local processes, Celery, or
    ZeroGPU calls)."""
    if config.backend == "zerogpu":
        from scheduler.zerogpu import zerogpu_scheduler

        return zerogpu_scheduler(scheduler_config(config))
    if config.backend != "celery":
        return Scheduler(scheduler_config(config))
    from scheduler.celery_backend import make_executor, scheduler_devices

    settings = dataclasses.replace(
        scheduler_config(config), devices=scheduler_devices(config.max_in_flight)
    )
    executor = make_executor(
        config.broker_url,
        config.data_dir,
        redis_url=config.redis_url,
        queue=config.celery_queue,
    )
    return Scheduler(settings, executor)


def scheduler_config(config: StudioConfig) -> SchedulerConfig:
    """The scheduler's settings: devices, queue bounds, retention, and what workers need."""
    models_dir = config.models_dir or default_models_dir(config.data_dir)
    retention = config.retention_hours * 3600.0
    return SchedulerConfig.for_devices(
        Path(config.data_dir),
        config.devices,
        config.slots_per_device,
        max_queued=config.max_queued,
        max_queued_per_owner=config.max_queued_per_owner,
        split_video=config.splits_video,
        retention=RetentionPolicy(job_seconds=retention, history_seconds=retention),
        worker_settings={
            "models_dir": str(models_dir),
            "threads": config.threads_per_slot,
            "priority": config.worker_priority,
            "data_dir": str(config.data_dir),  # provenance keys: every output is stamped
            "content_threshold": config.content_threshold,
            # Gated at submit (studio.responsible) or here, before any processing; a
            # video's sampled frames are always gated here.
            "gate_images": config.content_gate == "dispatch",
            # Models: the operator's licence filter and each worker's memory budget.
            "licences": sorted(config.licences) if config.licences is not None else None,
            "model_memory_bytes": config.model_memory_bytes,
        },
        max_input_bytes=config.limits.max_file_bytes,
        input_limits=InputLimits(config.limits.max_pixels, config.limits.max_sources),
    )
