"""The Create panel: sources, targets, options, Submit (which returns at once).

Submitting goes through ``Studio.submit`` like the REST API, so the same
limits and checks apply; the job then lives in the scheduler's store, not in
Gradio's queue, and the Queue panel follows it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import secrets
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np

from engine import imageio
from engine.errors import EngineError
from engine.options import (
    BLEND_MODES,
    CONTAINERS,
    DETECTOR_ANGLES,
    DETECTOR_SIZES,
    FACE_ORDERS,
    GENDERS,
    MASK_AREAS,
    MASK_REGIONS,
    MASK_TYPES,
    PRESETS,
    SELECTORS,
    VIDEO_CODECS,
    OutputOptions,
    SwapOptions,
)
from studio.core import Studio
from studio.limits import display_name
from studio.submit import SubmitRequest, UploadedFile
from studio.ui.components import UploadFiles
from studio.ui.i18n import language, t, text

FACE_THUMB = 112
MAX_GALLERY_FACES = 24
SWAP_DEFAULTS = SwapOptions()
OUTPUT_DEFAULTS = OutputOptions()
# Controls in the order the submit handler receives them, with their option names.
OPTION_NAMES = (
    "swapper",
    "pixel_boost",
    "swapper_weight",
    "detector",
    "detector_size",
    "detector_score",
    "detector_angles",
    "landmarker",
    "selector",
    "face_order",
    "face_ages",
    "face_genders",
    "reference_distance",
    "mask_types",
    "occluder",
    "parser",
    "mask_regions",
    "mask_areas",
    "mask_blur",
    "mask_padding:top",
    "mask_padding:right",
    "mask_padding:bottom",
    "mask_padding:left",
    "color_correction",
    "blend_mode",
    "enhancer",
    "enhancer_blend",
    "enhancer_fidelity",
    "frame_enhancer",
    "frame_enhancer_blend",
    "quality",
    "video_codec",
    "container",
    "crf",
    "preset",
)


@dataclasses.dataclass
class TargetFaces:
    """Faces found in the first target, for picking the reference face."""

    path: str | None = None
    boxes: list[list[float]] = dataclasses.field(default_factory=list)
    picked: int | None = None


def build_create_tab(studio: Studio, tabs: gr.Tabs) -> None:
    with gr.Row():
        with gr.Column(scale=5):
            sources = UploadFiles(
                label=t("sources"),
                file_count="multiple",
                file_types=["image"],
                type="filepath",
                elem_id="fs-sources",
            )
            source_faces = gr.Gallery(
                label=t("source_faces"),
                columns=6,
                height=150,
                object_fit="contain",
                allow_preview=False,
                interactive=False,
                elem_id="fs-source-faces",
            )
            targets = UploadFiles(
                label=t("targets"),
                file_count="multiple",
                file_types=["image", "video"],
                type="filepath",
                elem_id="fs-targets",
            )
            target_faces = gr.Gallery(
                label=t("target_faces"),
                columns=6,
                height=150,
                object_fit="contain",
                allow_preview=False,
                interactive=False,
                elem_id="fs-target-faces",
            )
            reference_note = gr.Markdown(elem_id="fs-reference-note")
        with gr.Column(scale=4):
            with gr.Accordion(t("group_swapper"), open=True):
                swapper = gr.Dropdown(
                    model_choices(studio, "swapper", ("auto",)),
                    value=SWAP_DEFAULTS.swapper,
                    label=t("swapper"),
                    elem_id="fs-swapper",
                )
                pixel_boost = gr.Dropdown(
                    ["auto", "native", "256", "384", "512", "768", "1024"],
                    value=SWAP_DEFAULTS.pixel_boost,
                    label=t("pixel_boost"),
                    elem_id="fs-pixel-boost",
                )
                swapper_weight = gr.Slider(
                    0.0,
                    1.0,
                    value=SWAP_DEFAULTS.swapper_weight,
                    step=0.05,
                    label=t("swapper_weight"),
                )
                detector = gr.Dropdown(
                    model_choices(studio, "detector", ("auto", "scrfd", "many")),
                    value=SWAP_DEFAULTS.detector,
                    label=t("detector"),
                )
                detector_size = gr.Dropdown(
                    ["default", *[str(size) for size in DETECTOR_SIZES]],
                    value="default",
                    label=t("detector_size"),
                )
                detector_score = gr.Slider(
                    0.05,
                    0.99,
                    value=SWAP_DEFAULTS.detector_score,
                    step=0.01,
                    label=t("detector_score"),
                )
                detector_angles = gr.CheckboxGroup(
                    [str(angle) for angle in DETECTOR_ANGLES],
                    value=[str(angle) for angle in SWAP_DEFAULTS.detector_angles],
                    label=t("detector_angles"),
                )
                landmarker = gr.Dropdown(
                    model_choices(studio, "landmarker", ("auto", "none")),
                    value=SWAP_DEFAULTS.landmarker,
                    label=t("landmarker"),
                )
            with gr.Accordion(t("group_faces"), open=True):
                selector = gr.Radio(
                    list(SELECTORS),
                    value=SWAP_DEFAULTS.selector,
                    label=t("selector"),
                    elem_id="fs-selector",
                )
                face_order = gr.Dropdown(
                    list(FACE_ORDERS), value=SWAP_DEFAULTS.face_order, label=t("face_order")
                )
                face_ages = gr.Textbox(
                    value="", placeholder="20-40", label=t("face_ages"), max_length=9
                )
                face_genders = gr.CheckboxGroup(list(GENDERS), value=[], label=t("face_genders"))
                reference_distance = gr.Slider(
                    0.0,
                    2.0,
                    value=SWAP_DEFAULTS.reference_distance,
                    step=0.05,
                    label=t("reference_distance"),
                )
            with gr.Accordion(t("group_mask"), open=False):
                mask_types = gr.CheckboxGroup(
                    list(MASK_TYPES),
                    value=list(SWAP_DEFAULTS.mask_types),
                    label=t("mask_types"),
                    elem_id="fs-mask-types",
                )
                occluder = gr.Dropdown(
                    model_choices(studio, "occluder", ("auto", "many")),
                    value=SWAP_DEFAULTS.occluder,
                    label=t("occluder"),
                )
                parser = gr.Dropdown(
                    model_choices(studio, "parser", ("auto",)),
                    value=SWAP_DEFAULTS.parser,
                    label=t("parser"),
                )
                mask_regions = gr.CheckboxGroup(
                    list(MASK_REGIONS),
                    value=list(SWAP_DEFAULTS.mask_regions),
                    label=t("mask_regions"),
                )
                mask_areas = gr.CheckboxGroup(
                    list(MASK_AREAS), value=list(SWAP_DEFAULTS.mask_areas), label=t("mask_areas")
                )
                mask_blur = gr.Slider(
                    0.0, 1.0, value=SWAP_DEFAULTS.mask_blur, step=0.05, label=t("mask_blur")
                )
                paddings = [
                    gr.Slider(0.0, 0.5, value=0.0, step=0.01, label=t(f"mask_padding_{side}"))
                    for side in ("top", "right", "bottom", "left")
                ]
                color_correction = gr.Checkbox(
                    value=SWAP_DEFAULTS.color_correction, label=t("color_correction")
                )
                blend_mode = gr.Radio(
                    list(BLEND_MODES), value=SWAP_DEFAULTS.blend_mode, label=t("blend_mode")
                )
            with gr.Accordion(t("group_enhancer"), open=False):
                enhancer = gr.Dropdown(
                    model_choices(studio, "enhancer", ()),
                    value=[],
                    multiselect=True,
                    label=t("enhancer"),
                    elem_id="fs-enhancer",
                )
                enhancer_blend = gr.Slider(
                    0.0,
                    1.0,
                    value=SWAP_DEFAULTS.enhancer_blend[0],
                    step=0.05,
                    label=t("enhancer_blend"),
                )
                enhancer_fidelity = gr.Slider(
                    0.0,
                    1.0,
                    value=SWAP_DEFAULTS.enhancer_fidelity,
                    step=0.05,
                    label=t("enhancer_fidelity"),
                )
                frame_enhancer = gr.Dropdown(
                    model_choices(studio, "frame_enhancer", ("none",)),
                    value=SWAP_DEFAULTS.frame_enhancer,
                    label=t("frame_enhancer"),
                )
                frame_enhancer_blend = gr.Slider(
                    0.0,
                    1.0,
                    value=SWAP_DEFAULTS.frame_enhancer_blend,
                    step=0.05,
                    label=t("frame_enhancer_blend"),
                )
            with gr.Accordion(t("group_output"), open=False):
                quality = gr.Slider(
                    1, 100, value=OUTPUT_DEFAULTS.quality, step=1, label=t("quality")
                )
                video_codec = gr.Dropdown(
                    list(VIDEO_CODECS), value=OUTPUT_DEFAULTS.video_codec, label=t("video_codec")
                )
                container = gr.Dropdown(
                    ["mp4", *[c for c in CONTAINERS if c != "mp4"]],
                    value="mp4",
                    label=t("container"),
                )
                crf = gr.Slider(0, 51, value=OUTPUT_DEFAULTS.crf, step=1, label=t("crf"))
                preset = gr.Dropdown(list(PRESETS), value=OUTPUT_DEFAULTS.preset, label=t("preset"))
            priority = gr.Slider(
                -10, 10, value=0, step=1, label=t("priority"), elem_id="fs-priority"
            )
            # Submit stays disabled until the person confirms their right to use the faces;
            # the confirmation, the owner and the time go into the job's history.
            consent = gr.Checkbox(value=False, label=t("consent"), elem_id="fs-consent")
            submit = gr.Button(
                t("submit"), variant="primary", elem_id="fs-submit", interactive=False
            )
            status = gr.Markdown(elem_id="fs-submit-status")

    faces_state = gr.State(TargetFaces())
    option_inputs = [
        swapper,
        pixel_boost,
        swapper_weight,
        detector,
        detector_size,
        detector_score,
        detector_angles,
        landmarker,
        selector,
        face_order,
        face_ages,
        face_genders,
        reference_distance,
        mask_types,
        occluder,
        parser,
        mask_regions,
        mask_areas,
        mask_blur,
        *paddings,
        color_correction,
        blend_mode,
        enhancer,
        enhancer_blend,
        enhancer_fidelity,
        frame_enhancer,
        frame_enhancer_blend,
        quality,
        video_codec,
        container,
        crf,
        preset,
    ]

    def show_source_faces(files: list[str] | None, request: gr.Request):
        return _faces_gallery(studio, files or [], language(_accept(request)))

    def show_target_faces(files: list[str] | None, request: gr.Request):
        faces = TargetFaces()
        if not files:
            return [], faces, ""
        faces.path = files[0]
        try:
            image = _load_any(files[0])
            found = studio.face_engine().detect(image)
        except EngineError as exc:
            return [], faces, html.escape(exc.message)
        faces.boxes = [[float(v) for v in face.box] for face in found[:MAX_GALLERY_FACES]]
        gallery = [(_crop(image, box), f"#{n}") for n, box in enumerate(faces.boxes)]
        note = "" if gallery else text(language(_accept(request)), "msg_no_faces")
        return gallery, faces, note

    def pick_reference(faces: TargetFaces, evt: gr.SelectData, request: gr.Request):
        faces = dataclasses.replace(faces, picked=int(evt.index))
        note = text(language(_accept(request)), "msg_reference", index=int(evt.index))
        return faces, "reference", note

    async def submit_jobs(
        request: gr.Request,  # first: Gradio injects it only before the *values
        source_files: list[str] | None,
        target_files: list[str] | None,
        faces: TargetFaces,
        consent_given: bool,
        priority_value: float,
        *values,  # the option_inputs, in OPTION_NAMES order
    ):
        lang = language(_accept(request))
        unchanged = (gr.File(), gr.File(), gr.Gallery(), gr.Gallery(), faces)
        if consent_given is not True:  # the button is disabled too; never trust the client
            return "⚠️ " + text(lang, "msg_no_consent"), gr.Tabs(), *unchanged
        message = await _submit(
            studio, source_files, target_files, faces, priority_value, values, request, lang
        )
        if not message.startswith("✅"):
            return message, gr.Tabs(), *unchanged
        # The jobs hold their own copies now: the uploads and face crops leave Gradio's
        # cache (studio.gradio_guard), and the form starts afresh.
        return message, gr.Tabs(selected="queue"), None, None, [], [], TargetFaces()

    sources.change(
        show_source_faces, sources, source_faces, concurrency_limit=2, api_visibility="private"
    )
    targets.change(
        show_target_faces,
        targets,
        [target_faces, faces_state, reference_note],
        concurrency_limit=2,
        api_visibility="private",
    )
    target_faces.select(
        pick_reference,
        faces_state,
        [faces_state, selector, reference_note],
        api_visibility="private",
    )
    consent.change(
        lambda given: gr.Button(interactive=bool(given)),
        consent,
        submit,
        api_visibility="private",
    )
    submit.click(
        submit_jobs,
        [sources, targets, faces_state, consent, priority, *option_inputs],
        [status, tabs, sources, targets, source_faces, target_faces, faces_state],
        concurrency_limit=None,
        api_visibility="private",
    )


async def _submit(
    studio: Studio,
    source_files: list[str] | None,
    target_files: list[str] | None,
    faces: TargetFaces,
    priority_value: float,
    values: tuple,
    request: gr.Request,
    lang: str,
) -> str:
    if not source_files:
        return "⚠️ " + text(lang, "msg_no_sources")
    if not target_files:
        return "⚠️ " + text(lang, "msg_no_targets")
    owner = studio.browser_owner(dict(request.cookies), getattr(request, "username", None))
    if owner is None:
        return "⚠️ " + text(lang, "msg_error", error="reload the page (no session cookie)")
    try:
        await studio.check_batch_size(owner, None, adding=len(target_files))
    except EngineError as exc:
        return "❌ " + text(lang, "msg_error", error=html.escape(exc.message))
    options = _options(dict(zip(OPTION_NAMES, values, strict=True)))
    options["priority"] = int(priority_value or 0)
    options["consent"] = True
    batch = secrets.token_urlsafe(6) if len(target_files) > 1 else None
    if batch:
        options["batch_id"] = batch
    reference_path: Path | None = None
    try:
        if options.get("selector") == "reference" and faces.picked is not None and faces.path:
            reference_path = await asyncio.to_thread(_save_reference, studio, faces)
        reference = UploadedFile("reference.png", reference_path) if reference_path else None
        submitted, refused = [], []
        for path in target_files:
            request_ = SubmitRequest(
                owner=owner,
                sources=[UploadedFile(display_name(Path(p).name), Path(p)) for p in source_files],
                target=UploadedFile(display_name(Path(path).name), Path(path)),
                reference=reference,
                options=dict(options),
                via="ui",
            )
            try:
                submitted.append(await studio.submit(request_))
            except EngineError as exc:
                refused.append(exc.message)
            except Exception as exc:  # queue full and the like carry a message too
                refused.append(getattr(exc, "message", str(exc)))
    finally:
        if reference_path is not None:
            with contextlib.suppress(OSError):
                reference_path.unlink()
    if not submitted:
        return "❌ " + text(lang, "msg_error", error=html.escape("; ".join(refused)))
    used = [*source_files, *target_files]
    await asyncio.to_thread(
        studio.ui_files.release, owner, used + studio.ui_files.outputs_of(owner)
    )
    lines = ["✅ " + text(lang, "msg_submitted", count=len(submitted))]
    if batch:
        lines.append(text(lang, "msg_batch", batch=batch))
    if refused:
        lines.append(text(lang, "msg_partial", ok=len(submitted), failed=len(refused)))
        lines.extend(f"- {html.escape(message)}" for message in refused)
    return "\n\n".join(lines)


def _options(values: dict[str, Any]) -> dict[str, Any]:
    """Only the options that differ from the defaults, so a job shows what was chosen."""
    values = dict(values)
    sides = [float(values.pop(f"mask_padding:{side}") or 0.0) for side in _SIDES]
    values["mask_padding"] = sides[0] if len(set(sides)) == 1 else sides
    if values.get("detector_size") in (None, "", "default"):
        values.pop("detector_size", None)
    if not (values.get("face_ages") or "").strip():
        values.pop("face_ages", None)
    if "detector_angles" in values:
        values["detector_angles"] = sorted(int(a) for a in values["detector_angles"] or [0])
    defaults = {**dataclasses.asdict(SWAP_DEFAULTS), **dataclasses.asdict(OUTPUT_DEFAULTS)}
    options: dict[str, Any] = {}
    for name, value in values.items():
        if name == "container":
            if value and value != "mp4":
                options[name] = value
            continue
        default = defaults.get(name)
        if name == "enhancer_blend":  # one slider for the chain
            if float(value) != SWAP_DEFAULTS.enhancer_blend[0]:
                options[name] = float(value)
            continue
        if isinstance(default, tuple):
            value = list(value or [])
            if value == list(default):
                continue
        elif isinstance(default, int) and not isinstance(default, bool):
            value = int(value)
        if name == "detector_size":
            value = int(value)
        if value != default:
            options[name] = value
    return options


_SIDES = ("top", "right", "bottom", "left")


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


def model_label(status) -> str:
    """``name — installed · 403 MB · research`` (``custom`` where it is)."""
    parts = [status.name]
    details = [status.state if status.state != "embedded" else "built in"]
    size = status.size or getattr(status, "size_hint", 0)
    if size and not status.embedded:
        details.append(f"{'~' if not status.size else ''}{size / 1e6:.0f} MB")
    licence_class = getattr(status, "licence_class", "")
    if licence_class:
        details.append(licence_class)
    if getattr(status, "custom", False):
        details.append("custom")
    return f"{parts[0]} — {' · '.join(details)}"


def _accept(request: gr.Request | None) -> str | None:
    if request is None:
        return None
    headers = getattr(request, "headers", None) or {}
    return headers.get("accept-language")


def _load_any(path: str) -> np.ndarray:
    """An image, or a video's first frame (for the reference gallery)."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    sniffed = imageio.sniff_image_format(head)
    if sniffed and sniffed != "gif":
        return imageio.load_image(path)
    from engine.video.decode import read_frame

    return read_frame(path, 0)


def _crop(image: np.ndarray, box: list[float], margin: float = 0.25) -> np.ndarray:
    """An RGB thumbnail of a face with some room around it."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    left = int(max(0, x1 - margin * w))
    top = int(max(0, y1 - margin * h))
    right = int(min(image.shape[1], x2 + margin * w))
    bottom = int(min(image.shape[0], y2 + margin * h))
    crop = image[top:bottom, left:right]
    if crop.size == 0:
        crop = image
    scale = FACE_THUMB / max(crop.shape[:2])
    crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop[:, :, ::-1])


def _faces_gallery(studio: Studio, files: list[str], lang: str) -> list:
    gallery = []
    for number, path in enumerate(files, 1):
        try:
            image = imageio.load_image(path)
            faces = studio.face_engine().detect(image)
        except EngineError as exc:
            gallery.append((np.zeros((8, 8, 3), np.uint8), f"{number}: {exc.message}"))
            continue
        if not faces:
            gallery.append(
                (
                    _crop(image, [0, 0, image.shape[1], image.shape[0]], 0),
                    f"{number}: {text(lang, 'msg_no_faces')}",
                )
            )
        for index, face in enumerate(faces[:4]):
            label = f"{number}" + (" ✓" if index == 0 else "")
            gallery.append((_crop(image, [float(v) for v in face.box]), label))
    return gallery[:MAX_GALLERY_FACES]


def _save_reference(studio: Studio, faces: TargetFaces) -> Path:
    """The picked face of the first target, saved as the jobs' reference image."""
    assert faces.path is not None and faces.picked is not None
    image = _load_any(faces.path)
    box = faces.boxes[faces.picked]
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    left, top = int(max(0, x1 - 0.6 * w)), int(max(0, y1 - 0.6 * h))
    right = int(min(image.shape[1], x2 + 0.6 * w))
    bottom = int(min(image.shape[0], y2 + 0.6 * h))
    path = studio.new_upload_path().with_suffix(".png")
    imageio.save_image(image[top:bottom, left:right], path)
    return path
