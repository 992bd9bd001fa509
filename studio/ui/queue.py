"""The Queue panel: a container that ``static/queue.js`` fills and keeps live.

The rows are not Gradio state: the script lists the person's jobs from the
REST API and then follows ``/api/v1/events`` (Server-Sent Events, sent with
the browser's owner cookie), updating only the row an event is about. So the
view survives reloads and server restarts, and shows only the owner's jobs.

An image job's result is shown over its original target (a before/after
comparison). The REST API serves results, not inputs, so the original comes
from this panel's ``original`` event: the script asks for a job id, and the
owner's own job's target image comes back, downscaled, as a data URI.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np

from engine import imageio
from engine.errors import EngineError
from studio.core import Studio
from studio.ui.faces import jpeg_data_uri

CONTAINER = '<div id="fs-queue" class="fs-queue" aria-live="polite"></div>'
ORIGINAL_MAX_SIDE = 960
# The originals' channel: ``window.fsOriginal(id)`` asks; the answer arrives as this
# component's value and is handed to the Queue view.
ORIGINALS_JS = """
window.fsOriginal = (id) => trigger('original', { job: String(id) });
watch('value', () => {
  if (props.value && window.fsQueue && window.fsQueue.original) window.fsQueue.original(props.value);
});
if (window.fsQueue && window.fsQueue.originalsReady) window.fsQueue.originalsReady();
"""


def build_queue_tab(studio: Studio) -> None:
    gr.HTML(CONTAINER, elem_id="fs-queue-panel", js_on_load=None, apply_default_css=False)
    originals = gr.HTML(
        value=None,
        html_template="",
        elem_id="fs-queue-originals",
        elem_classes=["fs-offscreen"],
        js_on_load=ORIGINALS_JS,
        apply_default_css=False,
    )

    async def original(evt: gr.EventData, request: gr.Request) -> dict[str, Any]:
        data = evt._data if isinstance(evt._data, dict) else {}
        job_id = str(data.get("job") or "")[:64]
        owner = studio.browser_owner(dict(request.cookies), getattr(request, "username", None))
        src = await original_uri(studio, owner, job_id)
        return {"job": job_id, "src": src}

    originals.original(  # type: ignore[attr-defined]
        original,
        None,
        originals,
        concurrency_limit=4,
        trigger_mode="multiple",
        show_progress="hidden",
        api_visibility="private",
    )


async def original_uri(studio: Studio, owner: str | None, job_id: str) -> str | None:
    """The owner's image job's target as a data URI; None for anything else."""
    if owner is None or not job_id:
        return None
    try:
        job = await studio.scheduler.get(job_id, owner=owner)
    except Exception:  # not found, not the owner's, malformed id: nothing to show
        return None
    target = job.spec.target
    if target is None:
        return None
    path = studio.scheduler.files.inputs_dir(job.id) / target.name
    return await asyncio.to_thread(_image_uri, path)


def _image_uri(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            sniffed = imageio.sniff_image_format(handle.read(16))
        if not sniffed or sniffed == "gif":
            return None
        image = imageio.load_image(path)
    except (OSError, EngineError):
        return None
    scale = min(1.0, ORIGINAL_MAX_SIDE / max(image.shape[:2]))
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return jpeg_data_uri(np.ascontiguousarray(image[:, :, ::-1]))
