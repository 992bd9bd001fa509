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
        """Downloads are the operator's: open local mode, a login, or an admin key."""
        if request is None:
            return False
        principal = studio.ui_principal(dict(request.cookies), getattr(request, "username", None))
        return principal is not None and principal.operator

    def render(request: gr.Request):
        lang = language(request.headers.get("accept-language") if request else None)
        allowed = operator(request)
        choices = _downloadable(studio) if allowed else []
        return models_html(studio, lang), gr.Dropdown(choices=choices, interactive=allowed)

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


def _downloadable(studio: Studio) -> list[str]:
    return [s.name for s in studio.models.list() if not s.embedded and not s.installed]


def models_html(studio: Studio, lang: str) -> str:
    rows = []
    for status in studio.models.list():
        size = f"{status.size / 1e6:.1f}" if status.size else "–"
        rows.append(
            f"<tr data-model='{html.escape(status.name)}' data-state='{status.state}'>"
            f"<td>{html.escape(status.name)}</td><td>{html.escape(status.kind)}</td>"
            f"<td>{status.state}</td><td>{size}</td><td>{html.escape(status.license)}</td></tr>"
        )
    head = "".join(
        f"<th>{text(lang, key)}</th>"
        for key in ("col_name", "col_kind", "col_state", "col_size", "col_license")
    )
    return (
        f"<table class='fs-table'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
