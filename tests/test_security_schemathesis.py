"""Schemathesis (``--checks all``, every phase) against a live studio: the OpenAPI document
tells the truth and no request, however malformed, gets a 500 or an undocumented answer.

The server runs as an operator runs it (``tests.live_studio.StudioProcess``) with an API key.
Before the run one real job is submitted and finished, so that the stateful phase has a
job to follow links from (``GET /jobs`` → get, history, result, share → shared result,
priority, cancel, retry, delete).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.assets import T1, TOM_HANKS
from tests.live_studio import StudioProcess, create_key

pytestmark = pytest.mark.timeout(300)

# Bounded so that the run stays well under two minutes on a 2-core machine.
MAX_EXAMPLES = 12
MAX_TIME = 55

# Per-operation settings, written to a schemathesis.toml for the run. Both concern the
# multipart upload operations only (submit_job, preview_swap, verify_file); every other
# operation gets every check with its defaults. (With `--checks all` on the command line a
# per-operation `enabled = false` is overridden, so these narrower `expected-statuses`
# are also the only per-operation knob.)
#
# positive_data_acceptance also accepts 422 there: a request that matches their schema
# (any bytes as a file) is rightly refused with 422 unless the bytes are a decodable
# image or video (verify) with a face in it (submit, preview; a preview also needs
# "consent": true inside the options text). JSON Schema cannot say "a JPEG with a face";
# claiming it could would be the lie.
#
# negative_data_rejection also accepts their success statuses (202, 200): Schemathesis
# decides whether a mutated multipart body became valid once serialised by validating
# the fields as sent against the schema, and that validation fails on binary parts
# (jsonschema_rs: "Unsupported type: 'bytes'"), so a body that is valid on the wire (e.g.
# `options` generated as the object {} and sent as the text "{}", or an extra field
# whose empty value sends no part) is reported as invalid data the server accepted.
# The refusals those mutations aim at (unknown fields, missing or repeated files, text
# where a file belongs, bad options) are asserted one by one in tests/test_security_api.py;
# a 5xx or an undocumented status still fails the run here.
#
# max-stream-events: the Server-Sent Events routes (/events, /jobs/{id}/events) are
# fuzzed too, not excluded: Schemathesis reads at most this many events of a stream and
# then closes it (the owner's stream never ends on its own), and validates each event
# against the documented event schemas.
CONFIG = """
max-stream-events = 2

[[operations]]
include-operation-id = ["submit_job", "preview_swap", "verify_file"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "401", "403", "404", "409", "422", "429",
]
checks.negative_data_rejection.expected-statuses = [
    "200", "202", "400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429",
    "5xx",
]
"""

# use_after_free is the one check left out. After `DELETE /jobs/{id}` every route of the
# job answers 404 except `GET /jobs/{id}/history`: by design the history outlives the
# job (it is the record of consent and of the deletion itself, kept until the retention
# period ends, and documented so in the OpenAPI document); the check treats any sub-path
# of a deleted resource as the resource. It cannot be turned off for that one operation
# while `--checks all` is given, so tests/test_security_api.py
# (test_deleted_jobs_are_gone_but_their_history_stays) checks use-after-delete of every
# other route of a job by hand.
EXCLUDED_CHECKS = "use_after_free"


def schemathesis_command() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "schemathesis.cli"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("fuzz-data")
    key = create_key(data, "fuzzer")
    process = StudioProcess(data, ["--max-upload-mb", "2"]).start()
    yield process, key
    process.stop()


def finished_job(url: str, key: str) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    files = [
        ("source", ("me.png", TOM_HANKS.read_bytes())),
        ("target", ("t1.jpg", T1.read_bytes())),
    ]
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        response = http.post("/api/v1/jobs", files=files, data={"options": '{"consent": true}'})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = http.get(f"/api/v1/jobs/{job_id}").json()["status"]
            if status in ("succeeded", "failed", "canceled"):
                assert status == "succeeded"
                return job_id
            time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_schemathesis_finds_nothing(server, tmp_path):
    process, key = server
    finished_job(process.url, key)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        *schemathesis_command(),
        "--config-file",
        str(config),
        "run",
        f"{process.url}/api/v1/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--header",
        f"Authorization: Bearer {key}",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_TIME),
        # One worker: with two threads, Hypothesis parses lambda sources with ast.parse
        # concurrently, which CPython 3.11 can fail ("AST constructor recursion depth
        # mismatch", a Schemathesis runtime error that says nothing of our server).
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--max-failures",
        "50",
        "--no-color",
    ]
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=MAX_TIME + 120
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"schemathesis failed:\n{output}\n\nserver log:\n{process.log()}"
    # It really ran every phase, on every operation of the document.
    summary = output.split("SUMMARY")[-1]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in summary, output
    operations = len(
        [
            op
            for item in httpx.get(f"{process.url}/api/v1/openapi.json").json()["paths"].values()
            for op in item
        ]
    )
    assert f"Tested: {operations}" in summary, output
