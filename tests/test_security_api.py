"""A hostile visitor against the REST API of a live studio on 127.0.0.1.

Every attack class has its own test: numbers JSON should not carry (NaN, Infinity,
1e400, 5,000-digit integers) and absurd nesting, in a submission's options and in the
priority route's body; framework errors (broken multipart, wrong media types, wrong
methods, unknown paths); Python reprs or server paths in messages; secrets in the log.
Every refusal must be our error object ``{"error": {"code", "message"}}``: never a 500,
never ``{"detail": …}``, never plain text.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.assets import T1, TOM_HANKS
from tests.live_studio import StudioProcess, create_key

pytestmark = pytest.mark.timeout(240)

HUGE_INT = "9" * 5000
DEEP_ARRAY = "[" * 20_000 + "]" * 20_000
DEEP_OBJECT = '{"a":' * 20_000 + "1" + "}" * 20_000
BOUNDARY = "fuzzboundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("hostile-data")
    keys = {name: create_key(data, name) for name in ("alice", "bob")}
    process = StudioProcess(data, ["--max-upload-mb", "2"]).start()
    yield process, keys, data
    process.stop()


def client(server, name: str | None = "alice") -> httpx.Client:
    process, keys, _ = server
    headers = {"Authorization": f"Bearer {keys[name]}"} if name else {}
    return httpx.Client(base_url=process.url, headers=headers, timeout=30)


def images() -> list[tuple[str, tuple[str, bytes]]]:
    return [
        ("source", ("me.png", TOM_HANKS.read_bytes())),
        ("target", ("t1.jpg", T1.read_bytes())),
    ]


@pytest.fixture(scope="module")
def finished_job(server) -> str:
    """One succeeded job of alice's."""
    with client(server) as http:
        response = http.post("/api/v1/jobs", files=images(), data={"options": "{}"})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = http.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "canceled"):
                assert job["status"] == "succeeded", job
                return job_id
            time.sleep(0.2)
    raise AssertionError("the job did not finish")


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict:
    """``response`` is our error object with this status (and code); returns the error."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message"}, error
    assert isinstance(error["message"], str) and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = BOUNDARY) -> bytes:
    """A multipart body written by hand, so that it may be as broken as a test needs."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode("latin-1")
        out += content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


# -- bad numbers ---------------------------------------------------------------------------

BAD_OPTIONS = {
    "priority NaN": '{"priority": NaN}',
    "priority Infinity": '{"priority": Infinity}',
    "priority -Infinity": '{"priority": -Infinity}',
    "priority 1e400": '{"priority": 1e400}',
    "priority 5000 digits": f'{{"priority": {HUGE_INT}}}',
    "priority 21 digits": '{"priority": 100000000000000000000}',
    "mask_blur -1e400": '{"mask_blur": -1e400}',
    "idempotency_key NaN": '{"idempotency_key": NaN}',
    "nested arrays 20000 deep": DEEP_ARRAY,
    "nested options 20000 deep": f'{{"selector": {DEEP_ARRAY}}}',
    "nested objects 20000 deep": DEEP_OBJECT,
}


@pytest.mark.parametrize("options", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_numbers_and_nesting_in_options_are_422(server, options):
    with client(server, "bob") as http:
        before = len(http.get("/api/v1/jobs").json()["jobs"])
        response = http.post("/api/v1/jobs", files=images(), data={"options": options})
        error = assert_error(response, 422)
        assert error["code"] in ("invalid_options", "invalid_input"), error
        assert len(http.get("/api/v1/jobs").json()["jobs"]) == before  # nothing stored


def test_options_refusals_say_what_was_wrong(server):
    with client(server, "bob") as http:
        cases = {
            '{"priority": NaN}': "NaN",
            '{"priority": 1e400}': "too large",
            f'{{"priority": {HUGE_INT}}}': "more than 20 digits",
            DEEP_ARRAY: "nested too deeply",
        }
        for options, words in cases.items():
            response = http.post("/api/v1/jobs", files=images(), data={"options": options})
            assert words in assert_error(response, 422, "invalid_options")["message"]


BAD_PRIORITY_BODIES = {
    "NaN": '{"priority": NaN}',
    "Infinity": '{"priority": Infinity}',
    "-Infinity": '{"priority": -Infinity}',
    "1e400": '{"priority": 1e400}',
    "5000 digits": f'{{"priority": {HUGE_INT}}}',
    "-5000 digits": f'{{"priority": -{HUGE_INT}}}',
    "out of range": '{"priority": 1001}',
    "fraction": '{"priority": 2.5}',
    "string": '{"priority": "5"}',
    "boolean": '{"priority": true}',
    "null": '{"priority": null}',
    "both keys": '{"priority": 1, "move": "up"}',
    "bad move": '{"move": "sideways"}',
    "empty object": "{}",
    "array": "[1]",
    "nested 20000 deep": DEEP_ARRAY,
    "nested objects 8000 deep": '{"a":' * 8000 + "1" + "}" * 8000,
    "not JSON": '{"priority": ',
    "not UTF-8": b'{"priority": "\xff"}',
}


@pytest.mark.parametrize("body", BAD_PRIORITY_BODIES.values(), ids=BAD_PRIORITY_BODIES.keys())
def test_bad_priority_bodies_are_422(server, finished_job, body):
    with client(server) as http:
        before = http.get(f"/api/v1/jobs/{finished_job}").json()["priority"]
        response = http.post(
            f"/api/v1/jobs/{finished_job}/priority",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert_error(response, 422, "invalid_options")
        assert http.get(f"/api/v1/jobs/{finished_job}").json()["priority"] == before


def test_priority_body_media_type_and_size(server, finished_job):
    with client(server) as http:
        url = f"/api/v1/jobs/{finished_job}/priority"
        plain = http.post(url, content='{"priority": 3}', headers={"content-type": "text/plain"})
        assert_error(plain, 415, "unsupported_media_type")
        form = http.post(url, data={"priority": "3"})
        assert_error(form, 415, "unsupported_media_type")
        huge = http.post(
            url,
            content=b'{"priority": 3' + b" " * (1 << 20) + b"}",
            headers={"content-type": "application/json"},
        )
        assert_error(huge, 413, "too_large")
        good = http.post(url, json={"priority": 7})
        assert good.status_code == 200 and good.json()["priority"] == 7
        moved = http.post(url, json={"move": "down"})
        assert moved.status_code == 200 and moved.json()["priority"] == 6
        for bound, move in ((1000, "up"), (-1000, "down")):  # no step past the ends
            assert http.post(url, json={"priority": bound}).json()["priority"] == bound
            assert_error(http.post(url, json={"move": move}), 409, "priority_limit")
            assert http.get(f"/api/v1/jobs/{finished_job}").json()["priority"] == bound
        http.post(url, json={"priority": 0})


# -- framework errors ----------------------------------------------------------------------


def test_multipart_without_boundary(server):
    with client(server) as http:
        response = http.post(
            "/api/v1/jobs", content=b"garbage", headers={"content-type": "multipart/form-data"}
        )
        assert "boundary" in assert_error(response, 422, "invalid_input")["message"]
        verify = http.post(
            "/api/v1/verify", content=b"x", headers={"content-type": "multipart/form-data"}
        )
        assert_error(verify, 422, "invalid_input")


@pytest.mark.parametrize("name", ["a\r\nb.jpg", "a\rb.jpg", "a\nContent-Type: text/html.jpg"])
def test_cr_lf_in_a_file_name(server, name):
    body = multipart([("source", name, b"x"), ("target", "t.jpg", b"x")])
    with client(server) as http:
        response = http.post("/api/v1/jobs", content=body, headers=MULTIPART)
        assert_error(response, 422, "invalid_input")


def test_too_many_parts_fields_and_too_large_parts(server):
    with client(server) as http:
        files = multipart([("source", f"{n}.jpg", b"x") for n in range(40)])
        too_many_files = http.post("/api/v1/jobs", content=files, headers=MULTIPART)
        assert "Too many files" in assert_error(too_many_files, 422, "invalid_input")["message"]
        fields = multipart([(f"f{n}", None, b"x") for n in range(40)])
        too_many_fields = http.post("/api/v1/jobs", content=fields, headers=MULTIPART)
        assert "Too many fields" in assert_error(too_many_fields, 422, "invalid_input")["message"]
        big_field = multipart([("options", None, b"{" + b" " * (100 * 1024) + b"}")])
        too_large = http.post("/api/v1/jobs", content=big_field, headers=MULTIPART)
        assert "exceeded maximum size" in assert_error(too_large, 422, "invalid_input")["message"]
        unknown = http.post(
            "/api/v1/jobs", content=multipart([("x", None, b"1")]), headers=MULTIPART
        )
        assert "unknown form field" in assert_error(unknown, 422, "invalid_input")["message"]


def test_wrong_content_type(server):
    with client(server) as http:
        for media in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
            response = http.post("/api/v1/jobs", content=b"{}", headers={"content-type": media})
            assert_error(response, 415, "unsupported_media_type")
        missing = http.post("/api/v1/jobs", content=b"{}")
        assert_error(missing, 415, "unsupported_media_type")
        verify = http.post("/api/v1/verify", json={"file": "x"})
        assert_error(verify, 415, "unsupported_media_type")


def test_wrong_methods_are_405_with_allow(server, finished_job):
    with client(server) as http:
        cases = [
            ("PUT", "/api/v1/jobs", {"GET", "POST"}),
            ("PATCH", f"/api/v1/jobs/{finished_job}", {"GET", "DELETE"}),
            ("PATCH", "/api/v1/jobs/no-such-job", {"GET", "DELETE"}),
            ("GET", f"/api/v1/jobs/{finished_job}/cancel", {"POST"}),
            ("DELETE", "/api/v1/health", {"GET"}),
            ("OPTIONS", "/api/v1/jobs", {"GET", "POST"}),
            ("TRACE", "/api/v1/me", {"GET"}),
            ("QUERY", "/api/v1/jobs", {"GET", "POST"}),
            ("PUT", "/api/v1/openapi.json", {"GET"}),
        ]
        for method, path, allowed in cases:
            response = http.request(method, path)
            assert_error(response, 405, "method_not_allowed")
            advertised = {m.strip() for m in response.headers["allow"].split(",")}
            assert advertised - {"HEAD"} == allowed, (method, path, response.headers["allow"])
        # The job was not touched by any of it.
        assert http.get(f"/api/v1/jobs/{finished_job}").status_code == 200


def test_unknown_paths_are_404(server):
    with client(server) as http:
        for method, path in (
            ("GET", "/api/v1/nothing-here"),
            ("POST", "/api/v1/jobs/x/y/z"),
            ("DELETE", "/api/v1/"),
            ("GET", "/api/v1/jobs/abc/%ff"),
        ):
            assert_error(http.request(method, path), 404, "not_found")
        # Outside the API (Gradio's part of the app) the answer has our shape too.
        outside = http.get("/no-such-page-anywhere")
        assert outside.status_code == 404
        assert outside.json()["error"]["code"] == "not_found"


def test_malformed_parameters_and_headers(server):
    with client(server) as http:
        for params in (
            {"limit": "abc"},
            {"limit": "0"},
            {"limit": "9" * 5000},
            {"offset": "9" * 30},
            {"offset": "-1"},
            {"status": "done"},
        ):
            assert_error(http.get("/api/v1/jobs", params=params), 422, "invalid_request")
        for hours in ("nan", "inf", "-1", "0", "1e400", "abc"):
            response = http.post("/api/v1/jobs/x/share", params={"hours": hours})
            assert_error(response, 422, "invalid_request")
        long_key = http.post("/api/v1/jobs", files=images(), headers={"Idempotency-Key": "k" * 201})
        assert_error(long_key, 422, "invalid_request")
        bad_auth = http.get("/api/v1/jobs", headers={"Authorization": "Bearer \x01\x7f"})
        assert_error(bad_auth, 401, "unauthorized")


def test_a_share_link_of_a_split_second_is_still_a_link(server, finished_job):
    with client(server) as http:
        for hours in ("1e-9", "0.0001", "5e-324"):
            response = http.post(f"/api/v1/jobs/{finished_job}/share", params={"hours": hours})
            assert response.status_code == 200, response.text
            link = response.json()
            assert link["expires_at"] >= time.time() + 50
            assert httpx.get(link["url"]).status_code == 200


# -- what messages may say -----------------------------------------------------------------


def test_no_python_reprs_or_server_paths_in_messages(server):
    process, keys, data_dir = server
    text, file = None, "x.jpg"
    cases = {
        "/api/v1/jobs": [
            [("source", text, b"not a file"), ("target", file, b"x")],
            [("source", file, b"x"), ("target", text, b"not a file")],
            [("source", file, b"x"), ("target", file, b"x"), ("reference", text, b"t")],
            [("source", file, b"x"), ("target", file, b"x"), ("options", "o.json", b"{}")],
            [("options", "o.json", b"{}")],
            [("source", "", b"x"), ("target", "", b"x")],
        ],
        "/api/v1/verify": [
            [("file", text, b"not a file")],
            [("file", "", b"\x00\x01 not an image")],
            [("file", file, b"")],
        ],
    }
    messages = []
    with client(server) as http:
        for path, bodies in cases.items():
            for parts in bodies:
                response = http.post(path, content=multipart(parts), headers=MULTIPART)
                messages.append(assert_error(response, 422)["message"])
        # Gradio's own upload route, with a text field where it expects files.
        gradio = http.post("/gradio_api/upload", content=multipart(cases["/api/v1/verify"][0]))
        assert gradio.status_code >= 400
        messages.append(gradio.json()["error"]["message"])
    for message in messages:
        assert "object at 0x" not in message and "<" not in message, message
        assert str(data_dir) not in message and ".part" not in message, message
        assert "/tmp" not in message and "Traceback" not in message, message


def test_engine_messages_name_no_server_directory(server):
    process, keys, data_dir = server
    with client(server, "bob") as http:
        data = {"options": '{"swapper": "inswapper_128"}'}  # a model this server lacks
        response = http.post("/api/v1/jobs", files=images(), data=data)
        error = assert_error(response, 422, "model_unavailable")
    assert "python app.py models download inswapper_128" in error["message"]
    assert str(data_dir) not in error["message"] and "/tmp" not in error["message"]
    assert "[models dir]" in error["message"], error


def test_an_unexpected_exception_is_a_500_error_object(caplog):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from studio.errors import install_handlers

    app = FastAPI()
    install_handlers(app)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("secret detail at /srv/data/keys <object at 0xdeadbeef>")

    with caplog.at_level(logging.ERROR, logger="studio.api"):
        response = TestClient(app, raise_server_exceptions=False).get("/boom")
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert "/srv" not in response.text and "0xdeadbeef" not in response.text
    assert any("RuntimeError" in record.getMessage() for record in caplog.records)
    reference = error["message"].rsplit(" ", 1)[-1].rstrip(")")
    assert any(reference in record.getMessage() for record in caplog.records)


def test_a_job_without_a_preview_answers_204_not_404(server, finished_job):
    with client(server) as http:
        job = http.get(f"/api/v1/jobs/{finished_job}").json()
        response = http.get(job["preview_url"])
        if job["preview"] is None:
            assert response.status_code == 204 and response.content == b""
        else:
            assert response.status_code == 200 and response.content[:3] == b"\xff\xd8\xff"
    with client(server, "bob") as other:  # someone else's job is still not there at all
        assert_error(other.get(f"/api/v1/jobs/{finished_job}/preview"), 404, "not_found")


def test_deleted_jobs_are_gone_but_their_history_stays(server):
    with client(server) as http:
        response = http.post("/api/v1/jobs", files=images(), data={"options": "{}"})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        deleted = http.delete(f"/api/v1/jobs/{job_id}")
        assert deleted.status_code == 204
        for method, suffix in (
            ("GET", ""),
            ("GET", "/result"),
            ("GET", "/preview"),
            ("GET", "/events"),
            ("POST", "/cancel"),
            ("POST", "/retry"),
            ("POST", "/share"),
            ("DELETE", ""),
        ):
            gone = http.request(method, f"/api/v1/jobs/{job_id}{suffix}")
            assert_error(gone, 404, "not_found")
        priority = http.post(f"/api/v1/jobs/{job_id}/priority", json={"priority": 1})
        assert_error(priority, 404, "not_found")
        # By design the history outlives the job (it records consent and the deletion).
        history = http.get(f"/api/v1/jobs/{job_id}/history").json()["history"]
        assert history[-1]["event"] == "deleted"
    with client(server, "bob") as other:
        assert_error(other.get(f"/api/v1/jobs/{job_id}/history"), 404, "not_found")


# -- the log -------------------------------------------------------------------------------


def test_share_tokens_and_keys_stay_out_of_the_log(server, finished_job):
    process, keys, _ = server
    with client(server) as http:
        link = http.post(f"/api/v1/jobs/{finished_job}/share").json()
        token = link["token"]
        assert link["url"].endswith(f"/api/v1/shared/{token}")
    cookie = "A" * 43
    with httpx.Client(cookies={"fs_owner": cookie}) as anonymous:
        shared = anonymous.get(link["url"])
        assert shared.status_code == 200 and shared.content[:3] == b"\xff\xd8\xff"
        assert anonymous.get(link["url"] + "x").status_code == 404
        anonymous.get(f"{process.url}/api/v1/jobs?token={token}&key={keys['bob']}")
    deadline = time.monotonic() + 10
    log = ""
    while time.monotonic() < deadline:  # the access log line is written after the answer
        log = Path(process.log_path).read_text(errors="replace")
        if log.count("/api/v1/shared/[redacted]") >= 2:
            break
        time.sleep(0.1)
    assert log.count("/api/v1/shared/[redacted]") >= 2, log[-3000:]
    secret_parts = [token, token.split(".")[0], token.split(".")[1], cookie]
    secret_parts += [keys["alice"], keys["bob"], keys["bob"][4:]]
    for secret in secret_parts:
        assert secret not in log, secret


def test_log_lines_redact_secrets_in_messages_extras_and_exceptions(capsys):
    from studio.logs import JsonFormatter, RedactFilter, TextFormatter

    secrets = {
        "share": "/api/v1/shared/c2VjcmV0LjE3MDAwMDAwMDA.c2lnbmF0dXJl",
        "key": "fsk_T0pSecretKeyValue_0123456789abcdef",
        "bearer": "Authorization: Bearer abc.def-ghi",
        "cookie": "Cookie: fs_owner=cookievaluecookievaluecookievalue12; theme=dark",
        "owner": "fs_owner=anothercookievalueanothercookievalue",
        "webhook": "whsec_c2VjcmV0c2VjcmV0c2VjcmV0",
    }
    for formatter in (TextFormatter(), JsonFormatter()):
        for name, secret in secrets.items():
            try:
                raise ValueError(f"failed with {secret}")
            except ValueError:
                record = logging.LogRecord(
                    "uvicorn.access",
                    logging.INFO,
                    __file__,
                    1,
                    "%s - %s",
                    ("1.2.3.4", secret),
                    None,
                )
                record.exc_info = sys.exc_info()
            record.url = secret
            RedactFilter().filter(record)
            line = formatter.format(record)
            if isinstance(formatter, JsonFormatter):
                json.loads(line)  # still one valid JSON object
            for part in ("c2VjcmV0LjE3", "T0pSecret", "abc.def", "cookievalue", "c2VjcmV0c2Vj"):
                assert part not in line, (name, line)
            assert "[redacted]" in line, (name, line)


# -- the OpenAPI document ------------------------------------------------------------------


def test_openapi_declares_errors_enums_bodies_and_links(server):
    process, _, _ = server
    spec = httpx.get(f"{process.url}/api/v1/openapi.json").json()
    assert "Error" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)
            if path not in ("/api/v1/health", "/api/v1/shared/{token}"):
                assert "401" in operation["responses"], (path, method)
    submit = spec["paths"]["/api/v1/jobs"]["post"]
    links = submit["responses"]["202"]["links"]
    for operation_id in ("get_job", "delete_job", "cancel_job", "retry_job", "set_job_priority"):
        assert operation_id in {link["operationId"] for link in links.values()}
    body = submit["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert body["source"]["items"]["format"] == "binary"
    assert body["options"]["contentMediaType"] == "application/json"
    listing = spec["paths"]["/api/v1/jobs"]["get"]["parameters"]
    status = next(p for p in listing if p["name"] == "status")
    assert {"$ref": "#/components/schemas/JobStatus"} in status["schema"]["anyOf"]
    statuses = ["queued", "running", "succeeded", "failed", "canceled"]
    assert spec["components"]["schemas"]["JobStatus"]["enum"] == statuses
    assert spec["components"]["schemas"]["Job"]["properties"]["status"]["enum"] == statuses
    limit = next(p for p in listing if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 500)


def test_documented_option_names_are_the_engines():
    import dataclasses

    from engine.options import OutputOptions, SwapOptions
    from scheduler.tasks import SCHEDULER_OPTION_KEYS
    from studio.openapi import JOB_OPTIONS_SCHEMA

    engine = {f.name for f in dataclasses.fields(SwapOptions)}
    engine |= {f.name for f in dataclasses.fields(OutputOptions)}
    assert set(JOB_OPTIONS_SCHEMA["properties"]) == engine | set(SCHEDULER_OPTION_KEYS)


def test_job_answers_conform_to_the_documented_schema(server, finished_job):
    jsonschema = pytest.importorskip("jsonschema")
    process, _, _ = server
    spec = httpx.get(f"{process.url}/api/v1/openapi.json").json()
    with client(server) as http:
        job = http.get(f"/api/v1/jobs/{finished_job}").json()
        listing = http.get("/api/v1/jobs").json()
        history = http.get(f"/api/v1/jobs/{finished_job}/history").json()
        me = http.get("/api/v1/me").json()
        health = http.get("/api/v1/health").json()
    for name, value in (
        ("Job", job),
        ("JobList", listing),
        ("JobHistory", history),
        ("Me", me),
        ("Health", health),
    ):
        schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator)
