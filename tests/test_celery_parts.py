"""The scale-out backend's small parts: storage keys, worker announcements (real Redis),
and the worker command's refusal of bad flags."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from cli import dispatch
from engine.errors import InvalidInput, InvalidOptions
from scheduler.celery_backend.executor import redact_url
from scheduler.celery_backend.keys import Keys, task_id_for
from scheduler.celery_backend.registry import BusySlot, WorkerInfo, WorkerRegistry
from scheduler.celery_backend.storage import SharedDirectoryStorage
from tests.redis_server import RedisServer

# -- storage ----------------------------------------------------------------------------


def test_shared_directory_storage_speaks_in_keys(tmp_path: Path) -> None:
    studio_mount, worker_mount = tmp_path / "studio", tmp_path / "worker"
    job_dir = studio_mount / "jobs" / "job-1234"
    (job_dir / "inputs").mkdir(parents=True)
    (job_dir / "inputs" / "target.png").write_bytes(b"x")
    studio = SharedDirectoryStorage(studio_mount)
    job_key, output_key = studio.export(job_dir, job_dir / "outputs" / ".r1.result.png")
    assert (job_key, output_key) == ("jobs/job-1234", "jobs/job-1234/outputs/.r1.result.png")

    # The same share mounted elsewhere on a worker machine (here: a copy of it).
    (worker_mount / "jobs").mkdir(parents=True)
    (job_dir).rename(worker_mount / "jobs" / "job-1234")
    worker = SharedDirectoryStorage(worker_mount)
    local_job, local_output = worker.open(job_key, output_key)
    assert local_job == (worker_mount / "jobs" / "job-1234").resolve()
    assert local_output.parent.is_dir()
    local_output.write_bytes(b"result")
    worker.publish(output_key, local_output)
    worker.collect(output_key, local_output)  # present: no error


def test_shared_directory_storage_refuses_what_would_break_the_contract(tmp_path: Path) -> None:
    storage = SharedDirectoryStorage(tmp_path / "share")
    (tmp_path / "share").mkdir()
    with pytest.raises(InvalidOptions, match="not inside the shared data directory"):
        storage.key_for(tmp_path / "elsewhere" / "file.png")
    for bad in ("../etc/passwd", "/etc/passwd", "", "studio/studio.sqlite", "jobs"):
        with pytest.raises(InvalidInput, match="bad storage key"):
            storage.path_for(bad)
    with pytest.raises(InvalidInput, match="--data-dir"):
        storage.open("jobs/missing-job", "jobs/missing-job/outputs/.r1.out.png")
    with pytest.raises(InvalidInput, match="missing"):
        storage.collect("jobs/missing-job/outputs/.r1.out.png", tmp_path / "out.png")


def test_task_ids_name_job_run_and_segment() -> None:
    assert task_id_for("abc", 2) == "abc.r2"
    assert task_id_for("abc~5", 2) == "abc~5.r2"
    assert redact_url("amqp://user:secret@rabbit:5672//") == "amqp://user:***@rabbit:5672//"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


# -- worker announcements ---------------------------------------------------------------


def test_announcements_list_devices_and_busy_slots_and_expire(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    registry = WorkerRegistry(client, Keys("q"), ttl_s=0.5)
    info = WorkerInfo("w1@host", "host", 123, ["cuda:0", "cuda:1"], 2, started_at=time.time())
    registry.announce(info)
    slot = BusySlot("job.r1", "job", 1, "cuda:1", 456, since=time.time())
    registry.slot_started("w1@host", slot)

    (listed,) = registry.workers()
    assert listed.devices == ["cuda:0", "cuda:1"] and listed.slots == 4
    assert listed.busy_on("cuda:1") == 1 and listed.busy_on("cuda:0") == 0
    registry.slot_finished("w1@host", "job.r1")
    assert registry.workers()[0].busy == []

    time.sleep(0.8)  # no heartbeat: the announcement expires, the name is forgotten
    assert registry.workers() == []
    assert client.scard(Keys("q").workers) == 0


def test_busy_slots_of_dead_pool_processes_are_pruned(redis_server: RedisServer) -> None:
    registry = WorkerRegistry(redis.Redis.from_url(redis_server.url), Keys(), ttl_s=5)
    old = time.time() - 60
    registry.slot_started("w", BusySlot("gone.r1", "gone", 1, "cpu:0", 1, since=old))
    registry.slot_started("w", BusySlot("live.r1", "live", 1, "cpu:0", 2, since=old))
    registry.slot_started("w", BusySlot("new.r1", "new", 1, "cpu:0", 3, since=time.time()))
    registry.prune_busy("w", running_task_ids={"live.r1"}, grace_s=5)
    assert sorted(slot.task_id for slot in registry.busy_slots("w")) == ["live.r1", "new.r1"]


# -- the worker command -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--broker", "sqs://queue"], "unsupported broker URL"),
        (["--broker", "amqp://guest:guest@rabbit:5672//"], "--redis"),
        (["--broker", "redis://127.0.0.1:1/0", "--devices", "tpu:0"], "unknown device"),
        (["--broker", "redis://127.0.0.1:1/0", "--slots", "0"], "--slots"),
        (["--broker", "redis://127.0.0.1:1/0", "--data-dir", "/nonexistent/x"], "--data-dir"),
    ],
)
def test_worker_command_refuses_bad_flags_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    assert dispatch("worker", argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
