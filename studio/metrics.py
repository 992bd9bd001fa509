"""Prometheus metrics of one studio (its own registry, so two studios never mix).

Gauges that describe the queue (jobs per status, depth, busy slots) are read
from the scheduler's ``stats()`` when ``/metrics`` is scraped; histograms and
counters are fed by job events as they happen. The data directory's free and
total bytes are read from the file system at each scrape (when the studio was
given its data directory).

``fusion_workers`` counts what can run jobs: the local worker processes (one per
slot) or, with the Celery backend, the worker nodes announced in Redis. With
the Celery backend the devices are the workers' (``worker/device``); the
studio's in-flight bound (``--max-in-flight``) is not a device.

deploy/grafana/ charts these metrics and deploy/prometheus/rules/ alerts on them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from scheduler.service import SchedulerStats

STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
FINAL_STATUSES = ("succeeded", "failed", "canceled")
DURATION_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200)
FPS_BUCKETS = (0.5, 1, 2, 5, 10, 15, 25, 30, 50, 60, 100, 200)


class StudioMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, data_dir: str | Path | None = None, backend: str = "local") -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.backend = backend
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Gauge("fusion_jobs", "Jobs in the store by status", ["status"], registry=r)
        self.queue_depth = Gauge("fusion_queue_depth", "Jobs waiting to run", registry=r)
        self.slots = Gauge("fusion_device_slots", "Worker slots per device", ["device"], registry=r)
        self.busy = Gauge(
            "fusion_device_slots_busy", "Busy worker slots per device", ["device"], registry=r
        )
        self.fps_now = Gauge(
            "fusion_frames_per_second", "Frames per second of running jobs, summed", registry=r
        )
        self.duration = Histogram(
            "fusion_job_duration_seconds",
            "Run time of finished jobs (start to end)",
            ["status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.wait = Histogram(
            "fusion_job_wait_seconds",
            "Time from submission to start",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.job_fps = Histogram(
            "fusion_job_fps",
            "Average frames per second of finished jobs",
            buckets=FPS_BUCKETS,
            registry=r,
        )
        self.submitted = Counter("fusion_jobs_submitted", "Jobs accepted", ["via"], registry=r)
        self.rejected = Counter(
            "fusion_submissions_rejected", "Submissions refused", ["code"], registry=r
        )
        self.finished = Counter(
            "fusion_jobs_finished", "Jobs that reached a final status", ["status"], registry=r
        )
        self.webhook_deliveries = Counter(
            "fusion_webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, retry, failed)",
            ["outcome"],
            registry=r,
        )
        self.webhook_failures = Counter(
            "fusion_webhook_failures", "Webhook attempts that did not succeed", registry=r
        )
        self.workers = Gauge(
            "fusion_workers",
            "Workers that can run jobs: local worker processes, or announced Celery workers",
            registry=r,
        )
        # Registered at the first reading: no made-up zero before the studio knows its disk.
        self.disk_free = Gauge(
            "fusion_data_dir_free_bytes",
            "Bytes free for the studio on the data directory's file system",
            registry=None,
        )
        self.disk_size = Gauge(
            "fusion_data_dir_size_bytes",
            "Size of the data directory's file system in bytes",
            registry=None,
        )
        self._disk_registered = False
        for status in STATUSES:
            self.jobs.labels(status)
            self.finished.labels(status)
            if status in FINAL_STATUSES:
                # Present from the start, so that rates and quantiles have a baseline
                # (a series born with its first observation shows no increase).
                self.duration.labels(status)
        for outcome in ("delivered", "retry", "failed"):
            self.webhook_deliveries.labels(outcome)
        self._fps: dict[str, float] = {}
        self._worker_labels: set[str] = set()

    # -- fed by events --------------------------------------------------------------------

    def job_started(self, wait_seconds: float | None) -> None:
        if wait_seconds is not None and wait_seconds >= 0:
            self.wait.observe(wait_seconds)

    def job_progress(self, job_id: str, fps: float | None) -> None:
        if fps is not None:
            self._fps[job_id] = fps
            self.fps_now.set(sum(self._fps.values()))

    def job_finished(
        self, job_id: str, status: str, run_seconds: float | None, frames: int | None
    ) -> None:
        self._fps.pop(job_id, None)
        self.fps_now.set(sum(self._fps.values()))
        self.finished.labels(status).inc()
        if run_seconds is not None and run_seconds >= 0:
            self.duration.labels(status).observe(run_seconds)
            if status == "succeeded" and frames and run_seconds > 0:
                self.job_fps.observe(frames / run_seconds)

    def job_released(self, job_id: str) -> None:
        self._fps.pop(job_id, None)
        self.fps_now.set(sum(self._fps.values()))

    def webhook(self, outcome: str) -> None:
        self.webhook_deliveries.labels(outcome).inc()
        if outcome != "delivered":
            self.webhook_failures.inc()

    # -- read from the scheduler at scrape time -----------------------------------------

    def update_from_stats(self, stats: SchedulerStats) -> None:
        for status in STATUSES:
            self.jobs.labels(status).set(float(stats.counts.get(status, 0)))
        self.queue_depth.set(float(stats.queued))
        if self.backend == "celery":
            return  # the scheduler's one "device" is the in-flight bound; workers follow
        for device in stats.devices:
            self.slots.labels(device.device).set(float(device.slots))
            self.busy.labels(device.device).set(float(device.busy))
        self.workers.set(float(sum(device.slots for device in stats.devices)))

    def update_from_workers(self, workers: list[dict]) -> None:
        """Slots of distributed workers, labelled ``worker/device``. A worker that is no
        longer announced disappears from the metrics (no stale busy slots)."""
        labels: set[str] = set()
        for worker in workers:
            for device in worker.get("devices", []):
                label = f"{worker['name']}/{device['device']}"
                labels.add(label)
                self.slots.labels(label).set(float(device["slots"]))
                self.busy.labels(label).set(float(device["busy"]))
        for gone in self._worker_labels - labels:
            self.slots.remove(gone)
            self.busy.remove(gone)
        self._worker_labels = labels
        if self.backend == "celery":
            self.workers.set(float(len(workers)))

    def update_disk(self, data_dir: str | Path | None = None) -> None:
        """Free and total bytes of the data directory's file system (``render`` calls it)."""
        path = Path(data_dir) if data_dir is not None else self.data_dir
        if path is None:
            return
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            return  # keep the last values; a vanished mount is reported by other means
        self.disk_free.set(float(usage.free))
        self.disk_size.set(float(usage.total))
        if not self._disk_registered:
            self.registry.register(self.disk_free)
            self.registry.register(self.disk_size)
            self._disk_registered = True

    def render(self) -> bytes:
        self.update_disk()
        return generate_latest(self.registry)
