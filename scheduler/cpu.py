"""How a worker process shares this machine's CPU: thread counts, priority, and the
cores of a numbered CPU device."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)

WORKER_PRIORITIES = ("normal", "low", "idle")
DEFAULT_WORKER_PRIORITY = "idle"
LOW_NICE = 10


def limit_threads(threads: int) -> None:
    """Keep one slot's worker to ``threads`` CPU threads, so that slots on one machine
    share its cores instead of each trying to use all of them."""
    if threads <= 0:
        return
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(threads))
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass


def lower_priority(priority: str) -> None:
    """Run this process's jobs below the interactive server's CPU priority.

    Jobs are batch work; the server beside them is interactive (the UI, REST
    submits with their content check, SSE). On a machine whose cores the jobs
    keep busy, the server must get a core the moment it wakes up:

    - ``normal``: unchanged;
    - ``low``: ``nice`` 10;
    - ``idle``: Linux ``SCHED_IDLE`` (nice 19 elsewhere): any normal process
      preempts the job at once, and the job still gets every cycle left idle.
    """
    if priority not in WORKER_PRIORITIES:  # a worker must start whatever its settings say
        log.warning("unknown worker priority %r; running at normal priority", priority)
        return
    if priority == "normal":
        return
    with contextlib.suppress(OSError, AttributeError):
        if priority == "idle" and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        else:
            os.nice(LOW_NICE if priority == "low" else 19)


def device_cores(device: str, devices: Sequence[str], available: Iterable[int]) -> set[int]:
    """The cores a numbered CPU device (``cpu:1``) owns: the machine's cores dealt out
    in turn to the numbered CPU devices configured, so ``--devices cpu:0,cpu:1`` on
    four cores gives each device two. An empty set (no pinning) for ``cpu`` and for
    accelerators, whose workers share the machine as before."""
    numbered = sorted(
        (d for d in devices if d.startswith("cpu:") and d[4:].isdigit()), key=lambda d: int(d[4:])
    )
    if device not in numbered:
        return set()
    cores = sorted(available)
    if not cores:
        return set()
    position, count = numbered.index(device), len(numbered)
    if count > len(cores):  # more devices than cores: each gets one, shared in turn
        return {cores[position % len(cores)]}
    return {core for number, core in enumerate(cores) if number % count == position}


def pin_to_cores(cores: Iterable[int]) -> None:
    """Keep this process (and the threads it starts) on ``cores``; nothing if empty."""
    cores = set(cores)
    if cores and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cores)


def available_cores() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))
