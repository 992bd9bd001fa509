"""Writes deploy/grafana/dashboards/fusion-studio.json, the Grafana dashboard of the studio.

The dashboard is code: edit the panels here and run

    python deploy/grafana/make_dashboard.py

tests/test_deploy_monitoring.py checks that the JSON is what this script writes, and
asks a real Prometheus every query in it against a live studio. Queries use
``$__rate_interval`` (Grafana picks a window that fits the scrape interval) and
the provisioned data source (deploy/grafana/provisioning/datasources/).
"""

from __future__ import annotations

import json
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "fusion-studio.json"
DATASOURCE = {"type": "prometheus", "uid": "fusion-prometheus"}
RATE = "$__rate_interval"


def quantile(q: float, metric: str, selector: str = "") -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{selector}[{RATE}])))"


# (title, kind, unit, [(query, legend)], description)
PANELS: list[tuple[str, str, str, list[tuple[str, str]], str]] = [
    (
        "Queue depth",
        "timeseries",
        "short",
        [("sum(fusion_queue_depth)", "waiting in the studio's queue")],
        "Jobs waiting to run (with Celery: beyond --max-in-flight).",
    ),
    (
        "Jobs per status",
        "timeseries",
        "short",
        [("sum by (status) (fusion_jobs)", "{{status}}")],
        "Jobs in the store by status.",
    ),
    (
        "Workers",
        "stat",
        "short",
        [("sum(fusion_workers)", "workers")],
        "Local worker processes, or Celery workers announced in Redis.",
    ),
    (
        "Data directory free",
        "stat",
        "percentunit",
        [("min(fusion_data_dir_free_bytes / fusion_data_dir_size_bytes)", "free")],
        "Free space on the file system of the data directory (jobs, models, SQLite).",
    ),
    (
        "Throughput",
        "timeseries",
        "short",
        [
            (f"sum by (status) (rate(fusion_jobs_finished_total[{RATE}])) * 60", "{{status}}/min"),
            (f"sum(rate(fusion_jobs_submitted_total[{RATE}])) * 60", "submitted/min"),
            (
                f"sum by (code) (rate(fusion_submissions_rejected_total[{RATE}])) * 60",
                "refused {{code}}/min",
            ),
        ],
        "Jobs that ended, were submitted or refused, per minute.",
    ),
    (
        "Failure rate",
        "timeseries",
        "percentunit",
        [
            (
                f'sum(rate(fusion_jobs_finished_total{{status="failed"}}[{RATE}]))'
                f' / sum(rate(fusion_jobs_finished_total{{status=~"succeeded|failed"}}[{RATE}]))',
                "failed / ended",
            )
        ],
        "Share of the jobs that ended which failed (canceled ones do not count).",
    ),
    (
        "Job duration",
        "timeseries",
        "s",
        [
            (quantile(0.5, "fusion_job_duration_seconds", '{status="succeeded"}'), "p50"),
            (quantile(0.95, "fusion_job_duration_seconds", '{status="succeeded"}'), "p95"),
        ],
        "Run time of succeeded jobs, start to end.",
    ),
    (
        "Wait before start",
        "timeseries",
        "s",
        [
            (quantile(0.5, "fusion_job_wait_seconds"), "p50"),
            (quantile(0.95, "fusion_job_wait_seconds"), "p95"),
        ],
        "Time from submission to start.",
    ),
    (
        "Busy slots per device",
        "timeseries",
        "short",
        [
            ("sum by (device) (fusion_device_slots_busy)", "{{device}} busy"),
            ("sum by (device) (fusion_device_slots)", "{{device}} slots"),
        ],
        "Local devices, or worker/device of each Celery worker.",
    ),
    (
        "Frames per second",
        "timeseries",
        "short",
        [
            ("sum(fusion_frames_per_second)", "running jobs"),
            (quantile(0.5, "fusion_job_fps"), "finished jobs p50"),
        ],
        "Frames per second of running jobs (summed) and of finished jobs.",
    ),
    (
        "Webhook failures",
        "timeseries",
        "short",
        [
            (f"sum(rate(fusion_webhook_failures_total[{RATE}])) * 60", "failures/min"),
            (
                f"sum by (outcome) (rate(fusion_webhook_deliveries_total[{RATE}])) * 60",
                "{{outcome}}/min",
            ),
        ],
        "Webhook delivery attempts that failed (retried later, or given up).",
    ),
]


def panel(index: int, title: str, kind: str, unit: str, targets, description: str) -> dict:
    width, height = (12, 4) if kind == "stat" else (12, 8)
    return {
        "id": index + 1,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": height, "w": width, "x": 0, "y": 0},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
        "targets": [
            {
                "refId": chr(ord("A") + n),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for n, (expr, legend) in enumerate(targets)
        ],
    }


def layout(panels: list[dict]) -> list[dict]:
    """Left to right, two panels a row (the stats first)."""
    x = y = 0
    row_height = 0
    for item in panels:
        w, h = item["gridPos"]["w"], item["gridPos"]["h"]
        if x + w > 24:
            x, y = 0, y + row_height
            row_height = 0
        item["gridPos"].update({"x": x, "y": y})
        x += w
        row_height = max(row_height, h)
    return panels


def dashboard() -> dict:
    ordered = [p for p in PANELS if p[1] == "stat"] + [p for p in PANELS if p[1] != "stat"]
    return {
        "uid": "fusion-studio",
        "title": "Fusion Studio",
        "description": "Queue, throughput, durations, failures, devices and workers (studio/metrics.py).",
        "tags": ["fusion-studio"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": layout([panel(i, *p) for i, p in enumerate(ordered)]),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
