"""The user's model catalogue: ``<models dir>/catalogue.json``, models added as data.

A JSON array of entries (DESIGN.md §9), each becoming a ``ModelSpec(custom=True)``
listed and chosen like a built-in model::

    [{"name": "my_swap", "kind": "swapper", "family": "inswapper",
      "file": "custom/my_swap.onnx", "sha256": "…", "licence": "MIT"}]

Fields: ``name`` (``[a-z0-9_.-]+``, unique, not a built-in name), ``kind``, ``family``
(one of that kind's families), ``file`` (relative to the models dir and inside it),
``sha256`` and/or ``crc32`` (at least one), and optional ``licence`` (free text, classed
by ``licence_class``), ``urls`` (https), ``converter`` and ``recognizer`` (embedding
swappers; the recognizer defaults to ``arcface_w600k_r50``, the converter to the one the
built-in models of the family use), ``size`` (native size, for exports with dynamic
input axes), ``scale`` (a frame enhancer's factor) and ``description``.

An entry is loaded only if its file is there, passes its checksums and its tensors fit
its family; an entry whose file is missing but that has ``urls`` is listed as
downloadable instead. Every bad entry is skipped with one warning naming the entry and
the field; a file that cannot be read at all is one warning. Nothing here raises: a
typo in the catalogue never stops the studio. Checksums and the tensor check go
through the manager's ``.verified`` sidecar, so a large file is read once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import urlsplit

from engine.errors import ModelUnavailable
from engine.families.io import bind, file_tensors
from engine.families.table import FAMILIES_BY_KIND, KINDS, SWAPPER_FAMILIES, family_io
from engine.models.checksums import Record, digests_of, write_sidecar
from engine.models.registry import (
    CRC32_PATTERN,
    DEFAULT_RECOGNIZER,
    NAME_PATTERN,
    SHA256_PATTERN,
    ModelSpec,
)

CATALOGUE_FILE = "catalogue.json"
FIELDS = (
    "name",
    "kind",
    "family",
    "file",
    "sha256",
    "crc32",
    "licence",
    "urls",
    "converter",
    "recognizer",
    "size",
    "scale",
    "description",
)
BUILT_IN_FAMILIES = frozenset({"mtcnn", "classic"})  # shipped with the install, no file
UNSTATED_LICENCE = "not stated"


class _Bad(Exception):
    """One bad entry: the field at fault (None: the entry as a whole) and why."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class _Entry:
    """An entry whose fields are well-formed, before its file and references are checked."""

    index: int
    spec: ModelSpec

    @property
    def label(self) -> str:
        return f"'{self.spec.name}' (#{self.index + 1})"


def load_user_catalogue(
    models_dir: Path | str, builtins: Mapping[str, ModelSpec]
) -> tuple[dict[str, ModelSpec], list[str]]:
    """The good entries of ``<models_dir>/catalogue.json`` and one warning per bad one.

    No file: no entries and no warnings. Never raises."""
    models_dir = Path(models_dir)
    path = models_dir / CATALOGUE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, []
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {}, [f"{path}: cannot be read as JSON ({exc}); no custom models loaded"]
    if not isinstance(data, list):
        return {}, [
            f"{path}: must be a JSON array of model entries, not a {type(data).__name__}; "
            "no custom models loaded"
        ]
    warnings: list[tuple[int, str]] = []
    entries: dict[str, _Entry] = {}
    builtin_files = {spec.filename: spec.name for spec in builtins.values() if spec.filename}
    for index, raw in enumerate(data):
        try:
            spec = _parse(raw, builtins, entries, builtin_files)
        except _Bad as bad:
            warnings.append((index, _warning(path, _label(raw, index), bad)))
            continue
        entries[spec.name] = _Entry(index, spec)
    checked: dict[str, _Entry] = {}
    for entry in entries.values():
        try:
            checked[entry.spec.name] = replace(entry, spec=_check_file(entry.spec, models_dir))
        except _Bad as bad:
            warnings.append((entry.index, _warning(path, entry.label, bad)))
    loaded: dict[str, ModelSpec] = {}
    for entry in checked.values():
        try:
            _check_references(entry.spec, builtins, checked, entries)
        except _Bad as bad:
            warnings.append((entry.index, _warning(path, entry.label, bad)))
            continue
        loaded[entry.spec.name] = entry.spec
    return loaded, [message for _, message in sorted(warnings, key=lambda item: item[0])]


def _label(raw: Any, index: int) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    if isinstance(name, str) and name:
        return f"{name!r} (#{index + 1})"
    return f"#{index + 1}"


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _warning(path: Path, label: str, bad: _Bad) -> str:
    where = f"entry {label}" + (f", field '{bad.field}'" if bad.field else "")
    return f"{path}: {where}: {bad.problem}; entry skipped"


# -- fields ---------------------------------------------------------------------------


def _parse(
    raw: Any,
    builtins: Mapping[str, ModelSpec],
    earlier: Mapping[str, _Entry],
    builtin_files: Mapping[str, str],
) -> ModelSpec:
    if not isinstance(raw, dict):
        raise _Bad(None, f"an entry is a JSON object, not {_a(_json_type(raw))}")
    for key in raw:
        if key not in FIELDS:
            raise _Bad(str(key), f"not a catalogue field (fields: {', '.join(FIELDS)})")
    name = _text(raw, "name", required=True)
    if not NAME_PATTERN.fullmatch(name):
        raise _Bad("name", f"{name!r} is not a model name (lower-case a-z, 0-9, _ . -)")
    if name in builtins:
        raise _Bad("name", f"{name!r} is a built-in model's name")
    if name in earlier:
        raise _Bad("name", f"{name!r} is already the name of entry #{earlier[name].index + 1}")
    kind = _text(raw, "kind", required=True)
    if kind not in KINDS:
        raise _Bad("kind", f"{kind!r} is not a kind (one of {', '.join(KINDS)})")
    family = _text(raw, "family", required=True)
    if family in BUILT_IN_FAMILIES or family_io(kind, family) is None:
        families = sorted(set(FAMILIES_BY_KIND.get(kind, {})) - BUILT_IN_FAMILIES)
        raise _Bad("family", f"{family!r} is not {_a(kind)} family (one of {', '.join(families)})")
    file = _relative_file(_text(raw, "file", required=True))
    if file in builtin_files:
        raise _Bad("file", f"{file} is the file of the built-in model {builtin_files[file]}")
    sha256 = _text(raw, "sha256").lower()
    crc32 = _text(raw, "crc32").lower()
    if sha256 and not SHA256_PATTERN.fullmatch(sha256):
        raise _Bad("sha256", "a sha256 is 64 hex digits")
    if crc32 and not CRC32_PATTERN.fullmatch(crc32):
        raise _Bad("crc32", "a crc32 is 8 hex digits (FaceFusion's .hash)")
    if not sha256 and not crc32:
        raise _Bad("sha256", "an entry needs sha256 or crc32 (at least one)")
    converter, recognizer = _identity_models(raw, kind, family, builtins)
    return ModelSpec(
        name=name,
        kind=kind,
        filename=file,
        urls=_urls(raw),
        sha256=sha256,
        size=0,
        license=_text(raw, "licence") or UNSTATED_LICENCE,
        input_size=_positive(raw, "size"),
        embedded=False,
        description=_text(raw, "description") or f"custom {family} {kind} ({CATALOGUE_FILE})",
        family=family,
        crc32=crc32,
        converter=converter,
        recognizer=recognizer,
        scale=_positive(raw, "scale"),
        custom=True,
    )


def _text(raw: dict[str, Any], field: str, *, required: bool = False) -> str:
    value = raw.get(field)
    if value is None:
        if required:
            raise _Bad(field, "missing")
        return ""
    if not isinstance(value, str) or (required and not value):
        raise _Bad(field, f"must be a non-empty string, not {value!r}")
    return value


def _positive(raw: dict[str, Any], field: str) -> int | None:
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _Bad(field, f"must be a positive whole number, not {value!r}")
    return value


def _relative_file(text: str) -> str:
    """A path inside the models dir, in ``/`` form; absolute paths and ``..`` refused."""
    posix = text.replace("\\", "/")
    if PurePosixPath(posix).is_absolute() or PureWindowsPath(text).anchor:
        raise _Bad("file", f"{text!r} is absolute; give a path relative to the models directory")
    parts = PurePosixPath(posix).parts
    if ".." in parts:
        raise _Bad("file", f"{text!r} leaves the models directory ('..')")
    if not parts or posix.endswith("/"):
        raise _Bad("file", f"{text!r} does not name a file")
    return PurePosixPath(*parts).as_posix()


def _urls(raw: dict[str, Any]) -> tuple[str, ...]:
    value = raw.get("urls")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(url, str) for url in value):
        raise _Bad("urls", "must be a list of URLs")
    for url in value:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc:
            raise _Bad("urls", f"{url!r} is not an https URL")
    return tuple(value)


def _identity_models(
    raw: dict[str, Any], kind: str, family: str, builtins: Mapping[str, ModelSpec]
) -> tuple[str, str]:
    """(converter, recognizer) of an entry, with the defaults of its family."""
    converter = _text(raw, "converter")
    recognizer = _text(raw, "recognizer")
    swapper = SWAPPER_FAMILIES.get(family) if kind == "swapper" else None
    if swapper is None or not swapper.needs_embedding:
        for field, value in (("converter", converter), ("recognizer", recognizer)):
            if value:
                raise _Bad(field, f"{_a(family)} {kind} takes no {field}")
        return "", ""
    if converter and not swapper.needs_converter:
        raise _Bad("converter", f"{_a(family)} swapper takes no converter")
    if swapper.needs_converter and not converter:
        converter = next(
            (s.converter for s in builtins.values() if s.family == family and s.converter), ""
        )
        if not converter:
            raise _Bad("converter", f"{_a(family)} swapper needs a converter model; name one")
    return converter, recognizer or DEFAULT_RECOGNIZER


# -- the file -------------------------------------------------------------------------


def _check_file(spec: ModelSpec, models_dir: Path) -> ModelSpec:
    """The spec with the file's size pinned, once its checksums and tensors pass."""
    file = models_dir / spec.filename
    try:
        stat = file.stat()
    except OSError:
        if spec.urls:
            return spec  # downloadable: checked when it is downloaded and loaded
        raise _Bad("file", f"{file} does not exist (and the entry has no urls)") from None
    if not file.is_file():
        raise _Bad("file", f"{file} is not a file")
    try:
        digests, record = digests_of(file, stat)
    except OSError as exc:
        raise _Bad("file", f"cannot read {file}: {exc}") from exc
    for field, expected in (("sha256", spec.sha256), ("crc32", spec.crc32)):
        actual = getattr(digests, field)
        if expected and actual != expected:
            write_sidecar(file, Record(stat.st_size, stat.st_mtime_ns, digests))
            raise _Bad(field, f"{file} has {field} {actual}, not {expected}")
    fit = f"{spec.kind}/{spec.family}"
    if record is None or fit not in record.fits:
        io = family_io(spec.kind, spec.family)
        assert io is not None  # checked by _parse
        try:
            bind(spec.name, spec.family, io, *file_tensors(file))
        except ModelUnavailable as exc:
            raise _Bad("family", exc.message) from None
    check = "sha256" if spec.sha256 else "crc32"
    if record is None or fit not in record.fits or record.check != check:
        write_sidecar(file, Record(stat.st_size, stat.st_mtime_ns, digests, check, (fit,)))
    return replace(spec, size=stat.st_size)


def _check_references(
    spec: ModelSpec,
    builtins: Mapping[str, ModelSpec],
    checked: Mapping[str, _Entry],
    parsed: Mapping[str, _Entry],
) -> None:
    for field in ("converter", "recognizer"):
        name = getattr(spec, field)
        if not name:
            continue
        target = builtins.get(name) or (checked[name].spec if name in checked else None)
        if target is None:
            why = "an entry that was skipped" if name in parsed else "not a known model"
            raise _Bad(field, f"{name!r} is {why}")
        if target.kind != field:
            raise _Bad(field, f"{name!r} is {_a(target.kind)}, not {_a(field)}")


__all__ = ["CATALOGUE_FILE", "FIELDS", "load_user_catalogue"]
