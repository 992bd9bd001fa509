"""Who holds a running job's lease, and whether that holder is certainly gone.

Each scheduler process signs the leases it takes with ``this_holder()``: host name,
process id and the process's start time (so a recycled pid is not mistaken for the
old process). After a crash, a scheduler restarted on the same host sees at once
that the holder of a job's lease no longer exists and recovers the job then,
instead of waiting for the lease to expire. A holder on another host, or one that
cannot be checked, is left to its lease.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count after its end.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


@functools.cache
def this_holder() -> str:
    """``host:pid:start`` of this process (``start`` empty where it cannot be read)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or ''}"


def certainly_gone(holder: str | None) -> bool:
    """Whether the process that signed a lease is known to be gone: same host, and no
    process with that pid, or one started at another time."""
    if not holder or holder.count(":") < 2:
        return False
    host, pid_text, started = holder.rsplit(":", 2)
    if host != socket.gethostname() or not pid_text.isdigit() or not started:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    now = _start_time(pid)
    if now is None:
        return not Path(f"/proc/{pid}").exists() and Path("/proc/self").exists()
    return now != started
