"""What ``python app.py models [list | download NAME]`` does, as plain functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from engine.models.manager import ModelManager, ModelStatus
from engine.progress import CancelToken, Progress

_COLUMNS = ("NAME", "KIND", "STATE", "SIZE MB", "LICENCE")


def _state(status: ModelStatus) -> str:
    if status.state == "partial" and status.size:
        return f"partial {100 * status.partial_bytes // status.size}%"
    if status.state == "installed" and not status.verified:
        return "installed (unverified)"
    return status.state


def _size_mb(status: ModelStatus) -> str:
    return f"{status.size / 1e6:.1f}" if status.size else "-"


def list_models(manager: ModelManager, out: TextIO = sys.stdout) -> list[ModelStatus]:
    """Print a table of every known model and where the models dir is."""
    statuses = manager.list()
    rows = [(s.name, s.kind, _state(s), _size_mb(s), s.license) for s in statuses]
    widths = [max(len(str(r[i])) for r in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
    for row in [_COLUMNS, *rows]:
        print(
            "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )
    print(f"models directory: {manager.models_dir}", file=out)
    for s in statuses:
        if s.problem and not s.embedded:
            print(f"warning: {s.problem}", file=out)
    return statuses


def download_model(
    manager: ModelManager,
    name: str,
    out: TextIO = sys.stderr,
    cancel: CancelToken | None = None,
) -> Path:
    """Download one model with a progress bar; errors are ``EngineError``s naming the fix."""
    spec = manager.spec(name)
    if spec.embedded:
        print(f"{name} is built in; nothing to download", file=out)
        return manager.path(name) or manager.models_dir
    print(f"{name}: licence {spec.license}", file=out)
    with tqdm(
        total=spec.size, unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=out
    ) as bar:

        def show(report: Progress) -> None:
            if report.total is not None:
                bar.total = report.total
            bar.n = report.done
            bar.refresh()

        path = manager.download(name, progress=show, cancel=cancel)
    print(f"{name}: verified and saved to {path}", file=out)
    return path
