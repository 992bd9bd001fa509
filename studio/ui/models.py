"""The Models panel: installed and downloadable models, with size, licence and a download.

A download runs in Gradio's own queue with a progress bar: it is an
operator's action on this machine, not a job, and resumes from its partial
file if interrupted.
"""

from __future__ import annotations

import html

import gradio as gr

from engine.errors import EngineError
from engine.progress import Progress
from studio.core import Studio
from studio.ui.i18n import language, t, text


def build_models_tab(studio: Studio):
    table = gr.HTML(elem_id="fs-models", js_on_load=None)
    with gr.Row():
        choice = gr.Dropdown(choices=[], label=t("model_pick"), elem_id="fs-model-pick", scale=3)
        download = gr.Button(elem_id="fs-model-download", value=t("model_download"), scale=1)
        refresh = gr.Button(elem_id="fs-model-refresh", value=t("model_refresh"), scale=1)
    message = gr.Markdown(elem_id="fs-model-message")

    def operator(request: gr.Request | None) -> bool:
        return is_operator(studio, request)

    def render(request: gr.Request):
        lang = language(request.headers.get("accept-language") if request else None)
        allowed = operator(request)
        choices = _downloadable(studio) if allowed else []
        return models_html(studio, lang, allowed), gr.Dropdown(choices=choices, interactive=allowed)

    def fetch(name: str | None, request: gr.Request, progress=gr.Progress()):
        lang = language(request.headers.get("accept-language") if request else None)
        if not operator(request):
            return "⚠️ " + text(lang, "msg_operator_only"), *render(request)
        if not name:
            return "", *render(request)

        def report(update: Progress) -> None:
            if update.total:
                progress(update.done / update.total, desc=update.message or name)

        try:
            studio.models.download(name, progress=report)
            note = "✅ " + text(lang, "msg_downloaded", name=name)
        except EngineError as exc:
            note = "❌ " + text(lang, "msg_download_failed", name=name, error=exc.message)
        return note, *render(request)

    refresh.click(render, None, [table, choice], concurrency_limit=4, api_visibility="private")
    download.click(
        fetch, choice, [message, table, choice], concurrency_limit=1, api_visibility="private"
    )
    return table, choice, render


def is_operator(studio: Studio, request: gr.Request | None) -> bool:
    """Downloads are the operator's: open local mode, a login, or an admin key."""
    if request is None:
        return False
    principal = studio.ui_principal(dict(request.cookies), getattr(request, "username", None))
    return principal is not None and principal.operator


def _downloadable(studio: Studio) -> list[str]:
    return [s.name for s in studio.models.list() if not s.embedded and not s.installed]


def models_html(studio: Studio, lang: str, operator: bool = False) -> str:
    """Every model the studio offers (the operator's licence filter applied): kind, family,
    state, the check its file passes, size, licence class and licence; custom models
    (the models directory's catalogue.json) are marked. Catalogue warnings are shown to
    the operator only (they name files on the server)."""
    rows = []
    for status in studio.models.list():
        size = status.size or status.size_hint
        shown = f"{'~' if not status.size else ''}{size / 1e6:.1f}" if size else "–"
        name = html.escape(status.name) + (" *" if status.custom else "")
        state = "installed (unchecked)" if status.unchecked else status.state
        rows.append(
            f"<tr data-model='{html.escape(status.name)}' data-state='{status.state}' "
            f"data-licence-class='{html.escape(status.licence_class)}'"
            f"{' data-custom=1' if status.custom else ''}>"
            f"<td>{name}</td><td>{html.escape(status.kind)}</td>"
            f"<td>{html.escape(status.family)}</td><td>{html.escape(state)}</td>"
            f"<td>{html.escape(status.check)}</td><td>{shown}</td>"
            f"<td>{html.escape(status.licence_class)}</td>"
            f"<td>{html.escape(status.license)}</td></tr>"
        )
    keys = (
        "col_name",
        "col_kind",
        "col_family",
        "col_state",
        "col_check",
        "col_size",
        "col_class",
        "col_license",
    )
    head = "".join(f"<th>{text(lang, key)}</th>" for key in keys)
    notes = [f"<p>{text(lang, 'models_custom_note')}</p>"]
    if operator:
        notes += [f"<p class='fs-warning'>⚠️ {html.escape(w)}</p>" for w in studio.models.warnings]
    return (
        f"<table class='fs-table'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>" + "".join(notes)
    )
