"""Licence classes: one word per model, so an operator can keep an install commercial-safe.

The class is read from the licence text a catalogue entry carries (FaceFusion's
one-word labels, MODELS-2.md §15). ``permissive`` is Apache-2.0, MIT or BSD only.
Copyleft (GPL) and use-restricted (OpenRAIL, CC-BY) licences are not classed as
permissive; like text that is not recognised they are ``unknown``: read the licence.
This is a filter, not legal advice.
"""

from __future__ import annotations

LICENCE_CLASSES = ("permissive", "non-commercial", "research", "unknown")

_PERMISSIVE = ("apache", "mit", "bsd")
_NON_COMMERCIAL = ("non-commercial", "noncommercial", "non commercial", "s-lab", "cc-by-nc")
_RESEARCH = ("researchrail", "research only", "research-only", "research")


def licence_class(text: str) -> str:
    """``permissive``, ``non-commercial``, ``research`` or ``unknown`` for a licence text."""
    lowered = (text or "").lower()
    words = lowered.replace("(", " ").replace(")", " ").replace(",", " ").split()
    head = words[0] if words else ""
    if any(marker in lowered for marker in _NON_COMMERCIAL):
        return "non-commercial"
    if any(marker in lowered for marker in _RESEARCH):
        return "research"
    if any(head.startswith(name) for name in _PERMISSIVE):
        return "permissive"
    return "unknown"


def parse_licence_filter(value: str | None) -> frozenset[str] | None:
    """``--licences permissive,research`` → the allowed classes; None/"all" → no filter."""
    if value is None or value.strip().lower() in ("", "all"):
        return None
    classes = frozenset(part.strip().lower() for part in value.split(",") if part.strip())
    unknown = sorted(classes - set(LICENCE_CLASSES))
    if unknown or not classes:
        raise ValueError(
            f"--licences takes any of {', '.join(LICENCE_CLASSES)} (comma-separated) or all; "
            f"got {value!r}"
        )
    return classes


def model_flags(
    licences: str | None, memory_gb: float | None
) -> tuple[frozenset[str] | None, int | None]:
    """``--licences`` and ``--model-memory-gb`` as every command takes them: the allowed
    licence classes (None: all) and the memory budget in bytes (None: unbounded)."""
    from engine.errors import InvalidOptions

    try:
        allowed = parse_licence_filter(licences)
    except ValueError as exc:
        raise InvalidOptions(str(exc)) from None
    if memory_gb is not None and memory_gb <= 0:
        raise InvalidOptions("--model-memory-gb must be more than 0")
    return allowed, int(memory_gb * 1024**3) if memory_gb else None
