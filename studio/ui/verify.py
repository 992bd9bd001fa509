"""The Verify tab: drop a file, see its provenance verdict (same report as ``app.py verify``)."""

from __future__ import annotations

import asyncio
import html
import json
from pathlib import Path

import gradio as gr

from engine.errors import EngineError
from scheduler.errors import JobNotFound
from studio.core import Studio
from studio.ui.components import UploadFiles
from studio.ui.i18n import t

VERIFY_TIMEOUT = 120.0  # seconds; a stuck check never holds the page
VERDICT_ICONS = {"trusted": "✅", "valid": "☑️", "invalid": "❌", "absent": "➖"}


def build_verify_tab(studio: Studio) -> None:
    gr.Markdown(t("verify_intro"))
    upload = UploadFiles(label=t("verify_file"), file_count="single", elem_id="fs-verify-file")
    verdict = gr.HTML(elem_id="fs-verify-verdict")

    async def check(path: str | None, request: gr.Request) -> str:
        if not path:
            return ""
        owner = studio.browser_owner(dict(request.cookies), getattr(request, "username", None))
        try:
            return await verify_html(studio, Path(path), owner)
        finally:  # the checked file is not kept
            if owner is not None:
                await asyncio.to_thread(studio.ui_files.release, owner, [path])

    upload.change(check, upload, verdict, api_visibility="private")


async def verify_html(studio: Studio, path: Path, owner: str | None) -> str:
    from engine.provenance.verify import verify_file

    try:
        report = await asyncio.wait_for(
            asyncio.to_thread(verify_file, path, studio.config.data_dir), VERIFY_TIMEOUT
        )
    except TimeoutError:
        return "<p class='fs-error'>⚠️ the file took too long to check</p>"
    except EngineError as exc:
        return f"<p class='fs-error'>⚠️ {html.escape(exc.message)}</p>"
    watermark = report.get("watermark") or {}
    job_id = watermark.get("job_id")
    if job_id:
        try:
            await studio.scheduler.get(job_id, owner=owner)
        except JobNotFound:
            watermark["job_id"] = job_id = None
    c2pa = report.get("c2pa") or {}
    status = c2pa.get("status", "absent")
    source_type = (report.get("metadata") or {}).get("digital_source_type")
    if watermark:
        mark = f"payload <code>{html.escape(str(watermark.get('payload')))}</code>"
        if job_id:
            mark += f" — your job <code>{html.escape(job_id)}</code>"
    else:
        mark = "none found"
    rows = [
        ("Watermark", mark),
        ("Synthetic-media metadata", html.escape(source_type or "none")),
        (
            "C2PA",
            f"{VERDICT_ICONS.get(status, '')} {html.escape(status)}"
            + (f" — {html.escape(c2pa['reason'])}" if c2pa.get("reason") else ""),
        ),
    ]
    body = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    raw = html.escape(json.dumps(report, indent=2))
    return (
        f"<table class='fs-table fs-verify' data-c2pa='{html.escape(status)}'>{body}</table>"
        f"<details><summary>JSON</summary><pre>{raw}</pre></details>"
    )
