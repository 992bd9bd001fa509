"""Real processes for the scale-out tests: ``redis-server`` and Celery worker nodes.

``RedisServer`` starts ``redis-server`` on a free 127.0.0.1 port in a temp dir.

The server runs with ``--appendonly yes --appendfsync always`` so that a restart
on the same directory replays every write (the broker-restart test relies on
that, exactly as a production broker with AOF would). ``restart()`` keeps the
port and the directory, so clients configured with the URL reconnect to the
same data.

Use the ``redis_server`` fixture (tests/conftest.py) or the class.

``WorkerProcess`` runs ``python app.py worker …`` as its own process group,
so a test can SIGKILL the whole node (main process and pool processes) the
way a machine dies; ``stop()`` always reaps the group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process bound to 127.0.0.1, data (AOF) kept in ``directory``."""

    def __init__(
        self, directory: Path, port: int | None = None, appendfsync: str = "always"
    ) -> None:
        self.directory = Path(directory)
        self.appendfsync = appendfsync  # "always" (tests: crash-safe) or "everysec"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = self.directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if not Path(REDIS_SERVER).exists():
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        command = [
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--logfile",
            str(self.log_path),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT_S}s")

    def ping(self) -> bool:
        """PING over a raw socket (no client library), True when the server answers
        and has finished loading its AOF."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server; SIGTERM lets it flush and close the AOF, SIGKILL does not."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()

    def restart(self, sig: int = signal.SIGTERM, down_seconds: float = 0.0) -> None:
        """Stop and start again on the same port and directory (the AOF is replayed)."""
        self.stop(sig)
        if down_seconds:
            time.sleep(down_seconds)
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- Celery worker nodes ----------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
WORKER_START_TIMEOUT_S = 60.0


class WorkerProcess:
    """One ``python app.py worker`` node started as a real subprocess."""

    def __init__(
        self,
        broker_url: str,
        data_dir: Path,
        log_dir: Path,
        *,
        devices: str = "cpu:0",
        slots: int = 1,
        name: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.name = name or f"test-{devices.replace(':', '').replace(',', '+')}-{free_port()}"
        self.nodename = f"{self.name}@{socket.gethostname()}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.name}.log"
        self.command = [
            sys.executable,
            str(REPO / "app.py"),
            "worker",
            "--broker",
            broker_url,
            "--devices",
            devices,
            "--slots",
            str(slots),
            "--data-dir",
            str(data_dir),
            "--name",
            self.nodename,
            *extra,
        ]
        self.process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        env.setdefault("OMP_NUM_THREADS", "1")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() takes the pool too
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pool_pids(self) -> list[int]:
        """Process ids of the node's pool processes (its children)."""
        if not self.alive():
            return []
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        with contextlib.suppress(OSError):
            return [int(pid) for pid in children.read_text().split()]
        return []

    def kill(self) -> None:
        """SIGKILL the whole node at once, as when its machine dies."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown (SIGTERM to the main process), then SIGKILL whatever is left."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""
