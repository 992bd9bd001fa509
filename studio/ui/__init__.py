"""The Gradio Blocks UI: Create, Queue, Models and System panels."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from studio.core import Studio
from studio.ui.create import build_create_tab
from studio.ui.i18n import I18N, queue_strings, t
from studio.ui.models import build_models_tab
from studio.ui.queue import build_queue_tab
from studio.ui.system import build_system_tab
from studio.ui.verify import build_verify_tab

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
STATIC_URL = "/studio-static"


def build_ui(studio: Studio) -> gr.Blocks:
    with gr.Blocks(title="Fusion Studio", analytics_enabled=False) as blocks:
        gr.Markdown(t("title"), elem_id="fs-title")
        with gr.Tabs(selected="create", elem_id="fs-tabs") as tabs:
            with gr.Tab(t("tab_create"), id="create", elem_id="fs-tab-create"):
                create = build_create_tab(studio, tabs)
            with gr.Tab(t("tab_queue"), id="queue", elem_id="fs-tab-queue"):
                build_queue_tab(studio)
            with gr.Tab(t("tab_verify"), id="verify", elem_id="fs-tab-verify"):
                build_verify_tab(studio)
            with gr.Tab(t("tab_models"), id="models", elem_id="fs-tab-models"):
                models_table, models_choice, render_models = build_models_tab(studio)
            with gr.Tab(t("tab_system"), id="system", elem_id="fs-tab-system"):
                system_panel, render_system = build_system_tab(studio)
        for downloaded in create.downloads:  # a model fetched on Create shows up on Models too
            downloaded.then(
                render_models,
                None,
                [models_table, models_choice],
                show_progress="hidden",
                api_visibility="private",
            )
        blocks.load(
            render_models,
            None,
            [models_table, models_choice],
            show_progress="hidden",
            api_visibility="private",
        )
        blocks.load(  # model choices as installed now (a download may have happened since)
            create.refresh,
            None,
            create.dropdowns,
            show_progress="hidden",
            api_visibility="private",
        )
        blocks.load(
            render_system, None, system_panel, show_progress="hidden", api_visibility="private"
        )
    return blocks


def login_message(config) -> str:
    """The login form's note: who can log in, in both languages."""
    lines = []
    if config.auth:
        lines.append("Log in with your user name and password. / 请使用用户名和密码登录。")
    if config.require_api_key:
        lines.append(
            "With an API key: its name as the user name and the key as the password. / "
            "使用 API 密钥：用户名为密钥名称，密码为密钥本身。"
        )
    return " ".join(lines)


def head_html() -> str:
    """The Queue view's and the comparisons' scripts and strings, loaded into the page head."""
    config = json.dumps({"i18n": queue_strings(), "api": "/api/v1"}, ensure_ascii=False)
    version = int(max(p.stat().st_mtime for p in STATIC_DIR.iterdir()))
    return (
        f"<script>window.FS_CONFIG = {config};</script>"
        f'<script src="{STATIC_URL}/compare.js?v={version}" defer></script>'
        f'<script src="{STATIC_URL}/queue.js?v={version}" defer></script>'
    )


def theme() -> gr.themes.Base:
    """The default theme with system fonts: the studio must work offline."""
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "monospace"],
    )


__all__ = ["I18N", "STATIC_DIR", "STATIC_URL", "build_ui", "head_html", "login_message", "theme"]
