"""What the OpenAPI document (``/api/v1/openapi.json``) says about the REST API.

The routes in ``studio.api`` return plain dicts built by ``studio.views``; the
pydantic models here only *describe* those answers (they are declared with
``responses=…``, never used to filter or re-serialise a response). Every status
a route can answer is declared with the shared ``Error`` schema, so generated
clients and fuzzers (``tests/test_security_schemathesis.py``) can trust the
document.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import options as engine_options
from scheduler.jobs import JobStatus
from scheduler.service import MAX_PRIORITY

# -- errors -------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable, machine-readable code, e.g. `invalid_options`.")
    message: str = Field(description="What went wrong, for a person.")


class Error(BaseModel):
    """Every error answer of the API has this shape."""

    error: ErrorDetail


ERROR_DESCRIPTIONS = {
    401: "No credentials, or an invalid or revoked API key.",
    403: "Refused: a request for another host name, or a cross-site browser request.",
    404: "No such job (or it belongs to someone else), or nothing at this address.",
    409: "The job is not in a state that allows this (e.g. it has no result yet, or is "
    "already at the highest or lowest priority).",
    410: "The result is no longer stored.",
    413: "The request body is too large.",
    415: "The request body is not of the expected media type.",
    422: "The request is malformed or a value is refused (the message says which).",
    429: "Too many queued jobs; retry later (see `Retry-After`).",
    503: "The server is starting or stopping; retry later (see `Retry-After`).",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for these error statuses, all with the ``Error`` schema."""
    return {
        status: {"model": Error, "description": ERROR_DESCRIPTIONS[status]} for status in statuses
    }


# -- jobs ---------------------------------------------------------------------------------

_STATUS = Literal["queued", "running", "succeeded", "failed", "canceled"]
assert set(_STATUS.__args__) == {s.value for s in JobStatus}  # type: ignore[attr-defined]
JOB_STATUSES = [status.value for status in JobStatus]


class JobError(BaseModel):
    code: str
    message: str


class JobInputs(BaseModel):
    sources: list[str] = Field(description="The uploaded names of the source images.")
    target: str | None = Field(description="The uploaded name of the target.")


class JobResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    faces_swapped: int | None = None
    frames: int | None = None
    swapper: str | None = None
    detector: str | None = None
    warnings: list[str] | None = None


class Job(BaseModel):
    """A job as the API shows it (the same object in SSE events and webhooks)."""

    model_config = ConfigDict(extra="allow")

    id: str
    status: _STATUS
    progress: float | None = Field(description="0..1 while running; 1 once succeeded.")
    stage: str | None
    eta_seconds: float | None
    fps: float | None
    error: JobError | None
    attempts: int = Field(ge=0)
    max_attempts: int = Field(ge=0)
    priority: int = Field(ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    kind: Literal["image", "video"] | None
    created_at: str | None = Field(json_schema_extra={"format": "date-time"})
    updated_at: str | None = Field(json_schema_extra={"format": "date-time"})
    started_at: str | None = Field(json_schema_extra={"format": "date-time"})
    finished_at: str | None = Field(json_schema_extra={"format": "date-time"})
    result_url: str | None = Field(description="Set once the job succeeded.")
    events_url: str
    preview_url: str
    batch_id: str | None
    inputs: JobInputs
    result: JobResult | None
    options: dict[str, Any]
    callback_url: str | None
    preview: int | None = Field(description="Version of the newest preview, if any.")


class JobList(BaseModel):
    jobs: list[Job]


class HistoryEntry(BaseModel):
    at: float = Field(description="Unix time.")
    event: str
    detail: dict[str, Any] | None


class WebhookDelivery(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    event_type: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: float | None
    delivered_at: float | None


class JobHistory(BaseModel):
    history: list[HistoryEntry]
    webhooks: list[WebhookDelivery]


class ShareLink(BaseModel):
    url: str = Field(description="The link; anyone who has it can fetch the result.")
    token: str = Field(description="The link's token (the last part of `url`).")
    expires_at: float = Field(description="Unix time.")


PRIORITY_BODY_SCHEMA = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "priority": {"type": "integer", "minimum": -MAX_PRIORITY, "maximum": MAX_PRIORITY}
            },
            "required": ["priority"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"move": {"type": "string", "enum": ["up", "down"]}},
            "required": ["move"],
            "additionalProperties": False,
        },
    ]
}


# -- service ------------------------------------------------------------------------------


class DeviceState(BaseModel):
    device: str
    slots: int
    busy: int
    free: int


class Health(BaseModel):
    status: Literal["ok", "starting"]
    instance: str
    queue_depth: int
    jobs: dict[str, int] = Field(description="Number of jobs per status.")
    devices: list[DeviceState]
    workers: list[dict[str, Any]]


class Me(BaseModel):
    owner: str
    kind: Literal["key", "browser", "user", "local"]
    key_name: str | None
    # null for an anonymous browser (its callbacks share the installation's secret)
    webhook_secret: str | None


class Watermark(BaseModel):
    model_config = ConfigDict(extra="allow")

    payload: str
    job_id: str | None


class C2paReport(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["trusted", "valid", "invalid", "absent"]


class VerifyReport(BaseModel):
    model_config = ConfigDict(extra="allow")

    file: str
    kind: Literal["image", "video"]
    watermark: Watermark | None
    metadata: dict[str, Any]
    c2pa: C2paReport
    notes: list[str]


# -- request bodies -----------------------------------------------------------------------

IMAGE_TYPES = ["image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff"]
VIDEO_TYPES = ["video/mp4", "video/webm", "video/quicktime", "video/x-matroska", "image/gif"]
RESULT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
}


def _choice(values: tuple[str, ...], description: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values), "description": description}


def _number(low: float, high: float, description: str) -> dict[str, Any]:
    return {"type": "number", "minimum": low, "maximum": high, "description": description}


def _model(fixed: tuple[str, ...], description: str) -> dict[str, Any]:
    """A model option: the built-in choices are listed as examples; a user catalogue adds
    its own names, so the schema asks only for a model name's form."""
    return {
        "type": "string",
        "pattern": "^[a-z0-9_.-]{1,64}$",
        "examples": list(fixed),
        "description": description,
    }


def _list(items: dict[str, Any], description: str) -> dict[str, Any]:
    """A list option: a JSON array (or, as on the command line, comma-separated text)."""
    return {
        "type": ["array", "string"],
        "items": items,
        "maxItems": 16,
        "description": description + " A JSON array, or comma-separated text.",
    }


def _integer(low: int, high: int, description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high, "description": description}


# The options of a job (``engine.options`` and ``scheduler.tasks.SCHEDULER_OPTION_KEYS``);
# tests/test_security_api.py checks that the names stay in step with the engine's.
JOB_OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Job options; every one is optional. Unknown names are refused (422).",
    "properties": {
        "swapper": _model(engine_options.SWAPPERS, "Face swapper: auto or a catalogue model."),
        "pixel_boost": {
            "type": ["string", "integer"],
            "description": "auto, native, or a crop size: a whole multiple of the swapper's "
            "native size up to 1024.",
        },
        "swapper_weight": _number(0.0, 1.0, "Identity weight: 0.5 = source as is."),
        "detector": _model(
            engine_options.DETECTORS, "Face detector: auto, scrfd, many or a model."
        ),
        "detector_size": {
            "type": ["integer", "null"],
            "enum": [*engine_options.DETECTOR_SIZES, None],
            "description": "Detector input size (the detector's default when null).",
        },
        "detector_score": _number(0.05, 0.99, "Minimum detection score."),
        "detector_angles": _list(
            {"type": "integer", "enum": list(engine_options.DETECTOR_ANGLES)},
            "Also detect faces turned by these angles.",
        ),
        "landmarker": _model(
            engine_options.LANDMARKERS, "68-point landmarker: auto, none or a model."
        ),
        "selector": _choice(engine_options.SELECTORS, "Which target faces to swap."),
        "face_order": _choice(engine_options.FACE_ORDERS, "Which face 'one' picks."),
        "face_ages": {
            "type": ["string", "null"],
            "pattern": "^\\s*\\d{1,3}\\s*-\\s*\\d{1,3}\\s*$",
            "description": "Only faces aged MIN-MAX years (needs fairface).",
        },
        "face_genders": _list(
            {"type": "string", "enum": list(engine_options.GENDERS)},
            "Only faces of these genders (needs fairface).",
        ),
        "reference_face_index": {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": 1000,
            "description": "With selector=reference and no reference image: the face to use.",
        },
        "reference_distance": _number(0.0, 2.0, "How close a face must be to the reference."),
        "enhancer": {
            "type": ["string", "array"],
            "items": {"type": "string", "pattern": "^[a-z0-9_.-]{1,64}$"},
            "maxItems": engine_options.MAX_ENHANCERS,
            "description": "Face enhancer chain: none, one model, or a list run in order.",
        },
        "enhancer_blend": {
            "type": ["number", "array"],
            "minimum": 0,
            "maximum": 1,
            "items": {"type": "number", "minimum": 0, "maximum": 1},
            "description": "Blend of the restored face: one value, or one per enhancer.",
        },
        "enhancer_fidelity": _number(0.0, 1.0, "Enhancer fidelity weight (CodeFormer)."),
        "frame_enhancer": _model(engine_options.FRAME_ENHANCERS, "Whole-frame upscaler."),
        "frame_enhancer_blend": _number(0.0, 1.0, "Blend of the upscaled frame."),
        "mask_types": _list(
            {"type": "string", "enum": list(engine_options.MASK_TYPES)},
            "Masks combined by their minimum.",
        ),
        "occluder": _model(engine_options.OCCLUDERS, "Occlusion model: auto, many or a model."),
        "parser": _model(engine_options.PARSERS, "Face parser for the region mask."),
        "mask_regions": _list(
            {"type": "string", "enum": list(engine_options.MASK_REGIONS)},
            "Regions the region mask keeps.",
        ),
        "mask_areas": _list(
            {"type": "string", "enum": list(engine_options.MASK_AREAS)},
            "Areas the area mask keeps.",
        ),
        "mask_blur": _number(0.0, 1.0, "Blur of the face mask's edge."),
        "mask_padding": {
            "type": ["number", "array"],
            "minimum": 0,
            "maximum": 0.5,
            "items": {"type": "number", "minimum": 0, "maximum": 0.5},
            "description": "Padding of the box mask: one value, or top, right, bottom, left.",
        },
        "color_correction": {"type": "boolean"},
        "blend_mode": _choice(engine_options.BLEND_MODES, "How the face is blended in."),
        "temporal_smoothing": _number(0.0, 0.95, "Video: smoothing of face positions."),
        "temporal_blend": _number(
            0.0, 0.9, "Video: blend each face with its previous frame's swap (damps flicker)."
        ),
        "face_map": {
            "type": ["array", "string"],
            "maxItems": 64,
            "items": {"type": "object"},
            "description": "A source per face: [{source: S, face: F | track: T | reference: R}]; "
            "S an uploaded source's index (or a list, averaged), faces counted left to right.",
        },
        "detect_every": _integer(1, 30, "Video: detect faces every N frames."),
        "quality": _integer(1, 100, "Image output quality (JPEG, WebP)."),
        "video_codec": _choice(engine_options.VIDEO_CODECS, "Video codec."),
        "crf": _integer(0, 51, "Video constant rate factor."),
        "preset": _choice(engine_options.PRESETS, "Video encoder preset."),
        "container": {
            "type": ["string", "null"],
            "enum": [*engine_options.CONTAINERS, None],
            "description": "Video container.",
        },
        "trim_start": {"type": ["number", "null"], "minimum": 0, "maximum": 86400},
        "trim_end": {"type": ["number", "null"], "minimum": 0, "maximum": 86400},
        "trim_mode": _choice(
            engine_options.TRIM_MODES,
            "cut: output only the trimmed range; keep: the whole clip, frames outside the "
            "range copied through unprocessed.",
        ),
        "segment_seconds": _number(0.5, 3600.0, "Video segment length for parallel work."),
        "keep_audio": {"type": "boolean"},
        "priority": _integer(-MAX_PRIORITY, MAX_PRIORITY, "Higher runs first."),
        "callback_url": {
            "type": "string",
            "format": "uri",
            "description": "Webhook for the job's final status (public http(s) addresses only).",
        },
        "consent": {
            "type": "boolean",
            "description": "You have the right to use the faces in these files.",
        },
        "idempotency_key": {"type": "string", "maxLength": 200},
        "batch_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    },
}


def submit_body(max_sources: int) -> dict[str, Any]:
    """The multipart body of ``POST /api/v1/jobs``."""
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["source", "target"],
                    "additionalProperties": False,
                    "properties": {
                        "source": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": max_sources,
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more images of the face to paste "
                            f"({', '.join(IMAGE_TYPES)}).",
                        },
                        "target": {
                            "type": "string",
                            "format": "binary",
                            "description": "The image or video whose faces are replaced.",
                        },
                        "reference": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Optional, one or more: images of faces in the "
                            "target to replace. The first is the reference selector's face; "
                            "face_map's reference entries count them from 0.",
                        },
                        "options": {
                            "type": "string",
                            "description": "A JSON object of job options (see contentSchema): "
                            'e.g. `{"selector": "many", "consent": true}`. Strict JSON: '
                            "no NaN or Infinity, integers of at most 20 digits, at most 32 "
                            "levels of nesting, at most 64 KiB.",
                            "contentMediaType": "application/json",
                            "contentSchema": JOB_OPTIONS_SCHEMA,
                        },
                    },
                },
                "encoding": {
                    "source": {"contentType": ", ".join(IMAGE_TYPES)},
                    "target": {"contentType": ", ".join(IMAGE_TYPES + VIDEO_TYPES)},
                    "reference": {"contentType": ", ".join(IMAGE_TYPES)},
                },
            }
        },
    }


VERIFY_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "additionalProperties": False,
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "An image or video to check.",
                    }
                },
            }
        }
    },
}

PRIORITY_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": PRIORITY_BODY_SCHEMA,
            "examples": {
                "set": {"value": {"priority": 5}},
                "move": {"value": {"move": "up"}},
            },
        }
    },
}


def job_links(job_id: str) -> dict[str, Any]:
    """OpenAPI ``links`` from an answer that names a job (``job_id`` is a runtime expression)."""
    targets = {
        "GetJob": "get_job",
        "DeleteJob": "delete_job",
        "CancelJob": "cancel_job",
        "RetryJob": "retry_job",
        "SetJobPriority": "set_job_priority",
        "JobEvents": "job_events",
        "JobResult": "job_result",
        "JobPreview": "job_preview",
        "JobHistory": "job_history",
        "ShareJob": "share_job",
    }
    return {
        name: {"operationId": operation, "parameters": {"job_id": job_id}}
        for name, operation in targets.items()
    }


SHARE_LINKS = {
    "SharedResult": {
        "operationId": "shared_result",
        "parameters": {"token": "$response.body#/token"},
    }
}


# -- Server-Sent Events -------------------------------------------------------------------

_PROGRESS_EVENT = {
    "type": "object",
    "required": ["id", "type", "status", "progress", "stage", "eta_seconds", "fps", "at"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "status": {"type": ["string", "null"]},
        "progress": {"type": ["number", "null"]},
        "stage": {"type": ["string", "null"]},
        "eta_seconds": {"type": ["number", "null"]},
        "fps": {"type": ["number", "null"]},
        "attempts": {"type": ["integer", "null"]},
        "preview": {"type": ["integer", "null"], "description": "The newest preview's version."},
        "at": {"type": "number", "description": "Unix time."},
    },
}
_EVENT_DATA = {
    "job": {"$ref": "#/components/schemas/Job"},
    "progress": _PROGRESS_EVENT,
    "deleted": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
    "shutdown": {
        "type": "object",
        "required": ["reconnect"],
        "properties": {"reconnect": {"type": "boolean"}},
    },
    "hello": {
        "type": "object",
        "required": ["instance", "owner_kind"],
        "properties": {"instance": {"type": "string"}, "owner_kind": {"type": "string"}},
    },
}


def event_stream(description: str, events: tuple[str, ...]) -> dict[str, Any]:
    """A ``text/event-stream`` answer whose events (``event`` names, JSON ``data``) are these."""
    one_event = {
        "oneOf": [
            {
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": {"const": name},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": _EVENT_DATA[name],
                    },
                    "id": {"type": "string"},
                    "retry": {"type": "integer"},
                },
            }
            for name in events
        ]
    }
    return {
        "description": f"A Server-Sent Events stream: {description}",
        "content": {"text/event-stream": {"schema": one_event}},
    }
