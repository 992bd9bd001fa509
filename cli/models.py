"""``python app.py models [list | download NAME]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.args import ArgumentParser
from engine.datadir import default_data_dir
from engine.models import cli as models_cli
from engine.models.manager import ModelManager, default_models_dir


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="app.py models", description="List or download face models.")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--models-dir", type=Path, default=None)
    # The directory flags are also accepted after the action (SUPPRESS keeps the parent's).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    common.add_argument("--models-dir", type=Path, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("list", parents=[common], help="installed and downloadable models")
    download = sub.add_parser(
        "download", parents=[common], help="download a model (resumes, verifies checksum)"
    )
    download.add_argument("name")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    manager = ModelManager(args.models_dir or default_models_dir(data_dir))
    if args.action == "download":
        models_cli.download_model(manager, args.name)
    else:
        models_cli.list_models(manager)
    return 0
