"""Command-line front end: one module per command, one error policy for all.

Every ``EngineError`` (bad input, bad options, missing model…) becomes exit
status 2 with a single ``error: …`` line on stderr and no traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

from engine.errors import EngineError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

_MODULES = {
    "serve": "cli.serve",
    "run": "cli.run",
    "models": "cli.models",
    "verify": "cli.verify",
    "keys": "cli.keys",
    "worker": "cli.worker",
}


def dispatch(command: str, argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(_MODULES[command])
    try:
        return int(module.main(argv) or 0)
    except EngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
