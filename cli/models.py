"""``python app.py models [list | download NAME | selftest [NAME]]``.

``selftest`` (``engine.models.selftest``) is the first thing to run after downloading
models: exit 0 when every swapper passes, 1 when any fails, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from cli.args import ArgumentParser
from engine.datadir import default_data_dir
from engine.errors import InvalidOptions
from engine.models import cli as models_cli
from engine.models.licences import parse_licence_filter
from engine.models.manager import ModelManager, default_models_dir
from engine.models.registry import DEFAULT_RECOGNIZER
from engine.models.selftest import DEFAULT_THRESHOLD, SelftestResult, run_selftest
from engine.progress import Progress

EXIT_ALL_PASSED = 0
EXIT_SOME_FAILED = 1
_SELFTEST_COLUMNS = ("MODEL", "TO SOURCE", "TO TARGET", "RESULT")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="app.py models", description="List, download or self-test face models."
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument(
        "--licences",
        default=None,
        help="only models of these licence classes (permissive, non-commercial, research, "
        "unknown; comma-separated), as the studio's --licences",
    )
    # The directory flags are also accepted after the action (SUPPRESS keeps the parent's).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    common.add_argument("--models-dir", type=Path, default=argparse.SUPPRESS)
    common.add_argument("--licences", default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="action")
    sub.add_parser("list", parents=[common], help="installed and downloadable models")
    download = sub.add_parser(
        "download", parents=[common], help="download a model (resumes, verifies checksum)"
    )
    download.add_argument("name")
    selftest = sub.add_parser(
        "selftest",
        parents=[common],
        help="swap a shipped photo with each installed swapper and check the identity",
        description="Swap the face of assets/selftest/astronaut.jpg onto assets/selftest/"
        "camera.jpg with each installed swapper (or NAME) and report the recognizer's cosine "
        "similarity of the result to the source and to the target. PASS: similarity to the "
        "source >= the threshold and above the similarity to the target. Exit 0 when all "
        "pass, 1 when any fails, 2 on a usage error.",
    )
    selftest.add_argument("name", nargs="?", default=None, help="one swapper (default: all)")
    selftest.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"lowest cosine similarity to the source that passes (default {DEFAULT_THRESHOLD})",
    )
    selftest.add_argument("--json", action="store_true", help="print the results as JSON")
    selftest.add_argument("--device", default="cpu", help="cpu or cuda:N (default cpu)")
    selftest.add_argument(
        "--recognizer",
        default=DEFAULT_RECOGNIZER,
        help=f"the recognizer that measures identity (default {DEFAULT_RECOGNIZER})",
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    try:
        licences = parse_licence_filter(args.licences)
    except ValueError as exc:
        raise InvalidOptions(str(exc)) from None
    manager = ModelManager(args.models_dir or default_models_dir(data_dir), licences=licences)
    if args.action == "download":
        models_cli.download_model(manager, args.name)
    elif args.action == "selftest":
        return selftest(manager, args)
    else:
        models_cli.list_models(manager)
    return 0


def selftest(manager: ModelManager, args: argparse.Namespace) -> int:
    """Run the self-test with a progress bar on stderr; print a table (or JSON).

    The bar appears with the first model, so a usage error stays one ``error:`` line."""
    bar: tqdm | None = None

    def show(report: Progress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=report.total, unit="model", desc="selftest", file=sys.stderr)
        bar.n = report.done
        bar.set_postfix_str(report.message or "", refresh=False)
        bar.refresh()

    try:
        results = run_selftest(
            manager,
            [args.name] if args.name else None,
            threshold=args.threshold,
            device=args.device,
            progress=show,
            recognizer=args.recognizer,
        )
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps([result.to_dict() for result in results], indent=2))
    else:
        print_selftest(results, args.threshold)
    return EXIT_ALL_PASSED if all(r.passed for r in results) else EXIT_SOME_FAILED


def print_selftest(
    results: list[SelftestResult], threshold: float, out: TextIO = sys.stdout
) -> None:
    """The table: model, similarity to the source and to the target, PASS/FAIL; then why
    each failure failed."""
    rows = [
        (
            r.model,
            _similarity(r.similarity_to_source),
            _similarity(r.similarity_to_target),
            "PASS" if r.passed else "FAIL",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [_SELFTEST_COLUMNS, *rows]) for i in range(4)]
    for row in [_SELFTEST_COLUMNS, *rows]:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )
    print(
        f"PASS: similarity to the source >= {threshold} and above the similarity to the "
        "target (a sanity check of pre-processing, not a quality score)",
        file=out,
    )
    for r in results:
        if not r.passed:
            print(f"{r.model}: {r.message}", file=out)


def _similarity(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
