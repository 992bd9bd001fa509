"""ZeroGPU backend: jobs whose GPU work runs in ``@spaces.GPU`` calls on a Hugging Face
ZeroGPU Space, where no process holds a GPU and each call borrows one. See docs/spaces.md.

Modules: ``settings`` (``FUSION_ZEROGPU_*`` variables), ``visitors`` (whose request
pays for a call), ``decorator`` (loading and applying ``spaces.GPU``), ``gpu_call``
(what runs inside a call), ``executor`` (``ZeroGPUExecutor``) and ``service`` (the
scheduler that captures each job's visitor).
"""

from __future__ import annotations

from scheduler.zerogpu.decorator import decorate, load_decorator
from scheduler.zerogpu.executor import (
    ABORTED,
    CPU_WARNING,
    EXPIRED,
    REFUSED,
    ZeroGPUExecutor,
)
from scheduler.zerogpu.gpu_call import call_device, gpu_step
from scheduler.zerogpu.service import ZeroGPUScheduler, zerogpu_scheduler
from scheduler.zerogpu.settings import (
    DEFAULT_DECORATOR,
    ENV_DECORATOR,
    ENV_DEVICE,
    ENV_DURATION,
    ENV_SEGMENTS_PER_CALL,
    ENV_UNATTENDED,
    UNATTENDED_CHOICES,
    ZeroGPUSettings,
)
from scheduler.zerogpu.visitors import (
    Visitor,
    Visitors,
    current_gradio_request,
    request_token,
    token_expiry,
)

__all__ = [
    "ABORTED",
    "CPU_WARNING",
    "DEFAULT_DECORATOR",
    "ENV_DECORATOR",
    "ENV_DEVICE",
    "ENV_DURATION",
    "ENV_SEGMENTS_PER_CALL",
    "ENV_UNATTENDED",
    "EXPIRED",
    "REFUSED",
    "UNATTENDED_CHOICES",
    "Visitor",
    "Visitors",
    "ZeroGPUExecutor",
    "ZeroGPUScheduler",
    "ZeroGPUSettings",
    "call_device",
    "current_gradio_request",
    "decorate",
    "gpu_step",
    "load_decorator",
    "request_token",
    "token_expiry",
    "zerogpu_scheduler",
]
