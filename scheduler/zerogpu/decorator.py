"""The ``@spaces.GPU`` decorator: loading it, applying it to ``gpu_step``, and the
parts of ``spaces`` this app must do itself because it has no PyTorch and never
calls ``gr.Blocks.launch``.

Outside ZeroGPU the decorator returns the function unchanged and calls run in
the caller's process.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from collections.abc import Callable
from typing import Any

from engine.errors import InvalidOptions
from scheduler.zerogpu.gpu_call import gpu_step
from scheduler.zerogpu.settings import DEFAULT_DECORATOR, ENV_DECORATOR

log = logging.getLogger("scheduler.zerogpu")


def _no_decorator(task: Callable | None = None, **_: Any) -> Any:
    """What ``spaces.GPU`` is outside ZeroGPU: the function itself."""
    if task is None:
        return lambda fn: fn
    return task


def load_decorator(spec: str) -> tuple[Callable, str]:
    """The ``GPU`` decorator named by ``module:attribute`` and a description of it."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        if spec != DEFAULT_DECORATOR:
            raise InvalidOptions(f"{ENV_DECORATOR}: cannot import {module_name!r}") from None
        log.warning("the spaces package is not installed: GPU steps run in the server process")
        return _no_decorator, "none (the spaces package is not installed; calls run in-process)"
    decorator = getattr(module, attribute, None)
    if not callable(decorator):
        raise InvalidOptions(f"{ENV_DECORATOR}: {spec} is not a decorator")
    if module_name != "spaces":
        return decorator, spec
    from spaces.config import Config

    version = _version("spaces")
    if Config.zero_gpu:
        return decorator, f"spaces {version} on ZeroGPU"
    return decorator, f"spaces {version} outside ZeroGPU (the decorator does nothing)"


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _point_children_at_their_gpu() -> None:
    """Make ``spaces`` set ``CUDA_VISIBLE_DEVICES`` in its children without PyTorch.

    ``spaces/zero/wrappers.py`` ``worker_init`` calls ``spaces.zero.torch.init(uuid)``
    in the forked child once the GPU is attached; with PyTorch that sets
    ``CUDA_VISIBLE_DEVICES`` to the GPU's UUID (``spaces/zero/torch/patching.py``),
    without it the function does nothing. ONNX Runtime needs the same assignment.
    """
    try:
        from spaces.config import Config
        from spaces.zero import torch as zero_torch
    except ImportError:
        return
    original = getattr(zero_torch, "init", None)
    if not Config.zero_gpu or original is None or getattr(original, "fusion_studio", False):
        return

    def init(nvidia_uuid: str, *args: Any, **kwargs: Any) -> Any:
        os.environ["CUDA_VISIBLE_DEVICES"] = nvidia_uuid
        return original(nvidia_uuid, *args, **kwargs)

    init.fusion_studio = True  # type: ignore[attr-defined]
    zero_torch.init = init


def _report_startup() -> None:
    """What ``spaces`` does in ``gr.Blocks.launch`` (``spaces/zero/__init__.py``
    ``startup``): this app mounts Gradio on FastAPI and never calls ``launch``."""
    try:
        from spaces.config import Config
    except ImportError:
        return
    if not Config.zero_gpu:
        return
    import spaces.zero

    startup = getattr(spaces.zero, "startup", None)
    if callable(startup):
        startup()


def _call_duration(call: dict[str, Any]) -> int:
    """The ``duration`` of a call (spaces asks for whole seconds)."""
    return max(1, math.ceil(float(call["duration"])))


_DECORATED: dict[int, Callable] = {}


def decorate(decorator: Callable) -> Callable:
    """``gpu_step`` under ``decorator``, once per decorator (spaces caches it likewise)."""
    key = id(decorator)
    if key not in _DECORATED:
        _DECORATED[key] = decorator(duration=_call_duration)(gpu_step)
    return _DECORATED[key]
