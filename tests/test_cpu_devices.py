"""Numbered CPU devices own their share of the cores (``--devices cpu:0,cpu:1``).

A split video's segments then run side by side on separate cores, and two jobs on
two devices do not fight over the same ones.
"""

from __future__ import annotations

import os

import pytest

from scheduler.cpu import device_cores
from scheduler.service import Scheduler
from tests.scheduler_server import make_config


def test_cores_are_dealt_out_to_the_numbered_cpu_devices():
    devices = ["cpu:0", "cpu:1"]
    assert device_cores("cpu:0", devices, range(4)) == {0, 2}
    assert device_cores("cpu:1", devices, range(4)) == {1, 3}
    assert device_cores("cpu:0", ["cpu:0"], range(4)) == {0, 1, 2, 3}
    # More devices than cores: each still gets one, shared in turn.
    assert device_cores("cpu:2", ["cpu:0", "cpu:1", "cpu:2"], range(2)) == {0}
    # The plain cpu device and accelerators are not pinned.
    assert device_cores("cpu", ["cpu"], range(4)) == set()
    assert device_cores("cuda:0", ["cuda:0", "cpu:0"], range(4)) == set()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux affinity")
async def test_each_numbered_device_worker_runs_on_its_own_cores(tmp_path):
    available = os.sched_getaffinity(0)
    config = make_config(tmp_path / "data", devices={"cpu:0": 1, "cpu:1": 1})
    async with Scheduler(config) as scheduler:
        await scheduler.executor.wait_ready()
        workers = scheduler.executor.describe()["workers"]
        pinned = {w["device"]: os.sched_getaffinity(w["pid"]) for w in workers}
    devices = list(pinned)
    for device, cores in pinned.items():
        assert cores == device_cores(device, devices, available)
    if len(available) >= 2:
        assert not pinned["cpu:0"] & pinned["cpu:1"]
