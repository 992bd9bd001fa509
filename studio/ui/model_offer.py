"""Models where they are chosen: a missing model's licence and, for the operator, its download.

Every model dropdown of the Create panel labels its choices with their installed state,
size and licence class (``model_choices``). Choosing one that is not installed shows
its licence beside the dropdowns; the operator (``studio.ui.models.is_operator``: the
same rule as the Models tab) also gets a Download button that fetches it, and what it
needs, with a progress bar, then refreshes every model dropdown's choices, so it can be
used without a reload. Anyone else is told to ask the operator: no button, and a
crafted download event is refused all the same.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass

import gradio as gr

from engine.errors import EngineError
from engine.models.manager import ModelStatus
from engine.progress import Progress
from studio.core import Studio
from studio.ui.i18n import text


@dataclass(frozen=True)
class ModelField:
    """One model dropdown: the catalogue kind it lists and its fixed words (``auto``…)."""

    kind: str
    fixed: tuple[str, ...]


def model_choices(studio: Studio, kind: str, fixed: tuple[str, ...]) -> list[tuple[str, str]]:
    """A model option's choices: the fixed words, then every catalogue model of ``kind``
    (custom entries included, licence-filtered), labelled with whether it is installed,
    its size and its licence class."""
    choices = [(word, word) for word in fixed]
    for status in studio.models.list():
        if status.kind != kind:
            continue
        choices.append((model_label(status), status.name))
    return choices


def model_label(status: ModelStatus) -> str:
    """``name — installed · 403 MB · research`` (``custom`` where it is)."""
    details = [status.state if status.state != "embedded" else "built in"]
    size = status.size or getattr(status, "size_hint", 0)
    if size and not status.embedded:
        details.append(f"{'~' if not status.size else ''}{size / 1e6:.0f} MB")
    licence_class = getattr(status, "licence_class", "")
    if licence_class:
        details.append(licence_class)
    if getattr(status, "custom", False):
        details.append("custom")
    return f"{status.name} — {' · '.join(details)}"


def missing(studio: Studio, chosen: str | Iterable[str] | None) -> ModelStatus | None:
    """The first chosen catalogue model that is not installed (None: all are usable)."""
    names = [chosen] if isinstance(chosen, str) else list(chosen or [])
    for name in names:
        if name not in studio.models.registry:
            continue  # a fixed word (auto, none, many…)
        status = studio.models.status(name)
        if not status.installed:
            return status
    return None


def offer_markdown(status: ModelStatus, lang: str, operator: bool) -> str:
    """What the person reads before downloading: the model, its size and its licence."""
    size = status.size or status.size_hint
    details = [f"{'~' if not status.size else ''}{size / 1e6:.0f} MB"] if size else []
    details.append(text(lang, "offer_class", licence_class=html.escape(status.licence_class)))
    lines = [
        "ℹ️ "
        + text(lang, "offer_missing", name=html.escape(status.name), details=", ".join(details)),
        text(lang, "offer_licence", licence=html.escape(status.license or "?")),
    ]
    lines.append(text(lang, "offer_accept" if operator else "offer_ask_operator"))
    return "\n\n".join(lines)


def download(
    studio: Studio,
    name: str,
    lang: str,
    progress: gr.Progress,
) -> str:
    """Fetch ``name`` (and what it needs) with a live progress bar; the outcome's message."""

    def report(update: Progress) -> None:
        if update.total:
            progress(update.done / update.total, desc=update.message or name)

    try:
        studio.models.download(name, progress=report)
    except EngineError as exc:
        return "❌ " + text(lang, "msg_download_failed", name=name, error=html.escape(exc.message))
    return "✅ " + text(lang, "msg_downloaded_here", name=name)
