"""RabbitMQ as the Celery broker: what only RabbitMQ has, on a real broker.

The reliability tests (worker SIGKILL, broker restart, cancel, time limit) run on
RabbitMQ in tests/test_celery_backend.py (parametrized over the broker); this
module adds the consumer timeout, message priorities and the queue's durability
and publisher confirms. One RabbitMQ node serves the module; its
``consumer_timeout`` is lowered to a few seconds to stand in for RabbitMQ's
default of 30 minutes, and channels check it every 250 ms instead of every
minute, so that "a job longer than the default" takes seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator

import pytest
import redis
from amqp.exceptions import PreconditionFailed
from kombu import Connection, Consumer, Exchange, Producer, Queue

from scheduler import Scheduler
from scheduler.celery_backend.app import (
    TASK_NAME,
    CelerySettings,
    broker_priority,
    create_app,
)
from scheduler.celery_backend.keys import Keys, task_id_for
from scheduler.jobs import JobStatus
from tests import test_celery_backend as backend_tests
from tests.rabbitmq_server import (
    REPO_CONF,
    Broker,
    RabbitMQServer,
    rabbitmq_broker,
    running_rabbitmq,
)
from tests.redis_server import RedisServer
from tests.test_celery_backend import StartWorker, submit, wait_for, wait_status

# The Celery backend tests' fixtures, here on this module's RabbitMQ (``broker`` below).
start_worker = backend_tests.start_worker
studio = backend_tests.studio

pytestmark = pytest.mark.timeout(120)

DEFAULT_TIMEOUT_MS = 3000  # this node's consumer_timeout, standing in for 30 minutes
JOB_TIME_LIMIT_S = 120  # what tests/test_celery_backend.py's studio and workers use
QUEUE = "fusion-jobs"


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory) -> Iterator[RabbitMQServer]:
    with running_rabbitmq(
        tmp_path_factory.mktemp("rabbitmq"),
        conf={"consumer_timeout": str(DEFAULT_TIMEOUT_MS)},
        channel_tick_ms=250,
    ) as server:
        yield server


@pytest.fixture
def broker(rabbit: RabbitMQServer, redis_server: RedisServer) -> Broker:
    return rabbitmq_broker(rabbit, redis_server)


def hold_a_delivery_unacknowledged(url: str, seconds: float) -> Exception | None:
    """Consume one message and never acknowledge it (like a worker running a long job);
    returns the error that ended the channel, or None if it survived ``seconds``."""
    queue = Queue("probe-unacked", Exchange("probe-unacked"), "probe-unacked", durable=False)
    with Connection(url, connect_timeout=5) as connection:
        Producer(connection.channel()).publish({"job": 1}, declare=[queue], routing_key=queue.name)
        channel = connection.channel()
        channel.basic_qos(0, 1, False)
        received: list = []
        with Consumer(channel, [queue], callbacks=[lambda body, message: received.append(body)]):
            deadline = time.monotonic() + seconds
            try:
                while time.monotonic() < deadline:
                    with contextlib.suppress(TimeoutError):
                        connection.drain_events(timeout=0.5)
            except Exception as exc:
                assert received == [{"job": 1}]
                return exc
        return None


async def test_a_job_longer_than_the_default_consumer_timeout_runs_once(
    rabbit: RabbitMQServer,
    broker: Broker,
    studio: Scheduler,
    start_worker: StartWorker,
) -> None:
    # The hazard: with RabbitMQ's default, a delivery left unacknowledged too long gets
    # its channel closed and the message is handed out again.
    error = await asyncio.to_thread(hold_a_delivery_unacknowledged, rabbit.url, 30)
    assert isinstance(error, PreconditionFailed), error
    assert "delivery acknowledgement" in str(error) and "timed out" in str(error)

    # The remedy, as docs/deploy.md tells operators: consumer_timeout from the settings.
    settings = CelerySettings(broker.url, broker.redis_url, job_time_limit_s=JOB_TIME_LIMIT_S)
    rabbit.set_consumer_timeout(settings.consumer_timeout_ms)
    try:
        node = start_worker("cpu:0")  # its channel opens with the operator's setting
        seconds = 2.5 * DEFAULT_TIMEOUT_MS / 1000  # a "long video": beyond the default
        job = await submit(studio, "sleep", seconds=seconds, steps=25)
        done = await wait_status(studio, job.id, JobStatus.SUCCEEDED, JobStatus.FAILED)
    finally:
        rabbit.set_consumer_timeout(DEFAULT_TIMEOUT_MS)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result["run"] == 1 and done.attempts == 0  # never retried
    deliveries = redis.Redis.from_url(broker.redis_url).get(
        Keys().deliveries(task_id_for(job.id, 1))
    )
    assert int(deliveries) == 1  # delivered once: the broker never took it back
    log = node.log_path.read_text()
    assert "acknowledgement" not in log and "PRECONDITION_FAILED" not in log
    assert node.alive()


async def test_higher_priority_jobs_leave_the_broker_first(
    rabbit: RabbitMQServer,
    broker: Broker,
    studio: Scheduler,
    start_worker: StartWorker,
) -> None:
    """Jobs already handed to RabbitMQ are delivered by priority, not in sending order;
    the queue is durable, a priority queue, and holds the messages persistently."""

    async def waiting(count: int) -> None:
        await wait_for(
            lambda: asyncio.to_thread(lambda: broker.waiting(QUEUE) >= count),
            30,
            f"{count} messages in the broker",
        )

    # Sent one by one (no worker yet), lowest priority first.
    low = await submit(studio, "record", priority=-3)
    await waiting(1)
    middle = await submit(studio, "record")
    await waiting(2)
    high = await submit(studio, "record", priority=3)
    await waiting(3)
    listed = rabbit.ctl("list_queues", "-q", "name", "durable", "arguments", "messages_persistent")
    row = next(line for line in listed.splitlines() if line.startswith(QUEUE))
    assert re.search(r"\btrue\b", row)  # durable
    assert re.search(r'x-max-priority"?,\s*10', row), row
    assert row.split()[-1] == "3"  # all three messages persistent

    start_worker("cpu:0")  # one slot: one job at a time, the highest priority first
    finished = [await wait_status(studio, j.id, JobStatus.SUCCEEDED) for j in (high, middle, low)]
    # "record" counts the jobs its pool process has run: the order they were delivered in.
    assert [job.result["worker_jobs"] for job in finished] == [1, 2, 3]


def test_publishes_wait_for_the_brokers_confirm(
    rabbit: RabbitMQServer, redis_server: RedisServer
) -> None:
    settings = CelerySettings(rabbit.url, redis_server.url, queue="confirm-probe")
    app = create_app(settings)
    try:
        with app.producer_or_acquire() as producer:
            app.send_task(
                TASK_NAME, args=[{"job_id": "x"}], queue=settings.queue, producer=producer
            )
            # py-amqp puts a channel in confirm mode on its first publish with
            # confirm_publish, and then waits for basic.ack on every publish.
            assert producer.channel._confirm_selected is True
        assert rabbit.queue_depth(settings.queue) == 1
    finally:
        rabbit.delete_queue(settings.queue)
        app.close()


def test_rabbitmq_settings_and_the_shipped_consumer_timeout() -> None:
    amqp = CelerySettings("amqp://guest:guest@rabbit:5672/fusion", "redis://cache:6379/0")
    conf = create_app(amqp).conf
    (queue,) = conf.task_queues
    assert queue.durable and queue.exchange.durable
    assert queue.queue_arguments == {"x-max-priority": 10}
    assert conf.broker_transport_options == {"confirm_publish": True}
    assert conf.task_default_delivery_mode == "persistent"
    assert conf.task_acks_late and conf.worker_prefetch_multiplier == 1
    (route,) = conf.task_routes
    payload = {"spec": {"options": {"priority": 2}}}
    assert route(TASK_NAME, [payload], {}, {}) == {"priority": 7}
    assert [broker_priority(p) for p in (-1000, -5, -1, 0, 1, 5, 1000, None, "x")] == [
        0, 0, 4, 5, 6, 10, 10, 5, 5,
    ]  # fmt: skip
    # Redis keeps its own order (its transport reads priorities the other way round).
    redis_conf = create_app(CelerySettings("redis://r:6379/0")).conf
    assert not redis_conf.task_routes and not redis_conf.task_queues[0].queue_arguments

    # The value deploy/rabbitmq/rabbitmq.conf ships fits the default job time limit.
    shipped = re.search(r"^consumer_timeout\s*=\s*(\d+)", REPO_CONF.read_text(), re.M)
    assert shipped is not None
    assert int(shipped.group(1)) == amqp.consumer_timeout_ms
    assert amqp.consumer_timeout_ms > amqp.job_time_limit_s * 1000
