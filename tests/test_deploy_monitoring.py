"""The monitoring that compose.yaml ships, against a live studio and a real Prometheus.

* A real studio process (local backend) runs real jobs: one plain, one whose
  webhook fails, and one submission it refuses. Debian's Prometheus scrapes it
  every second with the repository's configuration and alert rules, and every
  query of the Grafana dashboard answers with data through the HTTP API.
* ``promtool`` checks the configuration and the rules, and runs the rules' unit
  tests (deploy/prometheus/tests/): the backlog alert fires on a synthetic
  backlog, and the look-alikes do not.
* The dashboard JSON is what deploy/grafana/make_dashboard.py writes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import pytest
import yaml

from scheduler.service import DeviceStats, SchedulerStats
from studio.metrics import StudioMetrics
from tests.assets import T1, TOM_HANKS
from tests.live_studio import StudioProcess, create_key, free_port
from tests.prometheus_server import (
    PROMETHEUS_DIR,
    PROMTOOL,
    STUDIO_JOB,
    PrometheusServer,
    config_for_studio,
    prometheus_installed,
    running_prometheus,
)

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[1]
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "fusion-studio.json"
# Grafana's variables, as Grafana would fill them for a short time range.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "15s", "$__range": "5m"}

needs_prometheus = pytest.mark.skipif(
    not prometheus_installed(), reason="prometheus is not installed (apt-get install prometheus)"
)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target in the dashboard, Grafana variables filled."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"an unfilled variable in {expr!r}"
            queries.append((panel["title"], expr))
    return queries


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Iterator[tuple[StudioProcess, str]]:
    data = tmp_path_factory.mktemp("studio-data")
    key = create_key(data, "monitor")
    flags = ["--webhook-allow", "127.0.0.1", "--webhook-retry-base", "30"]
    with StudioProcess(data, flags) as process:
        yield process, key


@pytest.fixture(scope="module")
def prometheus(studio, tmp_path_factory) -> Iterator[PrometheusServer]:
    process, _ = studio
    config = config_for_studio(f"127.0.0.1:{process.port}")
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), config) as server:
        yield server


def submit(http: httpx.Client, target: Path, options: dict) -> httpx.Response:
    files = [
        ("source", ("me.png", TOM_HANKS.read_bytes())),
        ("target", ("group.jpg", target.read_bytes())),
    ]
    return http.post("/api/v1/jobs", files=files, data={"options": json.dumps(options)})


def wait_finished(http: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


@needs_prometheus
def test_every_dashboard_query_answers_with_data_from_a_live_studio(
    studio, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    process, key = studio
    prometheus.wait_for(f'up{{job="{STUDIO_JOB}"}} == 1')  # scraping before the jobs run
    target = tmp_path / "group.jpg"
    cv2.imwrite(str(target), cv2.resize(cv2.imread(str(T1)), (320, 221)))
    dead_end = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens: delivery fails
    with httpx.Client(
        base_url=process.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        refused = submit(http, target, {"swapper": "no-such-swapper"})
        assert refused.status_code in (400, 422), refused.text
        plain = submit(http, target, {"swapper": "classic"})
        hooked = submit(http, target, {"swapper": "classic", "callback_url": dead_end})
        assert plain.status_code == 202 and hooked.status_code == 202, hooked.text
        for response in (plain, hooked):
            job = wait_finished(http, response.json()["id"])
            assert job["status"] == "succeeded", job
    # The failed delivery and the finished jobs have been scraped.
    prometheus.wait_for("fusion_webhook_failures_total >= 1")
    prometheus.wait_for('fusion_jobs_finished_total{status="succeeded"} >= 2')
    time.sleep(2.5)  # two more scrapes: rates over the window see the increase

    empty, not_a_number = [], []
    for title, expr in dashboard_queries():
        result = prometheus.query(expr)
        values = [float(sample["value"][1]) for sample in result]
        if not values:
            empty.append((title, expr))
        elif not any(math.isfinite(value) for value in values):
            not_a_number.append((title, expr, values))
    assert not empty, f"queries without data: {empty}"
    assert not not_a_number, f"queries without a finite value: {not_a_number}"

    # The shipped alert rules are loaded and evaluate cleanly against the real series.
    groups = prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    shipped = yaml.safe_load((PROMETHEUS_DIR / "rules" / "fusion.rules.yml").read_text())
    names = {rule["alert"] for group in shipped["groups"] for rule in group["rules"]}
    assert {rule["name"] for rule in rules} == names
    assert all(rule["health"] == "ok" for rule in rules), rules


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@needs_prometheus
def test_promtool_checks_the_config_and_the_rules_and_their_tests_pass() -> None:
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    assert "SUCCESS" in config.stdout and "1 rule files found" in config.stdout
    rules = promtool("check", "rules", *map(str, (PROMETHEUS_DIR / "rules").glob("*.yml")))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # The unit tests: a synthetic backlog fires FusionBacklogGrowing, steady and draining
    # queues do not; the failure-rate, no-worker and disk alerts likewise.
    tested = promtool("test", "rules", "tests/fusion.rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_dashboard_json_is_what_its_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_dashboard", GRAFANA_DIR / "make_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), "run python deploy/grafana/make_dashboard.py"
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uids = {source["uid"] for source in provisioned["datasources"]}
    dashboard = json.loads(DASHBOARD.read_text())
    used = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert used <= uids  # every panel reads the provisioned Prometheus


def test_the_metrics_the_dashboard_and_alerts_read(tmp_path: Path) -> None:
    def stats(queued: int, device: str, slots: int, busy: int) -> SchedulerStats:
        return SchedulerStats({"queued": queued}, [DeviceStats(device, slots, busy)], 0, 0)

    local = StudioMetrics(data_dir=tmp_path)
    local.update_from_stats(stats(2, "cpu", 2, 1))
    local.update_from_workers([])
    text = local.render().decode()
    assert "fusion_workers 2.0" in text  # one local worker process per slot
    assert "fusion_data_dir_free_bytes " in text and "fusion_data_dir_size_bytes " in text
    # Born at zero, so the first job's duration shows up in rates and quantiles.
    assert 'fusion_job_duration_seconds_count{status="succeeded"} 0.0' in text

    celery = StudioMetrics(backend="celery")
    celery.update_from_stats(stats(0, "cpu", 32, 5))  # the in-flight bound, not a device
    gpu = {"device": "cuda:0", "slots": 1, "busy": 1}
    celery.update_from_workers([{"name": "a", "devices": [gpu]}, {"name": "b", "devices": [gpu]}])
    text = celery.render().decode()
    assert "fusion_workers 2.0" in text and 'device="cpu"' not in text
    assert 'fusion_device_slots_busy{device="a/cuda:0"} 1.0' in text
    celery.update_from_workers([{"name": "b", "devices": [gpu]}])  # "a" stopped announcing
    text = celery.render().decode()
    assert "fusion_workers 1.0" in text and "a/cuda:0" not in text
    assert "fusion_data_dir" not in text  # no data directory given: no made-up disk
