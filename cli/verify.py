"""``python app.py verify FILE [--json]``: provenance check of an output (docs/contracts.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.args import ArgumentParser
from engine.datadir import default_data_dir
from engine.provenance.verify import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="app.py verify", description="Check a file's watermark, metadata and C2PA manifest."
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="this installation's data dir (its keys and job registry)",
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(args.file, args.data_dir or default_data_dir(), as_json=args.json)
