"""Write a user catalogue (``<models dir>/catalogue.json``, DESIGN.md §9) of stand-in files.

Each entry pins its file by the file's own real checksum (SHA-256, CRC32 or both), so
the manager checks a stand-in exactly as it checks a downloaded model; ``wrong`` pins a
checksum the file does not have, for the entries that must be refused.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.models.user_catalogue import CATALOGUE_FILE

CHECKS = ("sha256", "crc32", "both")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def crc32_of(path: Path) -> str:
    return f"{zlib.crc32(Path(path).read_bytes()) & 0xFFFFFFFF:08x}"


def entry(
    models_dir: Path,
    name: str,
    kind: str,
    family: str,
    file: Path,
    *,
    check: str = "sha256",
    wrong: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """One catalogue entry for ``file`` (inside ``models_dir``), pinned by ``check``.

    ``fields``: the optional entry fields (``licence``, ``recognizer``, ``scale`` …)."""
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}, not {check!r}")
    relative = Path(file).resolve().relative_to(Path(models_dir).resolve()).as_posix()
    item: dict[str, Any] = {"name": name, "kind": kind, "family": family, "file": relative}
    if check in ("sha256", "both"):
        item["sha256"] = "0" * 64 if wrong else sha256_of(file)
    if check in ("crc32", "both"):
        item["crc32"] = "0" * 8 if wrong else crc32_of(file)
    item.update(fields)
    return item


def write_catalogue(models_dir: Path, entries: Sequence[dict[str, Any]]) -> Path:
    """Write ``entries`` as ``<models_dir>/catalogue.json``; returns its path."""
    path = Path(models_dir) / CATALOGUE_FILE
    path.write_text(json.dumps(list(entries), indent=2), encoding="utf-8")
    return path
