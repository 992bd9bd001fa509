"""How a worker process shares this machine's CPU: thread counts and priority."""

from __future__ import annotations

import contextlib
import logging
import os

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
