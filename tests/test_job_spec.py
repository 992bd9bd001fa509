"""The job spec: options parsed once at submit, models resolved once, the worker trusts both.

Submit stores the canonical options and the concrete model of every choice (with the
catalogue's checksum); specs of older versions are migrated when read; a worker runs
exactly the models its spec names or fails with ``ModelUnavailable``, never another.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from engine.errors import InvalidOptions, ModelUnavailable
from engine.jobrun import JobRequest, run_job
from engine.models.manager import ModelManager
from engine.models.registry import REGISTRY
from engine.models.resolve import ModelRef, resolve_for_spec, resolve_models
from engine.options import (
    ParsedOptions,
    SwapOptions,
    options_from_dict,
    options_to_dict,
    parse_options,
)
from engine.pipeline import FaceEngine
from scheduler.executor import RELEASED, Attempt, Executor, ExecutorEvent
from scheduler.jobs import SPEC_VERSION, InputLimits, JobSpec, StoredFile
from scheduler.service import Scheduler, SchedulerConfig
from scheduler.tasks import SCHEDULER_OPTION_KEYS
from tests.assets import SCRFD_2_5G, T1, TOM_HANKS
from tests.standins.registry import install_standins

SOURCE = ("tom.png", TOM_HANKS)
TARGET = ("group.jpg", T1)


def sha(name: str) -> str:
    return REGISTRY[name].sha256


# -- the spec as JSON -------------------------------------------------------------------


def test_spec_round_trips_through_json_with_its_models():
    options = options_to_dict(
        parse_options({"swapper": "inswapper_128", "priority": 4}, ("priority",))
    )
    spec = JobSpec(
        kind="swap",
        sources=(StoredFile("source-1.png", "tom.png", 10),),
        target=StoredFile("target.jpg", "group.jpg", 20),
        options=options,
        output="result.jpg",
        limits=InputLimits(max_pixels=1234, max_sources=2),
        models=(
            ModelRef("detector", "mtcnn", ""),
            ModelRef("swapper", "inswapper_128", sha("inswapper_128")),
            ModelRef("recognizer", "arcface_w600k_r50", sha("arcface_w600k_r50")),
        ),
    )
    text = spec.to_json()
    data = json.loads(text)
    assert data["version"] == SPEC_VERSION == 3
    assert data["models"][1] == {
        "role": "swapper",
        "name": "inswapper_128",
        "sha256": sha("inswapper_128"),
    }
    again = JobSpec.from_json(text)
    assert again == spec
    assert isinstance(again.models, tuple) and all(isinstance(m, ModelRef) for m in again.models)
    typed = again.engine_options
    assert typed.swap.swapper == "inswapper_128" and typed.extra == {"priority": 4}
    assert typed == parse_options(options, ("priority",))


def test_version_1_spec_is_migrated_on_read():
    stored = {
        "kind": "swap",
        "sources": [{"name": "source-1.png", "original": "tom.png", "size": 10}],
        "target": {"name": "target.jpg", "original": "group.jpg", "size": 20},
        "reference": None,
        "options": {"detector_score": "0.7", "color_correction": "false", "priority": 2},
        "output": "result.jpg",
    }
    spec = JobSpec.from_json(json.dumps(stored))
    assert spec.version == SPEC_VERSION
    assert spec.limits == InputLimits()  # the limits of version 1's time
    assert spec.models is None  # the worker resolves ``auto`` itself: the migration path
    assert spec.options["detector_score"] == 0.7 and spec.options["color_correction"] is False
    assert spec.options["priority"] == 2 and spec.options["swapper"] == "auto"
    assert spec.engine_options.swap.detector_score == 0.7
    assert json.loads(spec.to_json())["version"] == SPEC_VERSION


def test_version_2_spec_is_migrated_on_read_and_keeps_its_limits():
    stored = {
        "kind": "swap",
        "sources": [{"name": "source-1.png", "original": "tom.png", "size": 10}],
        "target": {"name": "target.mp4", "original": "clip.mp4", "size": 20},
        "reference": None,
        "options": {"crf": "20", "container": "webm", "consent": True},
        "output": "result.webm",
        "limits": {"max_pixels": 5_000_000, "max_sources": 3},
        "version": 2,
    }
    spec = JobSpec.from_json(json.dumps(stored))
    assert (spec.version, spec.models) == (SPEC_VERSION, None)
    assert spec.limits == InputLimits(max_pixels=5_000_000, max_sources=3)
    assert spec.options["crf"] == 20 and spec.options["consent"] is True
    assert spec.engine_options.output.container == "webm"
    assert spec.engine_options.extra == {"consent": True}


def test_old_spec_the_parser_now_refuses_is_still_readable_and_fails_when_run():
    stored = {"kind": "swap", "options": {"detect_every": 99}, "version": 2}
    spec = JobSpec.from_json(json.dumps(stored))  # a listing never breaks on it
    assert spec.version == 2 and spec.options == {"detect_every": 99}
    with pytest.raises(InvalidOptions, match="detect_every"):
        _ = spec.engine_options


def test_trusted_options_are_rebuilt_without_validation():
    canonical = options_to_dict(ParsedOptions(swap=SwapOptions(detect_every=100)))
    with pytest.raises(InvalidOptions):
        parse_options(canonical)
    assert options_from_dict(canonical).swap.detect_every == 100
    assert ParsedOptions.from_trusted(canonical) == ParsedOptions(
        swap=SwapOptions(detect_every=100)
    )


# -- resolution -------------------------------------------------------------------------


def test_without_a_models_dir_auto_is_the_catalogues_preferred_model():
    models = resolve_for_spec(SwapOptions(), None)
    assert models == (
        ModelRef("detector", "det_10g", sha("det_10g")),
        ModelRef("swapper", "hyperswap_1a_256", sha("hyperswap_1a_256")),
        ModelRef("recognizer", "arcface_w600k_r50", sha("arcface_w600k_r50")),
    )


def test_engine_and_submit_resolve_alike(tmp_path):
    manager = install_standins(tmp_path / "models", ("arcface_w600k_r50", "inswapper_128"))
    resolved = FaceEngine(manager).resolve(SwapOptions())
    models = resolve_models(SwapOptions(), manager)
    assert [m.name for m in models] == [resolved.detector, resolved.swapper, resolved.recognizer]
    empty = resolve_models(SwapOptions(), ModelManager(tmp_path / "empty"))
    assert empty == (ModelRef("detector", "mtcnn", ""), ModelRef("swapper", "classic", ""))


# -- submit -----------------------------------------------------------------------------


class HoldingExecutor(Executor):
    """Takes attempts and holds them until the scheduler stops: nothing runs."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.stopped = asyncio.Event()

    async def start(self, slots: Mapping[str, int]) -> None:
        pass

    async def stop(self) -> None:
        self.stopped.set()

    async def run(self, attempt: Attempt) -> AsyncIterator[ExecutorEvent]:
        self.attempts.append(attempt)
        await self.stopped.wait()
        yield ExecutorEvent(attempt.job_id, attempt.run, RELEASED)

    async def cancel(self, job_id: str, grace: float = 2.0) -> None:
        pass


@pytest.fixture
async def scheduler_for(tmp_path: Path):
    started: list[Scheduler] = []

    async def start(models_dir: Path | None) -> Scheduler:
        settings = {"models_dir": str(models_dir)} if models_dir is not None else {}
        config = SchedulerConfig(
            data_dir=tmp_path / f"data{len(started)}",
            worker_settings=settings,
            input_limits=InputLimits(max_sources=2),
        )
        scheduler = Scheduler(config, HoldingExecutor())
        await scheduler.start()
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:
        await scheduler.stop()


@pytest.mark.skipif(not SCRFD_2_5G.is_file(), reason=f"real SCRFD weights not at {SCRFD_2_5G}")
async def test_submit_stores_canonical_options_and_resolved_models(scheduler_for, tmp_path):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    shutil.copyfile(SCRFD_2_5G, models_dir / "scrfd_2.5g.onnx")
    scheduler = await scheduler_for(models_dir)
    raw = {"detector_score": "0.6", "color_correction": "false", "priority": 3}
    job = await scheduler.submit("alice", [SOURCE], TARGET, raw)
    expected = options_to_dict(parse_options(raw, extra_keys=SCHEDULER_OPTION_KEYS))
    stored = (await scheduler.store.get(job.id)).spec
    assert stored.options == expected == job.spec.options
    assert stored.options["detector_score"] == 0.6 and stored.options["swapper"] == "auto"
    assert job.priority == 3
    # ``auto``: the installed real SCRFD, pinned by the catalogue's checksum; no swapper
    # model is installed, so the built-in one (no file, no checksum).
    assert stored.models == (
        ModelRef("detector", "scrfd_2.5g", sha("scrfd_2.5g")),
        ModelRef("swapper", "classic", ""),
    )
    assert stored.limits == InputLimits(max_sources=2)
    assert stored.version == SPEC_VERSION


async def test_submit_without_models_dir_pins_named_models_by_catalogue(scheduler_for):
    scheduler = await scheduler_for(None)
    job = await scheduler.submit(
        "alice", [SOURCE], TARGET, {"swapper": "classic", "enhancer": "gfpgan_1.4"}
    )
    stored = (await scheduler.store.get(job.id)).spec
    assert stored.models == (
        ModelRef("detector", "det_10g", sha("det_10g")),
        ModelRef("swapper", "classic", ""),
        ModelRef("enhancer", "gfpgan_1.4", sha("gfpgan_1.4")),
    )
    assert stored.engine_options.swap.enhancer == ("gfpgan_1.4",)


async def test_submit_with_a_named_model_missing_locally_is_refused(scheduler_for, tmp_path):
    scheduler = await scheduler_for(tmp_path / "no-models")
    with pytest.raises(ModelUnavailable, match="models download gfpgan_1.4"):
        await scheduler.submit("alice", [SOURCE], TARGET, {"enhancer": "gfpgan_1.4"})
    assert scheduler.files.job_ids() == []


async def test_submit_trusts_options_parsed_already(scheduler_for, tmp_path):
    scheduler = await scheduler_for(tmp_path / "no-models")
    # parsed by a caller under its own limits: 100 is refused by ``parse_options``
    parsed = ParsedOptions(
        swap=SwapOptions(detect_every=100, swapper="classic", detector="mtcnn"),
        extra={"priority": 5, "batch_id": "b1"},
    )
    with pytest.raises(InvalidOptions, match="detect_every"):
        parse_options(options_to_dict(parsed), extra_keys=SCHEDULER_OPTION_KEYS)
    job = await scheduler.submit("alice", [SOURCE], TARGET, parsed)
    stored = (await scheduler.store.get(job.id)).spec
    assert stored.options == options_to_dict(parsed)
    assert stored.options["detect_every"] == 100
    assert stored.engine_options == parsed
    assert job.priority == 5
    assert stored.models == (ModelRef("detector", "mtcnn", ""), ModelRef("swapper", "classic", ""))


async def test_the_worker_receives_the_spec_with_its_models(scheduler_for, tmp_path):
    scheduler = await scheduler_for(tmp_path / "no-models")
    job = await scheduler.submit("alice", [SOURCE], TARGET, {"selector": "many"})
    executor = scheduler.executor
    assert isinstance(executor, HoldingExecutor)
    for _ in range(200):
        if executor.attempts:
            break
        await asyncio.sleep(0.02)
    [attempt] = executor.attempts
    received = JobSpec.from_dict(attempt.spec)
    assert attempt.job_id == job.id
    assert received == job.spec
    assert received.models == (
        ModelRef("detector", "mtcnn", ""),
        ModelRef("swapper", "classic", ""),
    )


# -- the worker -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recognizer_only(tmp_path_factory) -> FaceEngine:
    """A worker with the stand-in recognizer but no swapper model."""
    return FaceEngine(install_standins(tmp_path_factory.mktemp("models"), ("arcface_w600k_r50",)))


def request_for(spec: JobSpec, output: Path) -> JobRequest:
    return JobRequest(
        sources=[TOM_HANKS],
        target=T1,
        output=output,
        options=spec.engine_options,
        models=spec.models,
        content_threshold=None,
    )


def test_worker_without_a_model_the_spec_names_fails_and_never_substitutes(
    recognizer_only, tmp_path
):
    catalogue = recognizer_only.models.registry
    spec = JobSpec(
        sources=(StoredFile("source-1.png", "tom.png", 1),),
        target=StoredFile("target.jpg", "group.jpg", 1),
        options=options_to_dict(parse_options({})),
        output="result.jpg",
        models=(
            ModelRef("detector", "mtcnn", ""),
            ModelRef("swapper", "inswapper_128", catalogue["inswapper_128"].sha256),
            ModelRef("recognizer", "arcface_w600k_r50", catalogue["arcface_w600k_r50"].sha256),
        ),
    )
    output = tmp_path / "out.jpg"
    with pytest.raises(ModelUnavailable) as info:
        run_job(recognizer_only, request_for(JobSpec.from_json(spec.to_json()), output))
    assert "inswapper_128" in info.value.message
    assert "python app.py models download inswapper_128" in info.value.message
    assert not output.exists()
    # A spec without models (migrated from an older version) still resolves ``auto`` to
    # what is installed; that fallback is the migration path only.
    assert recognizer_only.resolve(spec.engine_options.swap).swapper == "classic"


def test_worker_refuses_a_model_whose_checksum_differs(recognizer_only, tmp_path):
    spec = JobSpec(
        options=options_to_dict(parse_options({"swapper": "classic"})),
        models=(
            ModelRef("detector", "mtcnn", ""),
            ModelRef("swapper", "classic", ""),
            ModelRef("enhancer", "gfpgan_1.4", "0" * 64),
        ),
    )
    with pytest.raises(ModelUnavailable, match="gfpgan_1.4.*pins sha256"):
        run_job(recognizer_only, request_for(spec, tmp_path / "out.jpg"))


def test_worker_runs_the_models_its_spec_names(tmp_path):
    manager = install_standins(tmp_path / "models", ("arcface_w600k_r50", "inswapper_128"))
    engine = FaceEngine(manager)
    parsed = parse_options({"selector": "many"})
    # resolved at "submit" against the same catalogue, then run as the spec names them
    models = resolve_models(parsed.swap, manager)
    assert [m.name for m in models] == ["mtcnn", "inswapper_128", "arcface_w600k_r50"]
    spec = JobSpec(options=options_to_dict(parsed), models=models, output="result.jpg")
    result = run_job(engine, request_for(JobSpec.from_json(spec.to_json()), tmp_path / "o.jpg"))
    assert (result.swapper, result.detector, result.kind) == ("inswapper_128", "mtcnn", "image")
    assert result.faces_swapped == 6
