"""Face thumbnails for the Create panel: whole faces, square and centred, at any count.

A thumbnail is the face box grown by a margin on every side into a square centred on
the box. Where that square leaves the image it is padded with a neutral grey, never
shifted or stretched, so the face stays in the middle of its thumbnail even at the
image's border. The target's faces are listed left to right (``engine.face_map``), the
numbering ``face_map`` uses, each with its index, a source picker and a reference
button (a video's tracks, after its analysis pass, are listed the same way); the thumbnails travel inside the HTML as JPEG data URIs, so they leave no
files in Gradio's cache.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from engine.face_map import left_to_right
from engine.faces import Face

THUMB = 112  # pixels, square
MARGIN = 0.35  # of the box's longer side, on every side
PAD_BGR = (64, 64, 64)


@dataclass(frozen=True)
class Square:
    """A square region of an image in pixels; it may reach past the image's edges."""

    left: int
    top: int
    side: int


def square_around(box: Sequence[float], margin: float = MARGIN) -> Square:
    """The square centred on ``box`` (x1, y1, x2, y2) whose side is the box's longer side
    grown by ``margin`` of it on each side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(2, int(round(max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin))))
    centre_x, centre_y = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return Square(int(round(centre_x - side / 2.0)), int(round(centre_y - side / 2.0)), side)


def crop_square(image: np.ndarray, square: Square) -> np.ndarray:
    """``square`` cut out of ``image``, padded where it reaches past the edges."""
    height, width = image.shape[:2]
    left, top = max(square.left, 0), max(square.top, 0)
    right = min(square.left + square.side, width)
    bottom = min(square.top + square.side, height)
    if right <= left or bottom <= top:
        return np.full((square.side, square.side, 3), PAD_BGR, np.uint8)
    return cv2.copyMakeBorder(
        image[top:bottom, left:right],
        top - square.top,
        square.top + square.side - bottom,
        left - square.left,
        square.left + square.side - right,
        cv2.BORDER_CONSTANT,
        value=PAD_BGR,
    )


def face_thumbnail(
    image: np.ndarray, box: Sequence[float], size: int = THUMB, margin: float = MARGIN
) -> np.ndarray:
    """A ``size``×``size`` RGB thumbnail of the face in ``box`` of a BGR ``image``."""
    square = crop_square(image, square_around(box, margin))
    interpolation = cv2.INTER_AREA if square.shape[0] > size else cv2.INTER_LINEAR
    thumb = cv2.resize(square, (size, size), interpolation=interpolation)
    return np.ascontiguousarray(thumb[:, :, ::-1])


def whole_thumbnail(image: np.ndarray, size: int = THUMB) -> np.ndarray:
    """The whole BGR ``image`` fitted into a padded square, as RGB (no face found)."""
    height, width = image.shape[:2]
    side = max(height, width)
    square = Square((width - side) // 2, (height - side) // 2, side)
    thumb = cv2.resize(crop_square(image, square), (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(thumb[:, :, ::-1])


def ordered_boxes(faces: Sequence[Face]) -> list[list[float]]:
    """The faces' boxes left to right: index ``n`` here is face ``n`` of ``face_map``."""
    return [[float(v) for v in face.box] for face in left_to_right(faces)]


def age_gender_details(faces: Sequence[Face]) -> list[str]:
    """Each face's classifier answer, left to right ("female, 20–29"), or "" without one."""
    details = []
    for face in left_to_right(faces):
        parts = []
        if face.gender:
            parts.append(face.gender)
        if face.age is not None:
            low, high = face.age
            parts.append(f"{low}+" if high > 100 else f"{low}–{high - 1}")
        details.append(", ".join(parts))
    return details


def jpeg_data_uri(rgb: np.ndarray, quality: int = 85) -> str:
    """An RGB image as a ``data:image/jpeg`` URI (for HTML that must not touch the disk)."""
    ok, encoded = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


@dataclass(frozen=True)
class FaceCard:
    """One target face (or, for a video after its analysis pass, one track) as the
    Create panel lists it. ``index``: the face's left-to-right index or the track's id;
    ``detail``: a line under it (a track's frames and times)."""

    index: int
    thumbnail: str  # data URI
    source: int | None  # the source assigned to it, if any
    reference: bool  # picked as the 'reference' face
    detail: str = ""


@dataclass(frozen=True)
class CardText:
    """The words of the face cards, in the page's language."""

    face: str  # "Face {index}"
    source: str  # label of the source picker
    none: str  # the picker's "no source" choice
    reference: str  # the reference button
    source_item: str  # "Source {index}: {name}"


def faces_html(
    cards: Sequence[FaceCard], sources: Sequence[str], words: CardText, kind: str = "face"
) -> str:
    """The target's faces, left to right (``kind="face"``), or a video's tracks
    (``kind="track"``), each with its index, a ``<select>`` of the uploaded sources (or
    none) and a reference toggle: plain form controls, so they work by keyboard.
    ``sources``: the uploaded sources' display names."""
    items = [_card_html(card, sources, words, kind) for card in cards]
    if not items:
        return ""
    return f'<ul class="fs-faces" role="list" data-kind="{kind}">{"".join(items)}</ul>'


def _card_html(card: FaceCard, sources: Sequence[str], words: CardText, kind: str) -> str:
    label = html.escape(words.face.format(index=card.index))
    empty = "" if card.source is not None else " selected"
    options = [f'<option value=""{empty}>{html.escape(words.none)}</option>']
    for number, name in enumerate(sources):
        chosen = " selected" if card.source == number else ""
        text = words.source_item.format(index=number, name=name)
        options.append(f'<option value="{number}"{chosen}>{html.escape(text)}</option>')
    picker_id = f"fs-{kind}-source-{card.index}"
    assigned = f' data-source="{card.source}"' if card.source is not None else ""
    detail = (
        f'<span class="fs-face-detail">{html.escape(card.detail)}</span>' if card.detail else ""
    )
    classes = "fs-face" if kind == "face" else f"fs-face fs-{kind}"
    return (
        f'<li class="{classes}" data-{kind}="{card.index}"{assigned}>'
        f'<img class="fs-face-thumb" src="{card.thumbnail}" width="{THUMB}" height="{THUMB}" '
        f'alt="{label}"><span class="fs-face-index">#{card.index}</span>{detail}'
        f'<label class="fs-face-pick" for="{picker_id}">{html.escape(words.source)}</label>'
        f'<select id="{picker_id}" class="fs-face-source" data-{kind}="{card.index}">'
        f"{''.join(options)}</select>"
        f'<button type="button" class="fs-face-ref" data-{kind}="{card.index}" '
        f'aria-pressed="{"true" if card.reference else "false"}">'
        f"{html.escape(words.reference)}</button></li>"
    )
