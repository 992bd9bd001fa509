"""The studio's REST API on the Celery backend, end to end with the real engine.

A real studio (FastAPI app, SQLite store, dispatcher) serves HTTP on 127.0.0.1
with ``CeleryExecutor`` in place of local workers; real ``python app.py
worker`` nodes on a real redis-server run the jobs with the embedded models
(mtcnn detector, classic swapper). Results are downloaded from the studio and
progress is read over Server-Sent Events.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest

from scheduler import Scheduler
from scheduler.celery_backend import make_executor, scheduler_devices
from studio.config import StudioConfig
from studio.core import Studio
from studio.scheduler_setup import scheduler_config
from tests.assets import T1, TOM_HANKS
from tests.live_studio import free_port, iter_sse
from tests.media import make_video
from tests.redis_server import RedisServer, WorkerProcess

pytestmark = pytest.mark.timeout(240)

HEARTBEAT_S = 0.5
WORKER_TTL_S = 3.0


class StudioThread:
    """The studio app served by uvicorn in a thread of this process, on the Celery backend.

    (In production: ``python app.py --backend celery --broker URL``.)"""

    def __init__(self, data_dir: Path, broker_url: str, split_video: bool = False) -> None:
        import uvicorn

        from studio.server import build_app

        self.port = free_port()
        config = StudioConfig(
            data_dir=data_dir,
            host="127.0.0.1",
            port=self.port,
            ui=False,
            backend="celery",
            broker_url=broker_url,
            split_video=split_video,
        )
        executor = make_executor(
            broker_url, data_dir, heartbeat_s=HEARTBEAT_S, worker_ttl_s=WORKER_TTL_S
        )
        executor.poll_interval = 0.2
        scheduler_settings = dataclasses.replace(
            scheduler_config(config), devices=scheduler_devices(8)
        )
        self.studio = Studio(config, Scheduler(scheduler_settings, executor))
        app = build_app(config, self.studio)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None)
        )
        self.thread = threading.Thread(target=self.server.run, name="studio", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StudioThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the studio did not start")

    def stop(self) -> None:
        self.studio.begin_shutdown()
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture
def workers(redis_server: RedisServer, data_dir: Path, tmp_path: Path):
    started: list[WorkerProcess] = []

    def start(*devices: str) -> list[WorkerProcess]:
        nodes = [
            WorkerProcess(
                redis_server.url,
                data_dir,
                tmp_path / "logs",
                devices=device,
                extra=("--heartbeat", str(HEARTBEAT_S), "--worker-ttl", str(WORKER_TTL_S)),
            ).start()
            for device in devices
        ]
        started.extend(nodes)
        return nodes

    yield start
    for node in started:
        node.stop()


def wait_listed(http: httpx.Client, studio: StudioThread, nodes: list[WorkerProcess]) -> None:
    names = {node.nodename for node in nodes}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = {w["name"] for w in studio.studio.scheduler.executor.describe()["workers"]}
        if names <= listed:
            return
        for node in nodes:
            assert node.alive(), node.log_tail()
        time.sleep(0.1)
    raise AssertionError("the workers were never listed by the studio")


def submit(http: httpx.Client, source: Path, target: Path, options: dict) -> dict:
    files = [
        ("source", (source.name, source.read_bytes())),
        ("target", (target.name, target.read_bytes())),
    ]
    response = http.post("/api/v1/jobs", files=files, data={"options": json.dumps(options)})
    assert response.status_code == 202, response.text
    return response.json()


def follow(http: httpx.Client, job_id: str) -> list[tuple[str, dict]]:
    events = []
    with http.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=180) as response:
        assert response.status_code == 200
        for name, data in iter_sse(response):
            events.append((name, data))
    return events


def test_rest_jobs_run_on_celery_workers_with_sse_progress(
    redis_server: RedisServer, data_dir: Path, workers, tmp_path: Path
) -> None:
    target = tmp_path / "group.jpg"
    group = cv2.resize(cv2.imread(str(T1)), (480, 332), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(target), group)
    studio = StudioThread(data_dir, redis_server.url).start()
    try:
        (node,) = workers("cpu:0")
        with httpx.Client(base_url=studio.url, timeout=60) as http:
            wait_listed(http, studio, [node])
            job = submit(http, TOM_HANKS, target, {"swapper": "classic", "selector": "many"})
            events = follow(http, job["id"])
            final = http.get(f"/api/v1/jobs/{job['id']}").json()
            result = http.get(f"/api/v1/jobs/{job['id']}/result")
    finally:
        studio.stop()

    assert final["status"] == "succeeded", final
    stages = {data.get("stage") for name, data in events if name == "progress"}
    # Stages reported by the worker's engine (throttling may drop some, not all).
    assert len(stages - {"waiting for a worker", "starting"}) >= 1, stages
    assert events[-1][0] == "job" and events[-1][1]["status"] == "succeeded"
    assert result.status_code == 200
    image = cv2.imdecode(np.frombuffer(result.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == group.shape
    assert float(np.abs(image.astype(int) - group.astype(int)).mean()) > 0.5  # faces changed
    assert f"{job['id']}.r1] succeeded" in node.log_path.read_text()  # the worker ran it


def test_segments_of_one_video_run_on_two_workers_and_the_studio_joins_them(
    redis_server: RedisServer, data_dir: Path, workers, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=1.5, fps=10, size=(320, 240))
    studio = StudioThread(data_dir, redis_server.url, split_video=True).start()
    try:
        nodes = workers("cpu:0", "cpu:1")
        with httpx.Client(base_url=studio.url, timeout=60) as http:
            wait_listed(http, studio, nodes)
            options = {"swapper": "classic", "segment_seconds": 0.5}
            job = submit(http, TOM_HANKS, clip, options)
            events = follow(http, job["id"])
            final = http.get(f"/api/v1/jobs/{job['id']}").json()
            result = http.get(f"/api/v1/jobs/{job['id']}/result")
            history = http.get(f"/api/v1/jobs/{job['id']}/history").json()["history"]
    finally:
        studio.stop()

    assert final["status"] == "succeeded", final
    progress = [data["progress"] for name, data in events if name == "progress"]
    progress = [value for value in progress if value is not None]
    assert progress == sorted(progress)
    (succeeded,) = [entry for entry in history if entry["event"] == "succeeded"]
    assert succeeded["detail"]["result"]["segments"] == 3  # the studio's join reported three parts
    # The whole-video stage first, then three segments; both workers made some of them.
    events_in_order = [entry["event"] for entry in history]
    assert events_in_order.index("stage") < events_in_order.index("segment")
    segments = [entry["detail"] for entry in history if entry["event"] == "segment"]
    assert sorted(s["index"] for s in segments) == [0, 1, 2]
    assert {s["worker"] for s in segments} == {node.nodename for node in nodes}, segments
    made = {node.nodename: node.log_path.read_text().count("] succeeded") for node in nodes}
    assert sum(made.values()) == 4 and all(made.values()), made  # the stage and 3 segments
    output = tmp_path / "out.mp4"
    output.write_bytes(result.content)
    with av.open(str(output)) as container:
        assert container.streams.audio  # the source's sound was kept
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == 15
    with av.open(str(clip)) as container:
        originals = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    changed = [
        float(np.abs(a.astype(int) - b.astype(int)).mean())
        for a, b in zip(frames, originals, strict=True)
    ]
    assert min(changed) > 0.2  # every segment's frames were swapped, none copied through
