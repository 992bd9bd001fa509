"""What a Space takes from this repository, checked without starting anything: the
README's front matter, the first-start install (on a Space only), and serve flags
from ``$FUSION_SERVE_ARGS`` (a Space starts ``python app.py`` with none)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import app
import cli

REPO = Path(app.__file__).resolve().parent


@pytest.fixture
def dispatched(monkeypatch) -> list:
    calls: list = []
    monkeypatch.setattr(cli, "dispatch", lambda command, argv: calls.append((command, argv)) or 0)
    monkeypatch.setattr(subprocess, "check_call", lambda *a, **k: calls.append(("pip", a[0])))
    return calls


def test_serve_flags_come_from_the_environment_before_the_command_line(monkeypatch, dispatched):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv(app.SERVE_ARGS_ENV, "--devices cuda:0 --auth 'admin:two words'")
    assert app.main(["--port", "7861"]) == 0
    assert app.main(["serve", "--devices", "cpu"]) == 0
    assert app.main(["keys", "list"]) == 0  # other commands take no serve flags
    assert dispatched == [
        ("serve", ["--devices", "cuda:0", "--auth", "admin:two words", "--port", "7861"]),
        ("serve", ["--devices", "cuda:0", "--auth", "admin:two words", "--devices", "cpu"]),
        ("keys", ["list"]),
    ]


def test_the_no_deps_install_runs_only_on_a_space_and_only_once(monkeypatch, dispatched):
    monkeypatch.delenv(app.SERVE_ARGS_ENV, raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    app.main([])
    assert [c for c in dispatched if c[0] == "pip"] == []
    monkeypatch.setenv("SPACE_ID", "fusion/fusion-studio")
    app.main([])  # both packages are installed here already: nothing to do
    assert [c for c in dispatched if c[0] == "pip"] == []
    monkeypatch.setattr(app.importlib.util, "find_spec", lambda name: None)
    app.main([])
    (pip,) = [c[1] for c in dispatched if c[0] == "pip"]
    assert pip[:5] == [sys.executable, "-m", "pip", "install", "--no-deps"]
    assert pip[-1].endswith("requirements-nodeps.txt")


def test_the_readme_front_matter_is_a_working_space_configuration():
    """A Space reads its SDK, Gradio version, Python version and entry point from here."""
    text = (REPO / "README.md").read_text()
    front = dict(
        line.split(":", 1) for line in text.split("---")[1].strip().splitlines() if ":" in line
    )
    front = {key.strip(): value.strip().strip('"') for key, value in front.items()}
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py"
    pins = (REPO / "requirements.txt").read_text()
    assert f"gradio=={front['sdk_version']}" in pins.split()
    # Spaces default to Python 3.10; the studio needs 3.11 (pyproject's requires-python).
    assert tuple(int(n) for n in front["python_version"].split(".")[:2]) >= (3, 11)
