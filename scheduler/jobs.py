"""The job model and its life cycle (the statuses are a contract: docs/contracts.md).

``queued → running → succeeded | failed | canceled``; a retry of a running job
goes ``running → queued`` with ``attempts + 1``. Two more moves exist for
people rather than machines: cancelling a job that has not started
(``queued → canceled``) and asking again for a failed or canceled job
(``failed | canceled → queued``, a fresh set of attempts). Anything else
raises ``InvalidTransition``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from engine.errors import InvalidOptions
from engine.imageio import DEFAULT_MAX_PIXELS
from engine.models.resolve import ModelRef
from engine.options import ENGINE_OPTION_KEYS, ParsedOptions, options_to_dict, parse_options
from engine.progress import JobProgress
from scheduler.errors import InvalidTransition

# Version 2 added ``limits``; a version-1 spec is read with the limits of its time.
# Version 3 stores the options in canonical form (parsed once, at submit) and adds
# ``models``; a version-1 or 2 spec is migrated when read (see ``JobSpec.from_dict``).
SPEC_VERSION = 3


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.QUEUED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELED: frozenset({JobStatus.QUEUED}),
}


def check_transition(job_id: str, old: JobStatus | str, new: JobStatus | str) -> None:
    """Raise ``InvalidTransition`` unless the life cycle allows ``old → new``."""
    old, new = JobStatus(old), JobStatus(new)
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"job {job_id} is {old}; it cannot become {new}")


def can_transition(old: JobStatus | str, new: JobStatus | str) -> bool:
    return JobStatus(new) in TRANSITIONS[JobStatus(old)]


@dataclass(frozen=True)
class StoredFile:
    """An input copied into the job directory under a name the server chose.

    ``original`` is the uploaded file name, kept only as metadata: it is never
    used as a path.
    """

    name: str
    original: str
    size: int


@dataclass(frozen=True)
class InputLimits:
    """The operator's input limits in force when the job was submitted.

    They are checked once, at submit, and travel with the job: every later step (the
    worker's decoders included) honours these, never defaults of its own, so raising
    ``--max-megapixels`` or ``--max-sources`` takes effect everywhere.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_sources: int = 8

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> InputLimits:
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in (data or {}).items() if k in known})


@dataclass(frozen=True)
class JobSpec:
    """What to run, decided once at submit and trusted by the worker.

    - ``kind``: the task kind; ``sources``, ``target``, ``reference``: the stored inputs;
      ``output``: the output file's name.
    - ``options``: the flat options in canonical form (``engine.options.options_to_dict``
      of the value parsed at submit: every engine option with its value, then the
      scheduler's and the kind's pass-through keys). ``engine_options`` is the typed view;
      it never validates again.
    - ``limits``: the operator's input limits in force at submit.
    - ``models``: the concrete model of every model choice (``auto`` resolved), each
      with the catalogue's checksum (``""`` for a built-in model without a file). The
      worker runs exactly these or fails with ``ModelUnavailable``. None where nothing
      was resolved: a kind without models, or a spec of version 1 or 2 (migrated on
      read), whose worker still resolves ``auto`` itself (the migration path only).

    Stored as JSON (``to_json``) with its schema ``version``; for example::

        {"kind": "swap", "limits": {"max_pixels": 40000000, "max_sources": 8},
         "models": [{"name": "scrfd_2.5g", "role": "detector", "sha256": "2c07…"},
                    {"name": "classic", "role": "swapper", "sha256": ""}],
         "options": {"blend_mode": "alpha", "color_correction": true, …, "priority": 3},
         "output": "result.jpg", "reference": null,
         "sources": [{"name": "source-1.jpg", "original": "me.jpg", "size": 52011}],
         "target": {"name": "target.jpg", "original": "group.jpg", "size": 80412},
         "version": 3}
    """

    kind: str = "swap"
    sources: tuple[StoredFile, ...] = ()
    target: StoredFile | None = None
    reference: StoredFile | None = None
    # Every uploaded reference image, in order (face_map's ``reference`` entries index
    # them); ``reference`` is the first, which the ``reference`` selector uses.
    references: tuple[StoredFile, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    output: str = "result"
    limits: InputLimits = field(default_factory=InputLimits)
    models: tuple[ModelRef, ...] | None = None
    version: int = SPEC_VERSION

    @property
    def inputs(self) -> list[StoredFile]:
        files = list(self.sources)
        files += [f for f in (self.target, self.reference) if f is not None]
        files += [f for f in self.references if f not in files]
        return files

    @property
    def engine_options(self) -> ParsedOptions:
        """The typed options, rebuilt from the canonical form without validating again.

        Only a spec whose migration could not canonicalize its options (an older
        version's options the current parser refuses) keeps its old ``version``; those
        are parsed here, so the job fails with the parser's message rather than running
        with options nobody checked."""
        if self.version < SPEC_VERSION:
            return parse_options(self.options, extra_keys=_pass_through_keys(self.options))
        return ParsedOptions.from_trusted(self.options)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """Read a stored spec of any version; older ones are migrated to this one.

        Version 1 (no ``limits``) gets the default limits of its time; versions 1 and 2
        (options stored as submitted) get their options in canonical form and no
        ``models`` (their worker resolves ``auto`` as it did when they were queued)."""

        def stored(item: dict | None) -> StoredFile | None:
            return StoredFile(**item) if item else None

        version = int(data.get("version") or 1)
        options = dict(data.get("options") or {})
        raw_models = data.get("models")
        models = (
            tuple(ModelRef.from_dict(item) for item in raw_models)
            if raw_models is not None and version >= 3
            else None
        )
        if version < 3:
            try:
                options = options_to_dict(
                    parse_options(options, extra_keys=_pass_through_keys(options))
                )
                version = SPEC_VERSION
            except InvalidOptions:
                pass  # kept as stored; ``engine_options`` parses it and says why it fails
        return cls(
            kind=data.get("kind", "swap"),
            sources=tuple(StoredFile(**item) for item in data.get("sources", ())),
            target=stored(data.get("target")),
            reference=stored(data.get("reference")),
            references=tuple(StoredFile(**item) for item in data.get("references") or ()),
            options=options,
            output=data.get("output", "result"),
            limits=InputLimits.from_dict(data.get("limits")),
            models=models,
            version=version,
        )

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        return cls.from_dict(json.loads(text))


def _pass_through_keys(options: dict[str, Any]) -> tuple[str, ...]:
    """The keys of a stored spec's options that are not engine options (the scheduler's
    and the kind's): a stored spec was accepted with them, so they pass through."""
    return tuple(key for key in options if key not in ENGINE_OPTION_KEYS)


@dataclass(frozen=True)
class JobError:
    """Why a job (or one attempt of it) failed, in words a person understands."""

    code: str
    message: str
    permanent: bool = True


@dataclass
class Job:
    """One row of the job store. Times are Unix seconds (``time.time()``).

    ``attempts`` counts attempts that ended without success and were charged
    (crash, time limit, transient error); ``runs`` counts every start and is
    the fencing token of the current run: only the run holding it may finish
    the job or publish its output.
    """

    id: str
    owner: str
    spec: JobSpec
    status: JobStatus
    priority: int = 0
    # The progress columns, flat as stored; ``progress_record`` is them as one record.
    progress: float | None = None
    stage: str | None = None
    eta_seconds: float | None = None
    fps: float | None = None
    attempts: int = 0
    max_attempts: int = 3
    runs: int = 0
    error: JobError | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    run_after: float = 0.0
    lease_expires_at: float | None = None
    device: str | None = None
    time_limit: float | None = None
    idempotency_key: str | None = None
    result: dict[str, Any] | None = None
    input_bytes: int = 0
    output_bytes: int = 0

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def output_name(self) -> str | None:
        """The output file's name under the job's ``outputs/`` once the job succeeded."""
        return self.spec.output if self.status is JobStatus.SUCCEEDED else None

    @property
    def progress_record(self) -> JobProgress:
        """The stored progress columns as the record the rest of the scheduler passes on."""
        return JobProgress(self.progress, self.stage, self.eta_seconds, self.fps)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe view (for the REST API and the UI)."""
        data = asdict(self)
        data["status"] = str(self.status)
        data["kind"] = self.kind
        return data
