"""The Create panel: sources, targets, their faces, a live preview, options, Submit.

Submitting goes through ``Studio.submit`` like the REST API, so the same
limits and checks apply; the job then lives in the scheduler's store, not in
Gradio's queue, and the Queue panel follows it from there.

Before Submit, the panel shows the faces of the first target left to right (the
numbering of ``face_map``) with a source picker beside each, and a preview of the
chosen frame swapped with the current options (``studio.ui.live_preview``), refreshed
shortly after any change. A video target gets a player, a frame slider for the preview
and a trim range; the face cards then come from the first frame of the trimmed range,
and "Find faces in the video" runs the tracking pass over that range
(``studio.ui.tracks``), after which the cards are the video's tracks, each with the
frames where it appears and a source picker (``face_map`` ``track`` entries). A model
that is not installed offers its licence, and for the operator its download, beside
the dropdown that chose it (``studio.ui.model_offer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import logging
import secrets
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from engine import imageio
from engine.errors import Canceled, EngineError
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
    TRIM_MODES,
    VIDEO_CODECS,
    OutputOptions,
    SwapOptions,
)
from engine.progress import CancelToken, Progress
from studio.core import Studio
from studio.limits import display_name
from studio.submit import SubmitRequest, UploadedFile
from studio.ui import live_preview, model_offer, target_state
from studio.ui import tracks as video_tracks
from studio.ui.components import UploadFiles
from studio.ui.faces import (
    CardText,
    FaceCard,
    age_gender_details,
    face_thumbnail,
    faces_html,
    jpeg_data_uri,
    ordered_boxes,
    square_around,
    whole_thumbnail,
)
from studio.ui.i18n import language, t, template, text
from studio.ui.model_offer import ModelField, model_choices, model_label
from studio.ui.models import is_operator
from studio.ui.target_state import TargetFaces

log = logging.getLogger(__name__)

MAX_GALLERY_FACES = target_state.MAX_CARDS
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
# The model dropdowns: their catalogue kind and fixed words.
MODEL_FIELDS = {
    "swapper": ModelField("swapper", ("auto",)),
    "detector": ModelField("detector", ("auto", "scrfd", "many")),
    "landmarker": ModelField("landmarker", ("auto", "none")),
    "occluder": ModelField("occluder", ("auto", "many")),
    "parser": ModelField("parser", ("auto",)),
    "enhancer": ModelField("enhancer", ()),
    "frame_enhancer": ModelField("frame_enhancer", ("none",)),
}
# The face cards' script: a source picked for a face, or a face picked as the reference,
# is sent to the server as the component's 'assign' or 'pick' event. Plain <select> and
# <button> elements, so the keyboard works as with any form.
FACES_JS = """
const kindOf = (node) => {
  const list = node.closest('.fs-faces');
  return (list && list.dataset.kind) || 'face';  // 'face' (a frame's faces) or 'track'
};
element.addEventListener('change', (event) => {
  const picker = event.target.closest ? event.target.closest('select.fs-face-source') : null;
  if (!picker) return;
  const card = picker.closest('.fs-face');
  if (picker.value === '') delete card.dataset.source; else card.dataset.source = picker.value;
  const kind = kindOf(picker);
  const map = {};  // every card's choice: the newest event carries the whole picture
  for (const each of element.querySelectorAll('select.fs-face-source')) {
    if (each.value !== '') map[each.dataset[kind]] = Number(each.value);
  }
  trigger('assign', { map: map, kind: kind });
});
element.addEventListener('click', (event) => {
  const button = event.target.closest ? event.target.closest('button.fs-face-ref') : null;
  if (!button) return;
  const kind = kindOf(button);
  trigger('pick', { kind: kind, index: Number(button.dataset[kind]) });
});
"""

__all__ = ["build_create_tab", "model_choices", "model_label"]


@dataclasses.dataclass(frozen=True)
class CreateTab:
    """What the page's load event refreshes (the model dropdowns' choices), and the
    in-place model downloads (the Models panel follows them)."""

    dropdowns: list[gr.Dropdown]
    refresh: Any
    downloads: list[Any] = dataclasses.field(default_factory=list)  # their event dependencies


def build_create_tab(studio: Studio, tabs: gr.Tabs) -> CreateTab:
    dropdowns: dict[str, gr.Dropdown] = {}
    offers: list[tuple[list[str], gr.Markdown, gr.Button, gr.State]] = []

    def model_dropdown(name: str, **kwargs) -> gr.Dropdown:
        field = MODEL_FIELDS[name]
        dropdown = gr.Dropdown(model_choices(studio, field.kind, field.fixed), **kwargs)
        dropdowns[name] = dropdown
        return dropdown

    def offer_block(names: list[str], group: str) -> None:
        note = gr.Markdown(elem_id=f"fs-model-offer-{group}", elem_classes=["fs-model-offer"])
        button = gr.Button(
            t("offer_download"),
            visible=False,
            size="sm",
            elem_id=f"fs-model-fetch-{group}",
            elem_classes=["fs-model-fetch"],
        )
        offers.append((names, note, button, gr.State(None)))

    with gr.Row(elem_id="fs-create", equal_height=False):
        with gr.Column(scale=5, min_width=280):
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
                fit_columns=False,
                object_fit="contain",
                allow_preview=False,
                interactive=False,
                elem_id="fs-source-faces",
                elem_classes=["fs-face-gallery"],
            )
            targets = UploadFiles(
                label=t("targets"),
                file_count="multiple",
                file_types=["image", "video"],
                type="filepath",
                elem_id="fs-targets",
            )
            with gr.Group(visible=False, elem_id="fs-video") as video_group:
                player = gr.Video(
                    label=t("video_player"), interactive=False, elem_id="fs-player", height=260
                )
                frame = gr.Slider(
                    0, 1, value=0, step=1, label=t("preview_frame"), elem_id="fs-frame"
                )
                with gr.Row():
                    trim_start = gr.Number(
                        value=0.0,
                        minimum=0.0,
                        precision=2,
                        label=t("trim_start"),
                        elem_id="fs-trim-start",
                        min_width=120,
                    )
                    trim_end = gr.Number(
                        value=None,
                        minimum=0.0,
                        precision=2,
                        label=t("trim_end"),
                        elem_id="fs-trim-end",
                        min_width=120,
                    )
                trim_mode = gr.Radio(
                    list(TRIM_MODES), value="cut", label=t("trim_mode"), elem_id="fs-trim-mode"
                )
                # The tracking pass reads the whole (trimmed) range: on demand, after the
                # note has said how many frames that is.
                tracks_note = gr.Markdown(elem_id="fs-tracks-note")
                find_tracks = gr.Button(
                    t("find_tracks"), size="sm", variant="secondary", elem_id="fs-find-tracks"
                )
            target_faces = gr.HTML(
                label=t("target_faces"),
                show_label=True,
                container=True,
                elem_id="fs-target-faces",
                js_on_load=FACES_JS,
            )
            reference_note = gr.Markdown(elem_id="fs-reference-note")
            # Previews and Submit wait until the person confirms their right to use the
            # faces; the confirmation, the owner and the time go into the job's history.
            consent = gr.Checkbox(value=False, label=t("consent"), elem_id="fs-consent")
            preview = gr.HTML(elem_id="fs-preview", js_on_load=None, min_height=0)
            preview_note = gr.Markdown(elem_id="fs-preview-note")
        with gr.Column(scale=4, min_width=280):
            with gr.Accordion(t("group_swapper"), open=True):
                swapper = model_dropdown(
                    "swapper",
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
                detector = model_dropdown(
                    "detector",
                    value=SWAP_DEFAULTS.detector,
                    label=t("detector"),
                    elem_id="fs-detector",
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
                landmarker = model_dropdown(
                    "landmarker",
                    value=SWAP_DEFAULTS.landmarker,
                    label=t("landmarker"),
                    elem_id="fs-landmarker",
                )
                offer_block(["swapper", "detector", "landmarker"], "swapper")
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
                occluder = model_dropdown(
                    "occluder",
                    value=SWAP_DEFAULTS.occluder,
                    label=t("occluder"),
                    elem_id="fs-occluder",
                )
                parser = model_dropdown(
                    "parser", value=SWAP_DEFAULTS.parser, label=t("parser"), elem_id="fs-parser"
                )
                offer_block(["occluder", "parser"], "mask")
                mask_regions = gr.CheckboxGroup(
                    list(MASK_REGIONS),
                    value=list(SWAP_DEFAULTS.mask_regions),
                    label=t("mask_regions"),
                )
                mask_areas = gr.CheckboxGroup(
                    list(MASK_AREAS), value=list(SWAP_DEFAULTS.mask_areas), label=t("mask_areas")
                )
                mask_blur = gr.Slider(
                    0.0,
                    1.0,
                    value=SWAP_DEFAULTS.mask_blur,
                    step=0.05,
                    label=t("mask_blur"),
                    elem_id="fs-mask-blur",
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
                enhancer = model_dropdown(
                    "enhancer",
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
                frame_enhancer = model_dropdown(
                    "frame_enhancer",
                    value=SWAP_DEFAULTS.frame_enhancer,
                    label=t("frame_enhancer"),
                    elem_id="fs-frame-enhancer",
                )
                offer_block(["enhancer", "frame_enhancer"], "enhancer")
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
    debouncer = live_preview.Debouncer()
    finder = video_tracks.TrackFinder(studio)

    # -- the faces ----------------------------------------------------------------------

    def show_source_faces(files: list[str] | None, request: gr.Request):
        return _faces_gallery(studio, files or [], language(_accept(request)))

    def render_target_faces(faces: TargetFaces, files: list[str] | None, request: gr.Request):
        return _cards(faces, files or [], language(_accept(request)))

    def show_target(files: list[str] | None, request: gr.Request):
        """The first target's faces (left to right) and, for a video, its controls and
        what finding its faces would read."""
        lang = language(_accept(request))
        faces = TargetFaces()
        hidden = (gr.Group(visible=False), gr.Video(value=None), gr.Slider(value=0))
        trims = (gr.Number(value=0.0), gr.Number(value=None))
        if not files:
            return faces, "", *hidden, *trims, ""
        faces.path = files[0]
        try:
            faces.kind = "image" if _is_image(files[0]) else "video"
            image = live_preview.target_frame(files[0], 0)
            found = _classified(studio, image, studio.face_engine().detect(image))
            video = _video_controls(faces, files[0]) if faces.kind == "video" else None
            span = video_tracks.video_span(files[0], {}) if video is not None else None
        except EngineError as exc:
            return faces, html.escape(exc.message), *hidden, *trims, ""
        faces.boxes = ordered_boxes(found)[:MAX_GALLERY_FACES]
        faces.thumbs = [jpeg_data_uri(face_thumbnail(image, box)) for box in faces.boxes]
        faces.details = age_gender_details(found)[:MAX_GALLERY_FACES]
        note = "" if faces.boxes else text(lang, "msg_no_faces")
        if video is None or span is None:
            return faces, note, *hidden, *trims, ""
        return faces, note, *video, _cost_note(lang, span)

    def retrim(
        faces: TargetFaces,
        source_files: list[str] | None,
        target_files: list[str] | None,
        trim_from: float | None,
        trim_to: float | None,
        request: gr.Request,
    ):
        """A new trim range: the face cards come from its first frame; tracks found for
        another range no longer apply."""
        unchanged = (gr.skip(), gr.skip(), gr.skip(), gr.skip())
        files = target_files or []
        if faces.kind != "video" or not faces.path or not files or files[0] != faces.path:
            return unchanged
        lang = language(_accept(request))
        trim = _trim(faces, trim_from, trim_to, None)
        if trim == faces.trim:
            return unchanged
        try:
            span = video_tracks.video_span(faces.path, trim)
            image = live_preview.target_frame(faces.path, span.first)
            found = _classified(studio, image, studio.face_engine().detect(image))
        except EngineError as exc:
            return gr.skip(), gr.skip(), "⚠️ " + html.escape(exc.message), gr.skip()
        boxes = ordered_boxes(found)[:MAX_GALLERY_FACES]
        same_frame = span.first == faces.first_frame and not faces.by_track
        faces = faces.changed(
            boxes=boxes,
            thumbs=[jpeg_data_uri(face_thumbnail(image, box)) for box in boxes],
            details=age_gender_details(found)[:MAX_GALLERY_FACES],
            picked=faces.picked if same_frame else None,
            assigned=dict(faces.assigned) if same_frame else {},
            first_frame=span.first,
            trim=trim,
            tracks=(),
            tracks_key=None,
            track_assigned={},
            picked_track=None,
        )
        note = "" if boxes else text(lang, "msg_no_faces")
        return faces, _cards(faces, source_files or [], lang), _cost_note(lang, span), note

    async def find_video_tracks(
        request: gr.Request,  # first: Gradio injects it only before the *values
        faces: TargetFaces,
        source_files: list[str] | None,
        target_files: list[str] | None,
        trim_from: float | None,
        trim_to: float | None,
        progress=gr.Progress(),  # Gradio fills it: the pass's progress bar
        *values,  # the option_inputs, in OPTION_NAMES order
    ):
        """The video's tracking pass over the trimmed range, on a worker thread, with a
        live progress bar; then one card per track."""
        lang = language(_accept(request))
        files = target_files or []
        if faces.kind != "video" or not faces.path or not files or files[0] != faces.path:
            return gr.skip(), gr.skip(), gr.skip()
        session = getattr(request, "session_hash", None) or "-"
        trim = _trim(faces, trim_from, trim_to, None)
        options = {**_options(dict(zip(OPTION_NAMES, values, strict=True))), **trim}
        cancel = CancelToken()

        def report(update: Progress) -> None:
            if update.total:
                desc = text(lang, "tracks_running", done=update.done, total=update.total)
                progress((update.done, update.total), desc=desc, unit="frames")

        try:
            setup, span = await asyncio.to_thread(
                target_state.pass_setup, studio, finder, faces, options
            )
            progress((0, span.count), desc=text(lang, "tracks_running", done=0, total=span.count))
            found = await asyncio.to_thread(
                finder.run, session, faces.path, setup, span, progress=report, cancel=cancel
            )
        except asyncio.CancelledError:  # the page went away: stop reading frames
            cancel.cancel()
            raise
        except Canceled:
            return gr.skip(), gr.skip(), gr.skip()
        except EngineError as exc:
            return gr.skip(), gr.skip(), "⚠️ " + html.escape(exc.message)
        faces = target_state.with_tracks(faces, found, trim)
        return faces, _cards(faces, source_files or [], lang), _tracks_note(lang, found)

    def assign(faces: TargetFaces, files: list[str] | None, evt: gr.EventData):
        data = evt._data if isinstance(evt._data, dict) else {}
        chosen = data.get("map")
        if not isinstance(chosen, dict):
            return faces
        if (data.get("kind") == "track") != faces.by_track:
            return faces  # a choice made on cards the page no longer shows
        if faces.by_track:
            known = [card.track_id for card in faces.tracks]
            picked = target_state.kept_choices(chosen, known, len(files or []))
            return faces.changed(track_assigned=picked)
        picked = target_state.kept_choices(chosen, range(len(faces.boxes)), len(files or []))
        return faces.changed(assigned=picked)

    def pick_reference(
        faces: TargetFaces,
        files: list[str] | None,
        evt: gr.EventData,
        request: gr.Request,
    ):
        data = evt._data if isinstance(evt._data, dict) else {}
        index = data.get("index", data.get("face"))
        lang = language(_accept(request))
        nothing = faces, gr.Radio(), "", gr.HTML()
        if not isinstance(index, int) or (data.get("kind") == "track") != faces.by_track:
            return nothing
        if faces.by_track:
            if index not in {card.track_id for card in faces.tracks}:
                return nothing
            faces = faces.changed(picked_track=index)
            note = text(lang, "msg_reference_track", index=index)
        else:
            if not 0 <= index < len(faces.boxes):
                return nothing
            faces = faces.changed(picked=index)
            note = text(lang, "msg_reference", index=index)
        return faces, "reference", note, _cards(faces, files or [], lang)

    # -- the preview --------------------------------------------------------------------

    async def refresh_preview(
        request: gr.Request,  # first: Gradio injects it only before the *values
        source_files: list[str] | None,
        target_files: list[str] | None,
        faces: TargetFaces,
        consent_given: bool,
        frame_index: float | None,
        *values,  # the option_inputs, in OPTION_NAMES order
    ):
        tab = getattr(request, "session_hash", None) or "-"
        ticket = await debouncer.settle(tab, faces.revision)
        if ticket is None:
            log.debug("preview of tab %s: a newer change will answer", tab)
            return gr.skip(), gr.skip()  # a newer change will answer
        lang = language(_accept(request))
        if not source_files or not target_files:
            return "", ""
        if consent_given is not True:
            return "", text(lang, "preview_needs_consent")
        owner = studio.browser_owner(dict(request.cookies), getattr(request, "username", None))
        if owner is None:
            return "", text(lang, "msg_error", error="reload the page (no session cookie)")
        index = int(frame_index or 0) if faces.kind == "video" else 0
        options = _options(dict(zip(OPTION_NAMES, values, strict=True)))
        options["consent"] = True
        face_map = faces.face_map(len(source_files))
        if face_map:
            options["face_map"] = face_map
        target = target_files[0]
        by_track = bool(face_map) and faces.by_track and faces.path == target
        reference_path = frame_path = None
        try:
            if _wants_reference(options, faces, target):
                reference_path = await asyncio.to_thread(_save_reference, studio, faces)
            target_file = UploadedFile(display_name(Path(target).name), Path(target))
            preview_index = index
            if by_track:
                # The preview swaps one frame and cannot run the tracking pass: the frame
                # goes to it as an image, with face entries for its tracked faces.
                mapped = await asyncio.to_thread(
                    target_state.track_preview, studio, finder, tab, faces, options, index
                )
                if isinstance(mapped, str):
                    return "", text(lang, mapped, frame=index)
                options["face_map"], frame_image, frame_path = mapped
                name = f"{Path(target_file.original).stem}-frame-{index}.png"
                target_file, preview_index = UploadedFile(name, frame_path), 0
            submission = SubmitRequest(
                owner=owner,
                sources=_uploads(source_files),
                target=target_file,
                reference=UploadedFile("reference.png", reference_path) if reference_path else None,
                options=options,
                via="ui",
            )
            rendered = await live_preview.render_when_free(
                studio, submission, preview_index, lambda: debouncer.current(tab, ticket)
            )
            if rendered is None or not debouncer.current(tab, ticket):
                log.debug("preview %s of tab %s: superseded after rendering", ticket, tab)
                return gr.skip(), gr.skip()
            if by_track:
                rendered = dataclasses.replace(rendered, frame=index)
                before = await asyncio.to_thread(live_preview.before_uri, frame_image)
            else:
                before = await asyncio.to_thread(_before, target, rendered.frame)
        except Canceled:
            log.debug("preview %s of tab %s: canceled by a newer one", ticket, tab)
            return gr.skip(), gr.skip()
        except EngineError as exc:
            log.debug("preview %s of tab %s: refused: %s", ticket, tab, exc.message)
            return "", "⚠️ " + html.escape(exc.message)
        finally:
            for path in (reference_path, frame_path):
                if path is not None:
                    with contextlib.suppress(OSError):
                        path.unlink()
        words = live_preview.CompareText(
            badge=text(lang, "preview_badge"),
            before=text(lang, "preview_before"),
            after=text(lang, "preview_after"),
            slider=text(lang, "preview_slider"),
            caption=_caption(lang, faces.kind, rendered),
        )
        note = "\n\n".join(f"⚠️ {html.escape(w)}" for w in rendered.warnings)
        log.debug("preview %s of tab %s: %d face(s) swapped", ticket, tab, rendered.faces_swapped)
        return live_preview.compare_html(before, rendered.jpeg, words, ticket), note

    # -- models where they are chosen ---------------------------------------------------

    def offer_for(names: list[str]):
        def offer(request: gr.Request, *chosen):
            lang = language(_accept(request))
            for value in chosen:
                status = model_offer.missing(studio, value)
                if status is not None:
                    allowed = is_operator(studio, request)
                    return (
                        model_offer.offer_markdown(status, lang, allowed),
                        gr.Button(visible=allowed),
                        status.name,
                    )
            return "", gr.Button(visible=False), None

        return offer

    def fetch_model(name: str | None, request: gr.Request, progress=gr.Progress()):
        lang = language(_accept(request))
        unchanged = [gr.Dropdown() for _ in MODEL_FIELDS]
        if not is_operator(studio, request):
            return "⚠️ " + text(lang, "msg_operator_only"), gr.Button(visible=False), *unchanged
        if not name or name not in studio.models.registry:
            return "", gr.Button(visible=False), *unchanged
        note = model_offer.download(studio, name, lang, progress)
        installed = studio.models.status(name).installed
        return note, gr.Button(visible=not installed), *refresh_models()

    def refresh_models():
        return [
            gr.Dropdown(choices=model_choices(studio, field.kind, field.fixed))
            for field in MODEL_FIELDS.values()
        ]

    # -- submit -------------------------------------------------------------------------

    async def submit_jobs(
        request: gr.Request,  # first: Gradio injects it only before the *values
        source_files: list[str] | None,
        target_files: list[str] | None,
        faces: TargetFaces,
        consent_given: bool,
        priority_value: float,
        trim_from: float | None,
        trim_to: float | None,
        trim_how: str | None,
        *values,  # the option_inputs, in OPTION_NAMES order
    ):
        lang = language(_accept(request))
        unchanged = (gr.File(), gr.File(), gr.Gallery(), gr.HTML(), faces, gr.HTML())
        if consent_given is not True:  # the button is disabled too; never trust the client
            return "⚠️ " + text(lang, "msg_no_consent"), gr.Tabs(), *unchanged
        trim = _trim(faces, trim_from, trim_to, trim_how)
        message = await _submit(
            studio,
            finder,
            source_files,
            target_files,
            faces,
            priority_value,
            trim,
            values,
            request,
            lang,
        )
        if not message.startswith("✅"):
            return message, gr.Tabs(), *unchanged
        # The jobs hold their own copies now: the uploads and face crops leave Gradio's
        # cache (studio.gradio_guard), and the form starts afresh.
        return (
            message,
            gr.Tabs(selected="queue"),
            None,
            None,
            [],
            "",
            TargetFaces(),
            "",
        )

    # -- wiring -------------------------------------------------------------------------

    preview_event = {
        "fn": refresh_preview,
        "inputs": [sources, targets, faces_state, consent, frame, *option_inputs],
        "outputs": [preview, preview_note],
        "concurrency_limit": None,  # the preview service admits and bounds them
        "trigger_mode": "multiple",  # every change counts; the debouncer keeps the newest
        "show_progress": "hidden",
        "api_visibility": "private",
    }
    sources.change(
        show_source_faces, sources, source_faces, concurrency_limit=2, api_visibility="private"
    ).then(
        render_target_faces,
        [faces_state, sources],
        target_faces,
        show_progress="hidden",
        api_visibility="private",
    ).then(**preview_event)
    targets.change(
        show_target,
        targets,
        [
            faces_state,
            reference_note,
            video_group,
            player,
            frame,
            trim_start,
            trim_end,
            tracks_note,
        ],
        concurrency_limit=2,
        api_visibility="private",
    ).then(
        render_target_faces,
        [faces_state, sources],
        target_faces,
        show_progress="hidden",
        api_visibility="private",
    ).then(**preview_event)
    gr.on(
        [trim_start.change, trim_end.change],
        retrim,
        [faces_state, sources, targets, trim_start, trim_end],
        [faces_state, target_faces, tracks_note, reference_note],
        trigger_mode="always_last",
        concurrency_limit=2,
        show_progress="hidden",
        api_visibility="private",
    )
    find_tracks.click(
        find_video_tracks,
        [faces_state, sources, targets, trim_start, trim_end, *option_inputs],
        [faces_state, target_faces, tracks_note],
        # The pass reads the whole range: one at a time on this server, the others wait
        # in Gradio's queue (with their place shown).
        concurrency_limit=1,
        concurrency_id="video-tracks",
        show_progress="full",
        show_progress_on=[target_faces],
        api_visibility="private",
    ).then(**preview_event)
    target_faces.assign(  # type: ignore[attr-defined]
        assign,
        [faces_state, sources],
        faces_state,
        # Each event carries every face's choice; one queue, in order, so the newest wins
        # (a deferred "always_last" event would lose its data).
        trigger_mode="multiple",
        concurrency_limit=1,
        show_progress="hidden",
        api_visibility="private",
    ).then(**preview_event)
    target_faces.pick(  # type: ignore[attr-defined]
        pick_reference,
        [faces_state, sources],
        [faces_state, selector, reference_note, target_faces],
        show_progress="hidden",
        api_visibility="private",
    )
    gr.on(
        [consent.change, frame.change, *[control.change for control in option_inputs]],
        **preview_event,
    )
    consent.change(
        lambda given: gr.Button(interactive=bool(given)),
        consent,
        submit,
        api_visibility="private",
    )
    downloads = []
    for names, note, button, pending in offers:
        chosen = [dropdowns[name] for name in names]
        gr.on(
            [dropdown.input for dropdown in chosen],
            offer_for(names),
            chosen,
            [note, button, pending],
            show_progress="hidden",
            api_visibility="private",
        )
        downloaded = button.click(
            fetch_model,
            pending,
            [note, button, *dropdowns.values()],
            concurrency_limit=1,
            api_visibility="private",
        )
        downloads.append(downloaded)
    submit.click(
        submit_jobs,
        [
            sources,
            targets,
            faces_state,
            consent,
            priority,
            trim_start,
            trim_end,
            trim_mode,
            *option_inputs,
        ],
        [status, tabs, sources, targets, source_faces, target_faces, faces_state, preview],
        concurrency_limit=None,
        api_visibility="private",
    )
    return CreateTab(list(dropdowns.values()), refresh_models, downloads)


def _before(target: str, frame: int) -> str:
    return live_preview.before_uri(live_preview.target_frame(target, frame))


def _caption(lang: str, kind: str, rendered: live_preview.Rendered) -> str:
    key = "preview_caption_video" if kind == "video" else "preview_caption"
    caption = text(lang, key, frame=rendered.frame, faces=rendered.faces_swapped)
    if not rendered.marked:
        caption += " · " + text(lang, "preview_unmarked")
    return caption


def _video_controls(faces: TargetFaces, path: str) -> tuple:
    """The player, the frame slider and the trim range for a video target."""
    from engine.video.probe import probe

    info = probe(path)
    faces.frames, faces.duration = max(int(info.frames), 1), float(info.duration)
    return (
        gr.Group(visible=True),
        gr.Video(value=path),
        gr.Slider(minimum=0, maximum=max(faces.frames - 1, 1), value=0, step=1),
        gr.Number(value=0.0, maximum=round(faces.duration, 2)),
        gr.Number(value=round(faces.duration, 2), maximum=round(faces.duration, 2)),
    )


def _trim(
    faces: TargetFaces, start: float | None, end: float | None, mode: str | None
) -> dict[str, Any]:
    """The trim options, when they trim the first (video) target."""
    if faces.kind != "video":
        return {}
    trim: dict[str, Any] = {}
    if start is not None and float(start) > 0:
        trim["trim_start"] = float(start)
    if end is not None and float(end) > 0 and (faces.duration is None or end < faces.duration):
        trim["trim_end"] = float(end)
    if trim and mode in TRIM_MODES and mode != OUTPUT_DEFAULTS.trim_mode:
        trim["trim_mode"] = mode
    return trim


def _cost_note(lang: str, span: video_tracks.VideoSpan) -> str:
    return text(
        lang,
        "tracks_cost",
        count=span.count,
        start=f"{span.start_seconds:.2f}",
        end=f"{span.end_seconds:.2f}",
        duration=f"{span.duration:.2f}",
        frames=span.frames,
        first=span.first,
    )


def _tracks_note(lang: str, found: video_tracks.TrackPass) -> str:
    span = found.span
    if not found.cards:
        return text(lang, "tracks_none", first=span.first, last=span.end - 1)
    note = text(
        lang,
        "tracks_found",
        count=len(found.analysis.tracks),
        first=span.first,
        last=span.end - 1,
        start=f"{span.start_seconds:.2f}",
        end=f"{span.end_seconds:.2f}",
    )
    if found.hidden:
        note += " " + text(lang, "tracks_hidden", count=found.hidden)
    return note


def _uploads(files: list[str]) -> list[UploadedFile]:
    return [UploadedFile(display_name(Path(p).name), Path(p)) for p in files]


def _wants_reference(options: dict[str, Any], faces: TargetFaces, target: str) -> bool:
    """The picked face (or track) becomes the jobs' reference image (unless faces are
    mapped)."""
    return (
        options.get("selector") == "reference"
        and "face_map" not in options
        and faces.reference_crop() is not None
        and faces.path is not None
    )


def _classified(studio: Studio, image: np.ndarray, faces: list) -> list:
    """The faces with the age/gender classifier's answers, when it is installed (and the
    operator's licence filter allows it); unchanged otherwise."""
    if not faces:
        return faces
    try:
        name = next(
            (s.name for s in studio.models.list() if s.kind == "classifier" and s.installed),
            None,
        )
        if name is None:
            return faces
        return studio.face_engine().classifier(name).annotate(image, faces)
    except EngineError:
        return faces


def _cards(faces: TargetFaces, source_files: list[str], lang: str) -> str:
    """The face cards: a video's tracks once its pass has run, else the faces of the
    first frame (of the trimmed range), left to right."""
    if faces.by_track:
        cards = [_track_card(faces, card, lang) for card in faces.tracks]
        label, kind = template(lang, "track_card"), "track"
    else:
        details = faces.details + [""] * (len(faces.thumbs) - len(faces.details))
        cards = [
            FaceCard(index, thumb, faces.assigned.get(index), faces.picked == index, details[index])
            for index, thumb in enumerate(faces.thumbs)
        ]
        label, kind = template(lang, "face_card"), "face"
    words = CardText(
        face=label,
        source=text(lang, "face_source"),
        none=text(lang, "face_source_none"),
        reference=text(lang, "face_reference"),
        source_item=template(lang, "face_source_item"),
    )
    names = [display_name(Path(path).name) for path in source_files]
    return faces_html(cards, names, words, kind)


def _track_card(faces: TargetFaces, card: video_tracks.TrackCard, lang: str) -> FaceCard:
    detail = text(
        lang,
        "track_detail",
        first=card.first_frame,
        last=card.last_frame,
        count=card.frames,
        start=f"{card.first_seconds:.2f}",
        end=f"{card.last_seconds:.2f}",
    )
    return FaceCard(
        card.track_id,
        card.thumbnail,
        faces.track_assigned.get(card.track_id),
        faces.picked_track == card.track_id,
        detail,
    )


async def _submit(
    studio: Studio,
    finder: video_tracks.TrackFinder,
    source_files: list[str] | None,
    target_files: list[str] | None,
    faces: TargetFaces,
    priority_value: float,
    trim: dict[str, Any],
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
    face_map = faces.face_map(len(source_files))
    # Track ids belong to the first target's pass: its job alone gets them.
    by_track = bool(face_map) and faces.by_track and faces.path == target_files[0]
    if by_track:
        try:
            current = await asyncio.to_thread(
                target_state.tracks_key_for, studio, finder, faces, {**options, **trim}
            )
        except EngineError as exc:
            return "❌ " + text(lang, "msg_error", error=html.escape(exc.message))
        if current != faces.tracks_key:
            return "⚠️ " + text(lang, "tracks_stale")
    elif face_map and not faces.by_track:  # a source per face; else the selector decides
        options["face_map"] = face_map
    batch = secrets.token_urlsafe(6) if len(target_files) > 1 else None
    if batch:
        options["batch_id"] = batch
    reference_path: Path | None = None
    try:
        if _wants_reference(options, faces, target_files[0]) and not by_track:
            reference_path = await asyncio.to_thread(_save_reference, studio, faces)
        reference = UploadedFile("reference.png", reference_path) if reference_path else None
        submitted, refused = [], []
        for number, path in enumerate(target_files):
            per_target = dict(options)
            if by_track and number == 0:
                per_target["face_map"] = face_map
            if not _is_image(path):
                per_target.update(trim)
            request_ = SubmitRequest(
                owner=owner,
                sources=_uploads(source_files),
                target=UploadedFile(display_name(Path(path).name), Path(path)),
                reference=reference,
                options=per_target,
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


def _accept(request: gr.Request | None) -> str | None:
    if request is None:
        return None
    headers = getattr(request, "headers", None) or {}
    return headers.get("accept-language")


def _is_image(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(16)
    sniffed = imageio.sniff_image_format(head)
    return bool(sniffed) and sniffed != "gif"


def _faces_gallery(studio: Studio, files: list[str], lang: str) -> list:
    """Each source's faces, largest first (the largest is used, ✓), as square thumbnails."""
    gallery = []
    for number, path in enumerate(files, 1):
        try:
            image = imageio.load_image(path)
            faces = studio.face_engine().detect(image)
        except EngineError as exc:
            gallery.append((np.zeros((8, 8, 3), np.uint8), f"{number}: {exc.message}"))
            continue
        if not faces:
            gallery.append((whole_thumbnail(image), f"{number}: {text(lang, 'msg_no_faces')}"))
        for index, face in enumerate(faces[:4]):
            label = f"{number}" + (" ✓" if index == 0 else "")
            gallery.append((face_thumbnail(image, face.box), label))
    return gallery[:MAX_GALLERY_FACES]


def _save_reference(studio: Studio, faces: TargetFaces) -> Path:
    """The picked face (or track) of the first target, cut from the frame it was seen
    in, saved as the jobs' reference image."""
    crop = faces.reference_crop()
    assert faces.path is not None and crop is not None
    frame, box = crop
    image = live_preview.target_frame(faces.path, frame)
    square = square_around(box, margin=0.6)
    height, width = image.shape[:2]
    left, top = max(square.left, 0), max(square.top, 0)
    right = min(square.left + square.side, width)
    bottom = min(square.top + square.side, height)
    path = studio.new_upload_path().with_suffix(".png")
    imageio.save_image(image[top:bottom, left:right], path)
    return path
