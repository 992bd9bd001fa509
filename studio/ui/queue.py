"""The Queue panel: a container that ``static/queue.js`` fills and keeps live.

The rows are not Gradio state: the script lists the person's jobs from the
REST API and then follows ``/api/v1/events`` (Server-Sent Events, sent with
the browser's owner cookie), updating only the row an event is about. So the
view survives reloads and server restarts, and shows only the owner's jobs.
"""

from __future__ import annotations

import gradio as gr

CONTAINER = '<div id="fs-queue" class="fs-queue" aria-live="polite"></div>'


def build_queue_tab() -> None:
    gr.HTML(CONTAINER, elem_id="fs-queue-panel", js_on_load=None, apply_default_css=False)
