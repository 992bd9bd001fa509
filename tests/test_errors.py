"""One error hierarchy: every deliberate error is a ``FusionError`` that carries its own
``code``, ``permanent`` and ``http_status``, and the API renders it from those alone.

The table in docs/architecture.md ("Errors") is the documented contract; these tests
hold the classes, the table and the rendered answers to each other."""

from __future__ import annotations

import inspect
import pickle
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException as StarletteHTTPException

import engine.errors
import scheduler.errors
import studio.errors
from engine.errors import EngineError, FusionError, OutOfMemory
from scheduler.errors import SchedulerError
from scheduler.retry import INTERNAL, OUT_OF_MEMORY, error_from_exception
from studio.errors import ApiError, install_handlers

MODULES = (engine.errors, scheduler.errors, studio.errors)
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
# Codes that more than one class carries, on purpose (docs/architecture.md says why).
SHARED_CODES = {
    "not_found": {"JobNotFound", "NotFound"},
    "unavailable": {"SchedulerStopped", "Unavailable"},
    "internal_error": {"FusionError", "InternalError"},
    "too_large": {"TooLarge", "UploadTooLarge"},
}
# The one shared code whose classes answer with different statuses.
SPLIT_STATUS = {"too_large": {413, 422}}
# Codes clients already rely on (docs/contracts.md, the studio's tests): never renamed.
PUBLIC_CODES = {
    "InvalidInput": "invalid_input",
    "InvalidOptions": "invalid_options",
    "NoFaceFound": "no_face",
    "ModelUnavailable": "model_unavailable",
    "ContentPolicyViolation": "content_policy",
    "Canceled": "canceled",
    "TransientError": "transient",
    "EngineError": "engine_error",
    "QueueFull": "queue_full",
    "JobNotFound": "not_found",
    "InvalidTransition": "invalid_transition",
    "SchedulerStopped": "unavailable",
    "SchedulerError": "scheduler_error",
}


def _classes() -> dict[str, type[FusionError]]:
    found: dict[str, type[FusionError]] = {}
    for module in MODULES:
        for name, cls in vars(module).items():
            if (
                inspect.isclass(cls)
                and issubclass(cls, FusionError)
                and cls.__module__ == module.__name__
                and not name.startswith("_")
            ):
                assert name not in found, f"{name} is defined twice"
                found[name] = cls
    return found


CLASSES = _classes()


def _documented() -> dict[str, tuple[str, bool, int, bool]]:
    """The rows of the Errors table: class → (code, permanent, status, Retry-After)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    row = re.compile(
        r"^\| `(\w+)` \| \w+ \| `(\w+)` \| (yes|no) \| (\d{3})( \+ `Retry-After`)? \|$", re.M
    )
    rows = {m[1]: (m[2], m[3] == "yes", int(m[4]), bool(m[5])) for m in row.finditer(section)}
    assert rows, "docs/architecture.md has no Errors table"
    return rows


DOCUMENTED = _documented()


def _make(cls: type[FusionError], message: str = "something went wrong") -> FusionError:
    if cls is ApiError:
        return ApiError(cls.http_status, cls.code, message)
    return cls(message)


def _app() -> FastAPI:
    """A tiny app with the project's own handlers; ``/raise/{name}`` raises that class."""
    app = FastAPI()
    install_handlers(app)

    @app.get("/raise/{name}")
    async def raise_named(name: str, message: str = "something went wrong"):
        raise _make(CLASSES[name], message)

    @app.get("/http/{status}")
    async def raise_http(status: int):
        raise StarletteHTTPException(status, detail=f"framework said {status}")

    @app.get("/validated")
    async def validated(limit: int = Query(ge=1)):
        return {"limit": limit}

    @app.get("/boom")
    async def boom():
        raise RuntimeError("secret detail <object at 0xdeadbeef>")

    @app.get("/teapot")
    async def teapot():
        raise Teapot("short and stout")

    @app.get("/unauthorized")
    async def unauthorized():
        raise ApiError(401, "unauthorized", "send a key", {"WWW-Authenticate": "Bearer"})

    return app


class Teapot(EngineError):
    """A class no table anywhere knows: only its attributes can say how to answer it."""

    code = "teapot"
    http_status = 418


@pytest.fixture(scope="module")
def client():
    with TestClient(_app(), raise_server_exceptions=False) as http:
        yield http


# -- the classes ------------------------------------------------------------------------


def test_every_layer_has_its_classes():
    assert {"EngineError", "InvalidInput", "TransientError", "OutOfMemory"} <= set(CLASSES)
    assert {"SchedulerError", "QueueFull", "JobNotFound", "SchedulerStopped"} <= set(CLASSES)
    assert {"ApiError", "NotFound", "NotReady", "InternalError", "Unavailable"} <= set(CLASSES)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_each_class_declares_code_permanent_and_status(name):
    cls = CLASSES[name]
    assert isinstance(cls.code, str) and re.fullmatch(r"[a-z][a-z_]*[a-z]", cls.code), cls.code
    assert type(cls.permanent) is bool
    assert type(cls.http_status) is int and 400 <= cls.http_status <= 599
    assert cls.retry_after is None or (type(cls.retry_after) is int and cls.retry_after > 0)
    error = _make(cls)
    # The instance says the same as its class (ApiError's constructor must not lose them).
    assert (error.code, error.permanent, error.http_status) == (
        cls.code,
        cls.permanent,
        cls.http_status,
    )
    assert error.message == "something went wrong" == str(error)


def test_all_errors_are_one_hierarchy():
    for name, cls in CLASSES.items():
        assert issubclass(cls, FusionError) and issubclass(cls, Exception), name
        assert isinstance(_make(cls), FusionError), name
    assert isinstance(ApiError(404, "not_found", "x"), FusionError)
    assert isinstance(scheduler.errors.QueueFull("x"), SchedulerError)
    assert isinstance(scheduler.errors.QueueFull("x"), FusionError)
    assert isinstance(engine.errors.InvalidInput("x"), EngineError)
    assert isinstance(engine.errors.InvalidInput("x"), FusionError)
    # The layers stay apart: code that catches the engine's errors does not swallow the
    # scheduler's or the API's.
    assert not issubclass(SchedulerError, EngineError)
    assert not issubclass(ApiError, EngineError) and not issubclass(ApiError, SchedulerError)


def test_codes_are_unique_or_shared_on_purpose():
    by_code: dict[str, set[str]] = defaultdict(set)
    for name, cls in CLASSES.items():
        by_code[cls.code].add(name)
    # ApiError's own defaults are BadRequest's: it is the generic form of that answer.
    by_code["bad_request"].discard("ApiError")
    shared = {code: names for code, names in by_code.items() if len(names) > 1}
    assert shared == SHARED_CODES
    for code, names in shared.items():
        statuses = {CLASSES[name].http_status for name in names}
        if code in SPLIT_STATUS:
            assert statuses == SPLIT_STATUS[code], (code, statuses)
        else:
            assert len(statuses) == 1, (code, statuses)  # one code, one status


def test_public_codes_are_unchanged():
    for name, code in PUBLIC_CODES.items():
        assert CLASSES[name].code == code, name


def test_documented_table_matches_the_classes():
    actual = {
        name: (cls.code, cls.permanent, cls.http_status, cls.retry_after is not None)
        for name, cls in CLASSES.items()
    }
    assert actual == DOCUMENTED


def test_the_decided_statuses():
    expected = {
        "InvalidInput": (422, True),
        "InvalidOptions": (422, True),
        "NoFaceFound": (422, True),
        "ModelUnavailable": (422, True),
        "ContentPolicyViolation": (422, True),
        "Canceled": (409, True),
        "TransientError": (503, False),
        "QueueFull": (429, False),
        "JobNotFound": (404, True),
        "InvalidTransition": (409, True),
        "SchedulerStopped": (503, False),
    }
    for name, (status, permanent) in expected.items():
        assert (CLASSES[name].http_status, CLASSES[name].permanent) == (status, permanent), name


def test_api_error_names_its_own_status_and_code():
    error = ApiError(401, "unauthorized", "who are you", {"WWW-Authenticate": "Bearer"})
    assert (error.http_status, error.status, error.code) == (401, 401, "unauthorized")
    assert error.permanent is True and error.headers == {"WWW-Authenticate": "Bearer"}
    assert ApiError(429, "slow_down", "x").permanent is False
    assert ApiError(502, "bad_gateway", "x").permanent is False
    assert ApiError(409, "busy", "x", permanent=False).permanent is False
    assert studio.errors.NotReady("x").status == 409  # the old attribute name still reads


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_errors_survive_pickling(name):
    # Errors cross process boundaries (worker pipes, Celery results).
    error = _make(CLASSES[name], "carried across")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (copy.code, copy.permanent, copy.http_status, copy.message, copy.headers) == (
        error.code,
        error.permanent,
        error.http_status,
        error.message,
        error.headers,
    )


# -- rendering through the real handlers ------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_each_error_renders_with_its_documented_status_and_code(client, name):
    code, _, status, retry_after = DOCUMENTED[name]
    response = client.get(f"/raise/{name}", params={"message": f"{name} failed"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": {"code": code, "message": f"{name} failed"}}
    assert ("retry-after" in response.headers) is retry_after
    if retry_after:
        assert response.headers["retry-after"] == str(CLASSES[name].retry_after)


def test_rendering_reads_the_attributes_not_a_table(client):
    response = client.get("/teapot")
    assert response.status_code == 418
    assert response.json() == {"error": {"code": "teapot", "message": "short and stout"}}


def test_api_error_headers_are_sent(client):
    response = client.get("/unauthorized")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


def test_messages_lose_reprs_and_server_directories(client):
    temp = tempfile.gettempdir()
    message = f"cannot read {temp}/upload-1.part: <Thing object at 0x7f00aa>"
    response = client.get("/raise/InvalidInput", params={"message": message})
    assert response.status_code == 422
    text = response.json()["error"]["message"]
    assert "0x7f00aa" not in text and f"{temp}/" not in text
    assert "[temp dir]/upload-1.part" in text


@pytest.mark.parametrize("cls", studio.errors.STATUS_ERRORS, ids=lambda cls: cls.__name__)
def test_framework_errors_answer_as_the_class_of_their_status(client, cls):
    response = client.get(f"/http/{cls.http_status}")
    assert response.status_code == cls.http_status
    assert response.json()["error"] == {
        "code": cls.code,
        "message": f"framework said {cls.http_status}",
    }
    assert ("retry-after" in response.headers) is (cls.retry_after is not None)


def test_framework_status_without_a_class(client):
    assert client.get("/http/418").json()["error"]["code"] == "client_error"
    assert client.get("/http/507").json()["error"]["code"] == "server_error"
    assert client.get("/http/507").status_code == 507


def test_framework_routing_and_validation_errors(client):
    missing = client.get("/no/such/route")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.post("/teapot")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["allow"]
    invalid = client.get("/validated", params={"limit": 0})
    assert invalid.status_code == 422
    error = invalid.json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith("query.limit")


def test_an_unexpected_exception_is_still_an_internal_error(client):
    response = client.get("/boom")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    assert "secret" not in response.text and "RuntimeError" not in response.text
    reference = r"the server could not answer this request \(error reference \w+\)"
    assert re.fullmatch(reference, error["message"])


# -- the scheduler's view of the same errors --------------------------------------------


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_job_errors_take_code_and_permanence_from_the_class(name):
    cls = CLASSES[name]
    error = error_from_exception(_make(cls, "it failed"))
    assert (error.code, error.message, error.permanent) == (cls.code, "it failed", cls.permanent)


def test_job_errors_of_exceptions_outside_the_hierarchy():
    oom = error_from_exception(MemoryError())
    assert (oom.code, oom.permanent) == (OUT_OF_MEMORY, False) == (OutOfMemory.code, False)
    device = error_from_exception(RuntimeError("CUDA error: out of memory"))
    assert device.code == "out_of_memory" and not device.permanent
    assert "out of memory" in device.message
    other = error_from_exception(ValueError("bad value"))
    assert (other.code, other.permanent) == (INTERNAL, False) == ("internal_error", False)
    assert other.message == "internal error (ValueError: bad value)"
    # A permanent engine error is never retried, a transient one is.
    assert error_from_exception(engine.errors.NoFaceFound("no face")).permanent is True
    assert error_from_exception(engine.errors.TransientError("busy")).permanent is False
