"""The Celery application of the scale-out backend, with its reliability settings.

One factory builds the app for both roles (the studio, which only sends tasks,
and the workers, which run them), so both always agree on serializer, queue
and limits. No module-level app: per-deployment settings travel in a
``CelerySettings`` value, never in process-wide state.

The broker carries the task messages and may be Redis or RabbitMQ. A Redis
server is always needed besides ("coordination Redis"): the result backend,
progress pub/sub, worker announcements, cancel flags and attempt counters live
there. With a Redis broker the same server does both jobs.

With RabbitMQ (``amqp://``) the queue is durable and declared with
``x-max-priority`` 10, messages are persistent and every publish waits for the
broker's confirm, and each message carries the job's priority mapped onto 0..10
(``broker_priority``). RabbitMQ's ``consumer_timeout`` must exceed the job time
limit (``CelerySettings.consumer_timeout_ms``): it is a server setting
(docs/deploy.md, deploy/rabbitmq/rabbitmq.conf), not something a client can ask for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from celery import Celery
from kombu import Exchange, Queue

from engine.errors import InvalidOptions
from scheduler.celery_backend.keys import Keys

REDIS_SCHEMES = ("redis", "rediss")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
TASK_NAME = "fusion.run_job"

# RabbitMQ priority queue: messages carry 0..BROKER_MAX_PRIORITY, higher first.
BROKER_MAX_PRIORITY = 10


@dataclass(frozen=True)
class CelerySettings:
    """Everything both roles must agree on. Times are seconds."""

    broker_url: str
    redis_url: str | None = None  # coordination Redis; defaults to a Redis broker's URL
    queue: str = "fusion-jobs"
    # Hard limit of one job; the soft limit comes ``soft_margin_s`` earlier so the job
    # can stop cleanly (remove partial files) before the hard limit kills the process.
    job_time_limit_s: float = 6 * 3600
    soft_margin_s: float = 60.0
    # How long finished task results stay in Redis. The studio reads a result within
    # seconds of completion; the margin covers a studio that was down for a while.
    result_expires_s: int = 7 * 24 * 3600
    # Worker announcements: refreshed every ``heartbeat_s``, gone after ``worker_ttl_s``.
    # A worker missing for that long is considered lost and its jobs are retried.
    heartbeat_s: float = 2.0
    worker_ttl_s: float = 10.0

    def __post_init__(self) -> None:
        scheme = urlsplit(self.broker_url).scheme
        if scheme not in REDIS_SCHEMES + AMQP_SCHEMES:
            raise InvalidOptions(
                f"unsupported broker URL {self.broker_url!r}: use redis://HOST:PORT/DB "
                "or amqp://USER:PASSWORD@HOST:PORT/VHOST"
            )
        if self.redis_url is None:
            if scheme not in REDIS_SCHEMES:
                raise InvalidOptions(
                    "a RabbitMQ broker needs a Redis server for results, progress and "
                    "worker announcements: add --redis redis://HOST:PORT/DB"
                )
            object.__setattr__(self, "redis_url", self.broker_url)
        elif urlsplit(self.redis_url).scheme not in REDIS_SCHEMES:
            raise InvalidOptions(f"--redis must be a redis:// URL, got {self.redis_url!r}")
        if self.job_time_limit_s <= self.soft_margin_s:
            raise InvalidOptions("the job time limit must be longer than the soft-limit margin")
        if self.worker_ttl_s <= 2 * self.heartbeat_s:
            raise InvalidOptions("the worker TTL must span at least two heartbeats")

    @property
    def keys(self) -> Keys:
        return Keys(self.queue)

    @property
    def soft_time_limit_s(self) -> float:
        return self.job_time_limit_s - self.soft_margin_s

    @property
    def visibility_timeout_s(self) -> int:
        """Redis broker: a reserved message not acknowledged within this time is handed to
        another worker. With ``acks_late`` a message stays unacknowledged for the whole
        job, so this MUST exceed the hard time limit, or a long job that is still running
        would be delivered a second time and run twice at once."""
        return int(math.ceil(self.job_time_limit_s * 1.25 + 300))

    @property
    def consumer_timeout_ms(self) -> int:
        """RabbitMQ: the ``consumer_timeout`` (ms) the broker needs. RabbitMQ closes the
        channel of a delivery that stays unacknowledged longer than that (30 minutes by
        default); with ``acks_late`` a delivery is unacknowledged for the whole job, so it
        must exceed the hard time limit, with the same margin as the visibility timeout."""
        return self.visibility_timeout_s * 1000

    @property
    def broker_is_redis(self) -> bool:
        return urlsplit(self.broker_url).scheme in REDIS_SCHEMES


def broker_priority(priority: object) -> int:
    """A job's priority (an integer, higher runs first, 0 by default) as a RabbitMQ message
    priority in 0..10: 0 maps to 5, each step up or down moves one level, and priorities
    beyond ±5 share the top or bottom level. The studio's SQLite queue still orders exactly
    (priority, owner round robin, age); this only orders the messages already handed to
    the broker, which ``--max-in-flight`` keeps few."""
    try:
        value = int(priority)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        value = 0
    middle = BROKER_MAX_PRIORITY // 2
    return middle + max(-middle, min(middle, value))


def _route_with_priority(name, args, kwargs, options, task=None, **_):
    """Celery router (RabbitMQ only): the message priority of a job's task. Taken from the
    payload's ``priority`` when it carries one, else from the job's ``priority`` option; a
    ``priority`` passed to ``send_task`` wins over both."""
    payload = args[0] if args and isinstance(args[0], dict) else {}
    priority = payload.get("priority")
    if priority is None:
        priority = ((payload.get("spec") or {}).get("options") or {}).get("priority", 0)
    return {"priority": broker_priority(priority)}


def _queues(settings: CelerySettings) -> tuple[Queue, ...]:
    """The one job queue, declared identically by the studio and every worker (RabbitMQ
    refuses a redeclaration with other arguments). Durable, on a durable direct exchange;
    ``x-max-priority`` makes it a priority queue (ignored by the Redis transport)."""
    exchange = Exchange(settings.queue, type="direct", durable=True, delivery_mode="persistent")
    arguments = {} if settings.broker_is_redis else {"x-max-priority": BROKER_MAX_PRIORITY}
    return (
        Queue(
            settings.queue,
            exchange,
            routing_key=settings.queue,
            durable=True,
            queue_arguments=arguments or None,
        ),
    )


def _transport_options(settings: CelerySettings) -> dict:
    if settings.broker_is_redis:
        return {
            "visibility_timeout": settings.visibility_timeout_s,
            "socket_keepalive": True,
            "health_check_interval": 10,
        }
    # RabbitMQ: every publish waits for the broker's confirm (basic.ack), which it sends
    # once a persistent message to a durable queue is written to disk; a send that
    # returned is therefore a job that survives a broker crash. Redelivery after a lost
    # consumer is immediate (no visibility timeout), bounded by consumer_timeout.
    return {"confirm_publish": True}


def create_app(settings: CelerySettings) -> Celery:
    """A Celery app configured for long, expensive, crash-prone GPU jobs."""
    app = Celery("fusion", broker=settings.broker_url, backend=settings.redis_url)
    app.conf.update(
        # JSON only: a worker never unpickles what arrives over the network.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.queue,
        task_queues=_queues(settings),
        task_create_missing_queues=True,
        # RabbitMQ: per-message priority on the priority queue (Redis keeps its order:
        # its transport reads priorities the other way round, 0 first).
        task_routes=() if settings.broker_is_redis else (_route_with_priority,),
        task_queue_max_priority=None if settings.broker_is_redis else BROKER_MAX_PRIORITY,
        task_default_priority=None if settings.broker_is_redis else broker_priority(0),
        # acks_late: the message is acknowledged when the job has finished, not when a
        # worker takes it. A worker that dies mid-job has not acknowledged, so the
        # broker still holds the message and hands it out again: no job is lost.
        task_acks_late=True,
        # A pool child killed mid-job (SIGKILL, OOM killer, segfault in a CUDA
        # kernel) would by default be recorded as FAILURE and acknowledged. With
        # this the message is requeued at once instead. Celery requeues without
        # limit, so a job that kills its worker every time would loop forever: the
        # task counts deliveries in Redis and turns the second delivery of the same
        # attempt into a "worker lost" outcome that the studio's scheduler retries
        # as a new attempt, bounded by the store's max attempts (see tasks.py).
        task_reject_on_worker_lost=True,
        # One message per free slot: a worker never hoards jobs that another idle
        # worker could start now (default 4 would reserve 4 per process).
        worker_prefetch_multiplier=1,
        # Time limits: the soft limit raises SoftTimeLimitExceeded inside the job so it
        # stops cleanly and reports a timeout; the hard limit kills the pool process
        # when the soft one was not honoured (stuck in native code). Both need the
        # prefork pool. A timed-out message is acknowledged (not redelivered): the
        # studio's scheduler decides about a retry, counted in the store.
        task_time_limit=settings.job_time_limit_s,
        task_soft_time_limit=settings.soft_time_limit_s,
        task_acks_on_failure_or_timeout=True,
        broker_transport_options=_transport_options(settings),
        # Results: the studio reads each outcome once, then the SQLite store keeps it.
        result_expires=settings.result_expires_s,
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        result_backend_always_retry=True,  # a Redis restart must not lose an outcome
        result_backend_max_retries=30,
        redis_backend_health_check_interval=10,
        redis_retry_on_timeout=True,
        redis_socket_keepalive=True,
        task_track_started=True,
        task_ignore_result=False,
        # Reconnect for ever: a broker restart is an outage to ride out, not an exit.
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # With a lost broker connection running jobs keep running; their late ack
        # may not reach the broker, and the redelivered copy is recognised as done.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # RabbitMQ: heartbeats detect a dead TCP connection. RabbitMQ also closes a
        # channel whose delivery is unacknowledged longer than its consumer_timeout
        # (30 min by default): the server must be configured with
        # ``settings.consumer_timeout_ms`` or more (docs/deploy.md).
        broker_heartbeat=30,
        worker_enable_remote_control=True,  # revoke/terminate travel as broadcasts
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_max_tasks_per_child=None,  # keep pool processes, and their warm models
        worker_disable_rate_limits=True,
        task_default_delivery_mode="persistent",
    )
    return app
