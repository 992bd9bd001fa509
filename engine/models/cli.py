"""What ``python app.py models [list | download NAME]`` does, as plain functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from engine.models.manager import ModelManager, ModelStatus
from engine.models.user_catalogue import CATALOGUE_FILE
from engine.progress import CancelToken, Progress

_COLUMNS = (
    "NAME",
    "KIND",
    "FAMILY",
    "STATE",
    "CHECK",
    "SIZE MB",
    "LICENCE CLASS",
    "LICENCE",
)
CUSTOM_MARK = "*"


def _state(status: ModelStatus) -> str:
    if status.state == "partial":
        if status.size:
            return f"partial {100 * status.partial_bytes // status.size}%"
        return f"partial {status.partial_bytes / 1e6:.1f} MB"
    if status.state == "installed" and status.unchecked:
        return "installed (unchecked)"
    if status.state == "installed" and not status.verified:
        return "installed (unverified)"
    return status.state


def _size_mb(status: ModelStatus) -> str:
    """Exact megabytes, ``~`` before a rounded figure where the exact size is unknown."""
    if status.size:
        return f"{status.size / 1e6:.1f}"
    if status.size_hint:
        return f"~{status.size_hint / 1e6:.1f}"
    return "-"


def _row(status: ModelStatus) -> tuple[str, ...]:
    return (
        status.name + (CUSTOM_MARK if status.custom else ""),
        status.kind,
        status.family or "-",
        _state(status),
        status.check,
        _size_mb(status),
        status.licence_class,
        status.license,
    )


def list_models(manager: ModelManager, out: TextIO = sys.stdout) -> list[ModelStatus]:
    """Print a table of every model the licence filter lets through, where the models dir
    is, and every warning: bad user-catalogue entries, bad files, unchecked files."""
    statuses = manager.list()
    rows = [_row(s) for s in statuses]
    widths = [max(len(str(r[i])) for r in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
    for row in [_COLUMNS, *rows]:
        print(
            "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )
    if any(s.custom for s in statuses):
        print(f"{CUSTOM_MARK} custom model from {manager.models_dir / CATALOGUE_FILE}", file=out)
    print(f"models directory: {manager.models_dir}", file=out)
    if manager.licences is not None:
        print(f"licence filter: {', '.join(sorted(manager.licences))}", file=out)
    for warning in manager.warnings:
        print(f"warning: {warning}", file=out)
    for s in statuses:
        if s.problem and not s.embedded:
            print(f"warning: {s.problem}", file=out)
        elif s.unchecked:
            print(f"warning: {manager.unchecked_message(s.name)}", file=out)
    return statuses


def download_model(
    manager: ModelManager,
    name: str,
    out: TextIO = sys.stderr,
    cancel: CancelToken | None = None,
) -> Path:
    """Download one model and the models it needs, a progress bar and the licence for
    each; errors are ``EngineError``s naming the fix."""
    spec = manager.spec(name)
    if spec.embedded:
        print(f"{name} is built in; nothing to download", file=out)
        return manager.path(name) or manager.models_dir
    paths = [
        _download_one(manager, each, out, cancel) for each in [name, *manager.requirements(name)]
    ]
    return paths[0]


def _download_one(
    manager: ModelManager, name: str, out: TextIO, cancel: CancelToken | None
) -> Path:
    spec = manager.spec(name)
    if spec.embedded:
        print(f"{name} is built in; nothing to download", file=out)
        return manager.path(name) or manager.models_dir
    print(f"{name}: licence {spec.license} (class {spec.licence_class})", file=out)
    with tqdm(
        total=spec.size or None,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=spec.filename,
        file=out,
    ) as bar:

        def show(report: Progress) -> None:
            if report.total is not None:
                bar.total = report.total
            bar.n = report.done
            bar.refresh()

        path = manager.download(name, progress=show, cancel=cancel, with_requirements=False)
    check = manager.status(name).check
    print(f"{name}: verified and saved to {path} (check: {check})", file=out)
    return path
