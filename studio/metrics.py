"""Prometheus metrics of one studio (its own registry, so two studios never mix).

Gauges that describe the queue (jobs per status, depth, busy slots) are read
from the scheduler's ``stats()`` when ``/metrics`` is scraped; histograms and
counters are fed by job events as they happen.
"""

from __future__ import annotations

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
DURATION_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200)
FPS_BUCKETS = (0.5, 1, 2, 5, 10, 15, 25, 30, 50, 60, 100, 200)


class StudioMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
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
        for status in STATUSES:
            self.jobs.labels(status)
            self.finished.labels(status)
        for outcome in ("delivered", "retry", "failed"):
            self.webhook_deliveries.labels(outcome)
        self._fps: dict[str, float] = {}

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
        for device in stats.devices:
            self.slots.labels(device.device).set(float(device.slots))
            self.busy.labels(device.device).set(float(device.busy))

    def update_from_workers(self, workers: list[dict]) -> None:
        """Slots of distributed workers, labelled ``worker/device``."""
        for worker in workers:
            for device in worker.get("devices", []):
                label = f"{worker['name']}/{device['device']}"
                self.slots.labels(label).set(float(device["slots"]))
                self.busy.labels(label).set(float(device["busy"]))

    def render(self) -> bytes:
        return generate_latest(self.registry)
