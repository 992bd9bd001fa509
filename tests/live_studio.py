"""Run a real studio server process and read its Server-Sent Events (tests and benchmarks).

Nothing here is used by the server itself: it starts ``studio.cli.main`` in a
subprocess on a free 127.0.0.1 port, waits for ``/api/v1/health``, and stops it
with SIGTERM (a graceful shutdown), exactly as an operator would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class StudioProcess:
    """One ``python -c 'from studio.cli import main; main([...])'`` server."""

    data_dir: Path
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> StudioProcess:
        argv = [
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        code = f"import sys; from studio.cli import main; sys.exit(main({argv!r}))"
        log_path = self.log_path or Path(self.data_dir).parent / f"studio-{self.port}.log"
        self.log_path = log_path
        env = {
            **os.environ,
            "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        env.pop("GRADIO_SERVER_NAME", None)
        env.pop("GRADIO_SERVER_PORT", None)
        handle = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
        handle.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"studio exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"studio did not start within {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait: the graceful path (jobs released to the queue)."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-6000:]

    def __enter__(self) -> StudioProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def iter_sse(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """(event name, JSON data) pairs from a streaming SSE response."""
    name, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def create_key(data_dir: Path, name: str, *flags: str) -> str:
    """Run ``keys create NAME [--admin]`` as a real process; returns the key (its last line)."""
    argv = ["keys", "--data-dir", str(data_dir), "create", name, *flags]
    code = f"import sys; from studio.cli import main; sys.exit(main({argv!r}))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]
