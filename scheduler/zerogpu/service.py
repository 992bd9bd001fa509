"""The studio's scheduler on ZeroGPU.

A job's visitor is known only while ``submit`` runs inside their Gradio
request, so the scheduler captures it there for the executor.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from scheduler.jobs import Job
from scheduler.progress_gate import worker_interval
from scheduler.service import Scheduler, SchedulerConfig
from scheduler.zerogpu.executor import ZeroGPUExecutor
from scheduler.zerogpu.settings import ZeroGPUSettings
from scheduler.zerogpu.visitors import current_gradio_request


class ZeroGPUScheduler(Scheduler):
    """The scheduler, remembering which visitor's Gradio request each job came from."""

    async def submit(self, *args: Any, **kwargs: Any) -> Job:
        request = current_gradio_request()
        job = await super().submit(*args, **kwargs)
        executor = self.executor
        if request is not None and isinstance(executor, ZeroGPUExecutor):
            executor.visitors.remember(job.id, request)
        return job


def zerogpu_scheduler(
    config: SchedulerConfig, zerogpu: ZeroGPUSettings | None = None
) -> ZeroGPUScheduler:
    """The studio's scheduler on ZeroGPU: ``cuda:0`` slots (calls at once), no split."""
    slots = max(config.devices.values(), default=1)
    settings = dataclasses.replace(config, devices={"cuda:0": slots}, split_video=False)
    executor = ZeroGPUExecutor(
        settings.task_modules,
        settings.worker_settings,
        zerogpu,
        progress_interval=worker_interval(settings.event_rate),
    )
    return ZeroGPUScheduler(settings, executor)
