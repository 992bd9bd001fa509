"""Fusion Studio entry point.

    python app.py [serve flags]            serve the studio (UI, REST API, metrics)
    python app.py run --source F --target F --output F [options]
    python app.py models [list | download NAME]
    python app.py verify FILE [--json]
    python app.py keys create|list|revoke NAME
    python app.py worker --broker URL --devices cuda:0 [--slots N]

Bad input ends with exit status 2 and one ``error: …`` line on stderr.
"""

from __future__ import annotations

import sys

COMMANDS = ("serve", "run", "models", "verify", "keys", "worker")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else "serve"
    if argv and argv[0] == command:
        argv = argv[1:]
    from cli import dispatch

    return dispatch(command, argv)


if __name__ == "__main__":
    sys.exit(main())
