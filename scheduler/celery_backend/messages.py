"""What travels between the studio and the workers besides files: task payloads,
outcomes and live events. Everything is JSON (the app accepts nothing else).

* ``TaskPayload`` – the argument of the one Celery task: which job, which attempt,
  what to run and the storage keys of its files.
* ``Outcome`` – the task's return value, stored in the result backend. Errors the
  job itself raises are outcomes too (state SUCCESS in Celery's terms); Celery's
  FAILURE state is left to what kills a job from outside (hard time limit,
  terminate, a lost pool process), which the executor maps separately.
* ``WorkerEvent`` – published on the events channel while a job runs (started,
  progress, finished). Pub/sub is fire-and-forget: events are for live display,
  the outcome in the result backend is the record.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from engine.progress import JobProgress

PREVIEW_QUALITY = 70


@dataclass
class TaskPayload:
    """One attempt as a worker receives it. ``run`` is the scheduler's fencing token:
    a delivery whose run is no longer the job's current run is stale and skipped."""

    job_id: str
    run: int
    attempt: int
    kind: str
    spec: dict[str, Any]
    # Storage keys (see storage.py) of the job directory and of the run's private
    # output file; each worker maps them to paths under its own mount.
    job_dir: str
    output: str
    # One part of a job the dispatcher split (``scheduler.executor.Attempt.part``).
    part: dict[str, Any] | None = None
    time_limit: float | None = None  # the hard limit this task was sent with (seconds)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskPayload:
        known = {f.name for f in fields(cls)}  # a message from an older studio may carry more
        return cls(**{key: value for key, value in data.items() if key in known})


SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELED = "canceled"


@dataclass
class Outcome:
    status: str  # SUCCEEDED | FAILED | CANCELED
    result: dict[str, Any] = field(default_factory=dict)
    code: str | None = None
    message: str | None = None
    permanent: bool = True
    worker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        return cls(**data)

    @classmethod
    def failure(
        cls, code: str, message: str, permanent: bool, worker: str | None = None
    ) -> Outcome:
        return cls(status=FAILED, code=code, message=message, permanent=permanent, worker=worker)


@dataclass
class WorkerEvent:
    """One live event from a worker. ``type`` is started | progress | finished.

    ``progress`` travels as ``JobProgress.to_dict()``; ``done``, ``total`` and
    ``message`` are the engine report's own details, for live display.
    """

    type: str
    task_id: str
    job_id: str
    run: int
    worker: str
    device: str | None = None
    pid: int | None = None
    segment: int | None = None
    progress: JobProgress | None = None
    done: int = 0
    total: int | None = None
    message: str | None = None
    preview_jpeg: str | None = None  # base64 JPEG, small

    def to_json(self) -> str:
        data = asdict(self)
        data["progress"] = None if self.progress is None else self.progress.to_dict()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerEvent:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}  # a newer worker's additions are skipped
        values = {key: value for key, value in data.items() if key in known}
        progress = values.get("progress")
        values["progress"] = JobProgress.from_dict(progress) if isinstance(progress, dict) else None
        return cls(**values)

    @property
    def preview(self) -> bytes | None:
        return base64.b64decode(self.preview_jpeg) if self.preview_jpeg else None
