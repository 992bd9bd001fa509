"""A real Prometheus (Debian's ``prometheus`` package) for the monitoring tests.

``PrometheusServer`` runs ``prometheus`` on a free 127.0.0.1 port with its own
TSDB in a temp dir, from a configuration derived from the repository's
``deploy/prometheus/prometheus.yml``: the studio's scrape job keeps its name
and settings but scrapes the test's studio, every second; the other jobs
(Flower, which a test does not run) are left out; the rule files are the
repository's, so Prometheus loads and evaluates the shipped alerts.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.redis_server import free_port

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
STUDIO_JOB = "fusion-studio"
START_TIMEOUT_S = 30.0


def prometheus_installed() -> bool:
    return Path(PROMETHEUS).exists() and Path(PROMTOOL).exists()


def config_for_studio(studio_target: str, interval: str = "1s") -> dict[str, Any]:
    """The repository's Prometheus configuration, pointed at ``studio_target``."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {**config.get("global", {}), "scrape_interval": interval}
    config["global"]["evaluation_interval"] = interval
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config["rule_files"]]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == STUDIO_JOB]
    job["static_configs"] = [{"targets": [studio_target]}]
    config["scrape_configs"] = [job]
    return config


class PrometheusServer:
    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = self.directory / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.log_path = self.directory / "prometheus.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        if not prometheus_installed():
            pytest.skip("prometheus is not installed (apt-get install prometheus)")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.directory / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus was not ready within {START_TIMEOUT_S} s:\n{self.log()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``; returns ``data`` (raises unless status is success)."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query now; the result vector (or a scalar as a one-element list)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "vector":
            return data["result"]
        return [{"metric": {}, "value": data["result"]}]

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Until ``expr`` returns a non-empty result; the result."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.25)
        raise AssertionError(f"no data for {expr!r} within {timeout} s")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""


@contextlib.contextmanager
def running_prometheus(directory: Path, config: dict[str, Any]) -> Iterator[PrometheusServer]:
    server = PrometheusServer(directory, config)
    try:
        yield server.start()
    finally:
        server.stop()
