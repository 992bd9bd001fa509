"""``python app.py run``: one job, headless, with a progress bar.

Option flags are generated from the option dataclasses, so a CLI flag and an
API option always carry the same name (``--mask-blur`` ↔ ``mask_blur``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import secrets
import sys
from pathlib import Path

from tqdm import tqdm

from cli.args import ArgumentParser
from engine.datadir import default_data_dir
from engine.devices import parse_devices
from engine.errors import InvalidOptions
from engine.jobrun import DEFAULT_CONTENT_THRESHOLD, JobRequest, run_job
from engine.models.licences import model_flags
from engine.models.manager import ModelManager, default_models_dir
from engine.options import OutputOptions, SwapOptions
from engine.pipeline import FaceEngine
from engine.progress import Progress
from engine.provenance.apply import prepare_stamp


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="app.py run", description="Swap faces in one image or video.")
    parser.add_argument(
        "--source",
        action="append",
        required=True,
        type=Path,
        help="source face image (repeat for several photos of one person)",
    )
    parser.add_argument("--target", required=True, type=Path, help="target image or video")
    parser.add_argument("--output", required=True, type=Path, help="output file")
    parser.add_argument(
        "--reference",
        type=Path,
        action="append",
        default=[],
        help="image of a face to replace (selector reference); repeat it for face_map's "
        "reference entries, which count them from 0",
    )
    parser.add_argument(
        "--devices", default="cpu", help="device(s), e.g. cpu, cuda:0 or cuda:0,cuda:1"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads per model session (0 = auto)"
    )
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument(
        "--licences",
        default=None,
        help="use only models of these licence classes (permissive, non-commercial, "
        "research, unknown; comma-separated)",
    )
    parser.add_argument(
        "--model-memory-gb",
        type=float,
        default=None,
        help="keep loaded models within this much memory per device (LRU)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep finished video segments here so an interrupted run resumes",
    )
    parser.add_argument("--options", default=None, help="options as a JSON object (flags win)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--content-threshold",
        type=float,
        default=DEFAULT_CONTENT_THRESHOLD,
        help="content gate: refuse inputs whose NSFW score is above this (0..1)",
    )
    group = parser.add_argument_group("job options (same names as the API's options)")
    for spec in (*dataclasses.fields(SwapOptions), *dataclasses.fields(OutputOptions)):
        flag = "--" + spec.name.replace("_", "-")
        group.add_argument(
            flag,
            dest=f"opt_{spec.name}",
            default=None,
            metavar=spec.name.upper(),
            help=f"default: {spec.default}",
        )
    return parser


def collect_options(args: argparse.Namespace) -> dict:
    options: dict = {}
    if args.options:
        try:
            options = json.loads(args.options)
        except json.JSONDecodeError as exc:
            raise InvalidOptions(f"--options is not valid JSON: {exc}") from None
        if not isinstance(options, dict):
            raise InvalidOptions("--options must be a JSON object")
    for key, value in vars(args).items():
        if key.startswith("opt_") and value is not None:
            options[key[4:]] = value
    return options


class ProgressBar:
    """tqdm bar that follows engine progress reports, one bar per stage."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.stage: str | None = None

    def __call__(self, report: Progress) -> None:
        if not self.enabled or report.stage == "done":
            return
        if report.total is None:  # a stage of unknown length: no bar to draw
            self.close()
            self.stage = report.stage
            return
        if report.stage != self.stage or self.bar is None:
            self.close()
            self.stage = report.stage
            self.bar = tqdm(
                total=report.total,
                desc=report.stage,
                unit="frame",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=False,
            )
        if report.total is not None and self.bar.total != report.total:
            self.bar.total = report.total
        self.bar.n = report.done
        if report.fps:
            self.bar.set_postfix(fps=f"{report.fps:.1f}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    options = collect_options(args)
    data_dir = args.data_dir or default_data_dir()
    licences, budget = model_flags(args.licences, args.model_memory_gb)
    models = ModelManager(args.models_dir or default_models_dir(data_dir), licences=licences)
    engines = [
        FaceEngine(models, device, args.threads, memory_budget=budget)
        for device in parse_devices(args.devices)
    ]
    if not 0.0 < args.content_threshold <= 1.0:
        raise InvalidOptions("--content-threshold must be above 0 and at most 1")
    job_id = "cli-" + secrets.token_urlsafe(12)
    request = JobRequest(
        sources=args.source,
        target=args.target,
        output=args.output,
        options=options,
        reference=args.reference[0] if args.reference else None,
        references=list(args.reference),
        workdir=args.workdir,
        content_threshold=args.content_threshold,
        stamp=prepare_stamp(data_dir, job_id),
    )
    bar = ProgressBar(enabled=not args.quiet)
    try:
        result = run_job(engines, request, progress=bar)
    finally:
        bar.close()
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.kind == "video":
        done = f"{result.frames} frames, {result.faces_swapped} with faces swapped"
    else:
        done = f"{result.faces_swapped} face(s) swapped"
    print(
        f"{result.output}: {result.kind}, {done} with {result.swapper} (detector {result.detector})"
    )
    return 0
