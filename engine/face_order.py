"""Which faces of a frame, in what order: FaceFusion's face selector orders and filters.

Orders sort by box area, box centre or detector score. Filters keep faces by the
classifier's age range and gender (``engine.classifier``), so they need its results
on every face. ``left_to_right`` is the numbering every face index uses: faces
counted from the image's left edge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from engine.errors import InvalidOptions
from engine.faces import Face
from engine.options import FACE_ORDERS, GENDERS, parse_age_range


def centre_x(face: Face) -> float:
    return float(face.box[0] + face.box[2]) / 2.0


def centre_y(face: Face) -> float:
    return float(face.box[1] + face.box[3]) / 2.0


def _area(face: Face) -> float:
    return face.area


def _score(face: Face) -> float:
    return float(face.score)


# order → (sort key, descending)
_ORDERS: dict[str, tuple[Callable[[Face], float], bool]] = {
    "large-small": (_area, True),
    "small-large": (_area, False),
    "left-right": (centre_x, False),
    "right-left": (centre_x, True),
    "top-bottom": (centre_y, False),
    "bottom-top": (centre_y, True),
    "best-worst": (_score, True),
    "worst-best": (_score, False),
}


def check_order(order: str) -> str:
    """``order`` if it is one of ``FACE_ORDERS``, else a clear error."""
    if order not in _ORDERS:
        raise InvalidOptions(f"face_order must be one of {', '.join(FACE_ORDERS)}, got {order!r}")
    return order


def order_faces(faces: Sequence[Face], order: str) -> list[Face]:
    """The faces sorted by ``order`` (stable: ties keep their input order)."""
    key, descending = _ORDERS[check_order(order)]
    return sorted(faces, key=key, reverse=descending)


def left_to_right(faces: Sequence[Face]) -> list[Face]:
    """Faces numbered from the image's left: index 0 has the leftmost box centre."""
    return order_faces(faces, "left-right")


def parse_genders(value: str | Iterable[str]) -> frozenset[str]:
    """Genders from ``"female"``, ``"female,male"`` or an iterable of names."""
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    genders = frozenset(str(item).strip().lower() for item in items)
    if not genders:
        raise InvalidOptions(f"face_genders is empty; give one or more of {', '.join(GENDERS)}")
    unknown = sorted(genders - set(GENDERS))
    if unknown:
        raise InvalidOptions(
            f"face_genders must be among {', '.join(GENDERS)}, got {', '.join(map(repr, unknown))}"
        )
    return genders


def age_overlaps(age: tuple[int, int], ages: tuple[int, int]) -> bool:
    """Whether a classifier bin ``[low, high)`` holds any year of the range ``[MIN, MAX]``."""
    low, high = age
    return low <= ages[1] and ages[0] < high


def filter_faces(
    faces: Sequence[Face],
    ages: str | tuple[int, int] | None = None,
    genders: str | Iterable[str] | None = None,
) -> list[Face]:
    """The faces (in their order) whose age bin overlaps ``ages`` and whose gender is in
    ``genders``; a filter left None keeps every face."""
    age_range = parse_age_range(ages) if ages is not None else None
    gender_set = parse_genders(genders) if genders is not None else None
    for option, wanted, field in (
        ("face_ages", age_range, "age"),
        ("face_genders", gender_set, "gender"),
    ):
        if wanted is not None and any(getattr(face, field) is None for face in faces):
            raise InvalidOptions(
                f"{option} needs the fairface classifier's {field} of every face; "
                "classify the faces with fairface first"
            )
    kept = []
    for face in faces:
        if age_range is not None and not age_overlaps(face.age, age_range):  # type: ignore[arg-type]
            continue
        if gender_set is not None and face.gender not in gender_set:
            continue
        kept.append(face)
    return kept
