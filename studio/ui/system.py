"""The System panel: devices, busy and free slots, queue depth, jobs per status."""

from __future__ import annotations

import html

import gradio as gr

from studio.core import Studio
from studio.ui.i18n import language, t, text

REFRESH_SECONDS = 5.0


def build_system_tab(studio: Studio) -> tuple[gr.HTML, object]:
    panel = gr.HTML(elem_id="fs-system", js_on_load=None)
    refresh = gr.Button(elem_id="fs-system-refresh", value=t("system_refresh"), size="sm")
    timer = gr.Timer(REFRESH_SECONDS)

    async def render(request: gr.Request) -> str:
        lang = language(request.headers.get("accept-language") if request else None)
        return await system_html(studio, lang)

    refresh.click(
        render,
        None,
        panel,
        concurrency_limit=None,
        show_progress="hidden",
        api_visibility="private",
    )
    timer.tick(
        render,
        None,
        panel,
        concurrency_limit=None,
        show_progress="hidden",
        api_visibility="private",
    )
    return panel, render


async def system_html(studio: Studio, lang: str) -> str:
    stats = await studio.scheduler.stats()
    rows = "".join(
        f"<tr data-device='{html.escape(d.device)}'><td>{html.escape(d.device)}</td>"
        f"<td>{d.slots}</td><td class='fs-busy'>{d.busy}</td><td>{d.free}</td></tr>"
        for d in stats.devices
    )
    for worker in studio.remote_workers():
        for device in worker["devices"]:
            label = html.escape(f"{worker['name']} · {device['device']}")
            free = device["slots"] - device["busy"]
            rows += (
                f"<tr data-device='{label}' data-worker='{html.escape(worker['name'])}'>"
                f"<td>{label}</td><td>{device['slots']}</td>"
                f"<td class='fs-busy'>{device['busy']}</td><td>{free}</td></tr>"
            )
    statuses = "".join(
        f"<tr data-status='{s}'><td>{s}</td><td>{stats.counts.get(s, 0)}</td></tr>"
        for s in ("queued", "running", "succeeded", "failed", "canceled")
    )
    return (
        f"<div class='fs-system'>"
        f"<h3>{text(lang, 'sys_devices')}</h3><table class='fs-table'><thead><tr>"
        f"<th>{text(lang, 'sys_device')}</th><th>{text(lang, 'sys_slots')}</th>"
        f"<th>{text(lang, 'sys_busy')}</th><th>{text(lang, 'sys_free')}</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        f"<p><b>{text(lang, 'sys_queue')}:</b> <span id='fs-queue-depth'>{stats.queued}</span>"
        f" &nbsp; <b>{text(lang, 'sys_disk')}:</b> {stats.disk_bytes / 1e6:.1f} MB</p>"
        f"<h3>{text(lang, 'sys_jobs')}</h3><table class='fs-table'><tbody>{statuses}</tbody>"
        f"</table></div>"
    )
