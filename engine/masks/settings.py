"""What the user chose for the face mask, checked once before any work starts.

Names and numbers are FaceFusion's (``../shared/MODELS-2.md`` §6.2, §6.3): the four
mask types, the ten BiSeNet regions with their class ids, and the three 68-point
areas with their landmark index lists. The option parser calls the ``parse_*``
helpers so that a typo is an ``InvalidOptions`` that lists the valid names.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.errors import InvalidOptions

MASK_TYPES: tuple[str, ...] = ("box", "occlusion", "region", "area")

# FaceFusion region name → BiSeNet (CelebAMask-HQ) class id (§6.2).
REGION_CLASSES: dict[str, int] = {
    "skin": 1,
    "left-eyebrow": 2,
    "right-eyebrow": 3,
    "left-eye": 4,
    "right-eye": 5,
    "glasses": 6,
    "nose": 10,
    "mouth": 11,
    "upper-lip": 12,
    "lower-lip": 13,
}
REGIONS: tuple[str, ...] = tuple(REGION_CLASSES)

# Area name → 68-landmark indices (iBUG order, as FaceFusion lists them; §6.3).
AREA_POINTS: dict[str, tuple[int, ...]] = {
    "upper-face": (0, 1, 2, 31, 32, 33, 34, 35, 14, 15, 16, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17),
    "lower-face": (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 35, 34, 33, 32, 31),
    "mouth": tuple(range(48, 68)),
}
AREAS: tuple[str, ...] = tuple(AREA_POINTS)

DEFAULT_BLUR = 0.3
MAX_PADDING = 0.5
DEFAULT_OCCLUDER = "xseg_1"
MANY_OCCLUDERS: tuple[str, ...] = ("xseg_1", "xseg_2", "xseg_3")
DEFAULT_PARSER = "bisenet_resnet_34"

Padding = tuple[float, float, float, float]


@dataclass(frozen=True)
class MaskSettings:
    """The mask options of one job. ``padding`` is (top, right, bottom, left), each a
    fraction of the crop; ``regions`` and ``areas`` are used only when their type is on."""

    types: tuple[str, ...] = ("box",)
    blur: float = DEFAULT_BLUR
    padding: Padding = (0.0, 0.0, 0.0, 0.0)
    regions: tuple[str, ...] = REGIONS
    areas: tuple[str, ...] = AREAS

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", parse_types(self.types))
        object.__setattr__(self, "blur", parse_blur(self.blur))
        object.__setattr__(self, "padding", parse_padding(self.padding))
        object.__setattr__(self, "regions", parse_regions(self.regions, "region" in self.types))
        object.__setattr__(self, "areas", parse_areas(self.areas, "area" in self.types))

    @property
    def region_classes(self) -> tuple[int, ...]:
        return tuple(REGION_CLASSES[name] for name in self.regions)

    @property
    def area_points(self) -> tuple[int, ...]:
        """The union of the chosen areas' landmark indices (one hull is drawn over all)."""
        return tuple(dict.fromkeys(i for name in self.areas for i in AREA_POINTS[name]))

    @property
    def needs_occluder(self) -> bool:
        return "occlusion" in self.types

    @property
    def needs_parser(self) -> bool:
        return "region" in self.types

    @property
    def needs_landmarks_68(self) -> bool:
        return "area" in self.types


def parse_types(names: Iterable[str] | str) -> tuple[str, ...]:
    """Mask types in the order given, without repeats; at least one."""
    types = _names("face mask type", names, MASK_TYPES)
    if not types:
        raise InvalidOptions(f"face mask types: choose at least one of {', '.join(MASK_TYPES)}")
    return types


def parse_regions(names: Iterable[str] | str, required: bool = True) -> tuple[str, ...]:
    """Region names (§6.2); at least one when the region mask is on."""
    regions = _names("face mask region", names, REGIONS)
    if required and not regions:
        raise InvalidOptions(f"face mask regions: choose at least one of {', '.join(REGIONS)}")
    return regions


def parse_areas(names: Iterable[str] | str, required: bool = True) -> tuple[str, ...]:
    """Area names (§6.3); at least one when the area mask is on."""
    areas = _names("face mask area", names, AREAS)
    if required and not areas:
        raise InvalidOptions(f"face mask areas: choose at least one of {', '.join(AREAS)}")
    return areas


def parse_blur(value: float) -> float:
    return _fraction("face mask blur", value, 1.0)


def parse_padding(value: float | Sequence[float]) -> Padding:
    """One to four fractions, CSS order as FaceFusion's ``normalize_padding``: one value
    for all sides; (vertical, horizontal); (top, horizontal, bottom); (top, right,
    bottom, left)."""
    values = (value,) if isinstance(value, numbers.Real) else tuple(value)
    if len(values) == 1:
        values = values * 4
    elif len(values) == 2:
        values = (values[0], values[1], values[0], values[1])
    elif len(values) == 3:
        values = (values[0], values[1], values[2], values[1])
    elif len(values) != 4:
        raise InvalidOptions(
            f"face mask padding takes one to four values (top, right, bottom, left), "
            f"got {len(values)}"
        )
    return tuple(_fraction("face mask padding", v, MAX_PADDING) for v in values)  # type: ignore[return-value]


def _names(what: str, names: Iterable[str] | str, valid: Sequence[str]) -> tuple[str, ...]:
    items = (names,) if isinstance(names, str) else tuple(names)
    for name in items:
        if not isinstance(name, str) or name not in valid:
            raise InvalidOptions(f"unknown {what} {name!r}; valid {what}s are {', '.join(valid)}")
    return tuple(dict.fromkeys(items))


def _fraction(what: str, value: object, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidOptions(f"{what} must be a number between 0 and {high:g}, got {value!r}")
    if not 0.0 <= value <= high:
        raise InvalidOptions(f"{what} must be between 0 and {high:g}, got {value!r}")
    return float(value)
