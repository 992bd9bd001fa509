"""Fixtures shared by the test modules.

Servers and processes: ``redis_server`` (a fresh redis-server per test),
``rabbitmq_server`` (one RabbitMQ node per module). Data: ``data_dir``.
Browser: ``browser`` (headless Debian Chromium, one per module).
Images, media and models: ``t1``, ``sessions``, ``engine``, ``media`` (the
three-segment set of the ZeroGPU tests). Schedulers: ``start`` and
``scheduler`` run real worker processes; ``start_inline``, ``fake_clock`` and
``store`` use the doubles of ``tests/doubles.py`` and run in milliseconds.

A module that needs another flavour of a fixture defines its own with the same
name, which takes precedence (the studio servers, each with its own flags).
Helpers stay in their modules (``tests/redis_server.py``, ``tests/media.py``,
``tests/live_studio.py``, ``tests/scheduler_server.py``, …).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.assets import T1, load
from tests.doubles import FakeClock, fast_store, inline_scheduler
from tests.rabbitmq_server import RabbitMQServer, rabbitmq_installed, running_rabbitmq
from tests.redis_server import RedisServer, running_redis

# -- browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright, one per test module."""
    from tests.browser_form import launch_chromium

    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()


# -- servers --------------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server per test, stopped (and its files removed with tmp_path) after."""
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="module")
def rabbitmq_server(tmp_path_factory) -> Iterator[RabbitMQServer]:
    """One RabbitMQ node per test module (``reset()`` it between tests)."""
    if not rabbitmq_installed():
        pytest.skip("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    with running_rabbitmq(tmp_path_factory.mktemp("rabbitmq")) as server:
        yield server


# -- data, images, models -------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    """The insightface group photo (six faces), BGR."""
    return load(T1)


@pytest.fixture(scope="module")
def sessions():
    from engine.runtime import SessionCache

    return SessionCache("cpu")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A CPU face engine on an empty models directory (the bundled detector only)."""
    from engine.models.manager import ModelManager
    from engine.pipeline import FaceEngine

    return FaceEngine(ModelManager(tmp_path_factory.mktemp("models")), "cpu", 1)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """A source face, an image and a video of three segments (the ZeroGPU tests)."""
    from tests import zerogpu_standin

    return zerogpu_standin.three_segment_media(tmp_path_factory.mktemp("media"))


# -- schedulers -----------------------------------------------------------------------------

StartScheduler = Callable[..., Awaitable[Any]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[StartScheduler]:
    """Start schedulers with real worker processes on fresh data directories
    (``make_config`` overrides as keywords); all are stopped at the end."""
    from scheduler.service import Scheduler
    from tests.scheduler_server import make_config

    started: list[Scheduler] = []

    async def start(**overrides) -> Scheduler:
        data_dir = overrides.pop("data_dir", tmp_path / f"data{len(started)}")
        scheduler = Scheduler(make_config(data_dir, **overrides))
        await scheduler.start()
        await scheduler.executor.wait_ready()
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:
        await scheduler.stop()


@pytest.fixture
async def scheduler(start: StartScheduler):
    """One scheduler with a real worker process."""
    return await start(cancel_grace_seconds=0.5)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def start_inline(tmp_path: Path, fake_clock: FakeClock) -> AsyncIterator[StartScheduler]:
    """Start schedulers whose tasks run in threads of this process (``InlineExecutor``)
    and whose store runs on ``fake_clock``; all are stopped at the end."""
    from tests.scheduler_server import make_config

    started = []

    async def start(**overrides):
        data_dir = overrides.pop("data_dir", tmp_path / f"data{len(started)}")
        clock = overrides.pop("clock", fake_clock)
        scheduler = inline_scheduler(make_config(data_dir, **overrides), clock)
        await scheduler.start()
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:
        await scheduler.stop()


@pytest.fixture
async def store(tmp_path: Path, fake_clock: FakeClock):
    """The SQLite store on a temporary file, on ``fake_clock``."""
    store = fast_store(tmp_path / "jobs.sqlite3", fake_clock)
    await store.open()
    yield store
    await store.close()
