"""The registry of task kinds a worker can run, looked up by name.

A task is a plain function ``fn(ctx: TaskContext) -> dict | None`` that runs in a
worker process, writes its output to ``ctx.output``, reports progress through
``ctx.progress`` and checks ``ctx.cancel``. ``ctx.state`` survives between jobs
of one worker, which is where warm model sessions live.

Each kind also says, in the server, how to check a submission before anything
is stored (``validate``) and what its output file is called (``output_name``).
A module declares its kinds in a ``TASK_KINDS`` tuple and is named in the
scheduler's ``task_modules``; ``load_kinds`` reads those tuples (the built-in
``scheduler.swap_task`` first), so there is no registry to fill by import.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidOptions
from engine.progress import CancelToken, ProgressCallback, ignore_progress
from scheduler.jobs import InputLimits, JobSpec, StoredFile

if TYPE_CHECKING:
    from engine.models.resolve import ModelRef
    from engine.options import ParsedOptions

# Option keys that belong to the scheduler and studio; the engine passes them through untouched.
SCHEDULER_OPTION_KEYS = ("priority", "callback_url", "consent", "idempotency_key", "batch_id")


@dataclass(frozen=True)
class Upload:
    """One submitted input as the validator sees it: the uploaded name and its first bytes."""

    role: str  # "source" | "target" | "reference"
    original: str
    size: int
    head: bytes
    path: Path | None = None  # set when the input is a file on disk
    data: bytes | None = None  # set when the input came as bytes


@dataclass(frozen=True)
class Submission:
    """Everything a kind's validator may look at before a job is stored."""

    sources: list[Upload]
    target: Upload | None
    reference: Upload | None
    options: dict[str, Any]
    limits: InputLimits = field(default_factory=InputLimits)
    references: list[Upload] = field(default_factory=list)  # every reference, in order


@dataclass
class TaskContext:
    """What a task function gets: its job, paths, progress, cancel token and warm state."""

    job_id: str
    run: int
    attempt: int
    device: str
    spec: JobSpec
    job_dir: Path
    output: Path
    workdir: Path
    settings: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    progress: ProgressCallback = ignore_progress
    cancel: CancelToken = field(default_factory=CancelToken)
    part: dict[str, Any] | None = None  # set for one part of a split job (see Attempt.part)

    def input_path(self, stored: StoredFile) -> Path:
        return self.job_dir / "inputs" / stored.name

    @property
    def sources(self) -> list[Path]:
        return [self.input_path(item) for item in self.spec.sources]

    @property
    def target(self) -> Path | None:
        return self.input_path(self.spec.target) if self.spec.target else None

    @property
    def reference(self) -> Path | None:
        return self.input_path(self.spec.reference) if self.spec.reference else None

    @property
    def references(self) -> list[Path]:
        """Every reference image, in upload order (the first is ``reference``)."""
        stored = self.spec.references or ((self.spec.reference,) if self.spec.reference else ())
        return [self.input_path(item) for item in stored]


TaskFn = Callable[[TaskContext], "dict[str, Any] | None"]
Validator = Callable[[Submission], None]
OutputNamer = Callable[[Submission], str]
# The models a job of this kind will run with, resolved once at submit for its spec,
# from its parsed options and the workers' settings (``models_dir``).
ModelResolver = Callable[["ParsedOptions", Mapping[str, Any]], "tuple[ModelRef, ...]"]


def default_output_name(submission: Submission) -> str:
    return "result.bin"


@dataclass(frozen=True)
class TaskKind:
    name: str
    fn: TaskFn
    validate: Validator | None = None
    output_name: OutputNamer = default_output_name
    option_keys: tuple[str, ...] = ()  # extra option keys this kind accepts
    models: ModelResolver | None = None  # None: the kind runs no models


BUILT_IN_MODULES = ("scheduler.swap_task",)


class TaskKinds:
    """The task kinds one process knows, by name (built once from explicit lists)."""

    def __init__(self, kinds: Iterable[TaskKind] = ()) -> None:
        self._kinds: dict[str, TaskKind] = {}
        for kind in kinds:
            if kind.name in self._kinds:
                raise ValueError(f"task kind {kind.name!r} is declared twice")
            self._kinds[kind.name] = kind

    def get(self, name: str) -> TaskKind:
        kind = self._kinds.get(name)
        if kind is None:
            known = ", ".join(sorted(self._kinds)) or "none"
            raise InvalidOptions(f"unknown job kind {name!r}; known kinds: {known}")
        return kind

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    @property
    def names(self) -> list[str]:
        return sorted(self._kinds)


@functools.cache
def load_kinds(modules: tuple[str, ...] = ()) -> TaskKinds:
    """The kinds declared by the built-in modules and ``modules``: each module lists its
    kinds in a ``TASK_KINDS`` tuple, so what a worker can run is read, not registered."""
    kinds: list[TaskKind] = []
    for name in dict.fromkeys((*BUILT_IN_MODULES, *modules)):
        module = importlib.import_module(name)
        declared = getattr(module, "TASK_KINDS", None)
        if declared is None:
            raise InvalidOptions(f"task module {name} declares no TASK_KINDS")
        kinds.extend(declared)
    return TaskKinds(kinds)


def get_task(name: str, modules: Iterable[str] = ()) -> TaskKind:
    """The kind ``name`` among the built-in kinds and those of ``modules``."""
    return load_kinds(tuple(modules)).get(name)
