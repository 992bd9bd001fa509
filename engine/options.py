"""Typed job options, validated up front so that bad options fail before any work.

``SwapOptions`` says how faces are found and swapped; ``OutputOptions`` says how
the result is written. ``parse_options`` turns the flat JSON object of the REST
API (and the CLI flags, which carry the same names) into both.

``parse_options`` is the one validating entry point: a job's options are parsed once,
where the job is submitted, and stored in canonical form (``options_to_dict``). Whoever
later reads that stored form back (the worker) rebuilds the typed value with
``ParsedOptions.from_trusted`` (``options_from_dict``), which validates nothing: the
limits in force at submit were the ones that counted.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidOptions

SELECTORS = ("one", "many", "reference")
BLEND_MODES = ("alpha", "poisson")
VIDEO_CODECS = ("h264", "hevc", "vp9", "mpeg4")
CONTAINERS = ("mp4", "webm", "mov", "mkv", "gif")
TRIM_MODES = ("cut", "keep")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower")
MASK_TYPES = ("box", "occlusion", "region", "area")
MASK_REGIONS = (
    "skin",
    "left-eyebrow",
    "right-eyebrow",
    "left-eye",
    "right-eye",
    "glasses",
    "nose",
    "mouth",
    "upper-lip",
    "lower-lip",
)
MASK_AREAS = ("upper-face", "lower-face", "mouth")
FACE_ORDERS = (
    "large-small",
    "small-large",
    "left-right",
    "right-left",
    "top-bottom",
    "bottom-top",
    "best-worst",
    "worst-best",
)
GENDERS = ("female", "male")
DETECTOR_ANGLES = (0, 90, 180, 270)
DETECTOR_SIZES = (160, 320, 480, 512, 640)
MAX_PIXEL_BOOST = 1024
MAX_ENHANCERS = 4
_MODEL_NAME = re.compile(r"[a-z0-9_.-]{1,64}")
_AGE_RANGE = re.compile(r"\s*(\d{1,3})\s*-\s*(\d{1,3})\s*")
AGE_MIN, AGE_MAX = 0, 100  # face_ages bounds, in years


def _catalogue_names(kind: str) -> tuple[str, ...]:
    from engine.models.registry import REGISTRY

    return tuple(name for name, spec in REGISTRY.items() if spec.kind == kind)


# Choices the built-in catalogue offers; a user catalogue adds its own names, which the
# model resolver (``engine.models.resolve``) checks when a job is submitted.
SWAPPERS = ("auto", *_catalogue_names("swapper"))
DETECTORS = ("auto", "scrfd", "many", *_catalogue_names("detector"))
ENHANCERS = ("none", *_catalogue_names("enhancer"))
FRAME_ENHANCERS = ("none", *_catalogue_names("frame_enhancer"))
OCCLUDERS = ("auto", "many", *_catalogue_names("occluder"))
PARSERS = ("auto", *_catalogue_names("parser"))
LANDMARKERS = ("auto", "none", *_catalogue_names("landmarker"))


FACE_MAP_KINDS = ("face", "track", "reference")
MAX_FACE_MAP = 64


@dataclass(frozen=True)
class FaceMapEntry:
    """One ``face_map`` entry: the source(s) ``source`` (indices of uploaded sources,
    averaged into one identity) for the target face ``kind`` = ``face`` (index in the
    first frame that has faces, counted left to right), ``track`` (a track id of the
    video's analysis pass) or ``reference`` (index of an uploaded reference image)."""

    source: tuple[int, ...]
    kind: str
    index: int

    def to_dict(self) -> dict[str, Any]:
        source: Any = self.source[0] if len(self.source) == 1 else list(self.source)
        return {"source": source, self.kind: self.index}


@dataclass(frozen=True)
class SwapOptions:
    """How faces are found, chosen, swapped, masked and enhanced.

    Model options name a catalogue model (or ``auto``); whether it exists and is
    installed is the model resolver's question at submit. List options are tuples here,
    JSON arrays in the API and comma-separated on the command line.
    """

    swapper: str = "auto"
    pixel_boost: str = "auto"
    swapper_weight: float = 0.5
    detector: str = "auto"
    detector_size: int | None = None
    detector_score: float = 0.5
    detector_angles: tuple[int, ...] = (0,)
    landmarker: str = "auto"
    selector: str = "one"
    face_order: str = "large-small"
    face_ages: str | None = None
    face_genders: tuple[str, ...] = ()
    reference_face_index: int | None = None
    reference_distance: float = 0.6
    enhancer: tuple[str, ...] = ()
    enhancer_blend: tuple[float, ...] = (0.8,)
    enhancer_fidelity: float = 0.5
    frame_enhancer: str = "none"
    frame_enhancer_blend: float = 0.8
    mask_types: tuple[str, ...] = ("box",)
    occluder: str = "auto"
    parser: str = "auto"
    mask_regions: tuple[str, ...] = MASK_REGIONS
    mask_areas: tuple[str, ...] = MASK_AREAS
    mask_blur: float = 0.3
    mask_padding: float | tuple[float, ...] = 0.0
    color_correction: bool = True
    blend_mode: str = "alpha"
    temporal_smoothing: float = 0.3  # tuned on bench.flicker (images ignore it)
    temporal_blend: float = 0.0
    detect_every: int = 1
    face_map: tuple[FaceMapEntry, ...] = ()

    def validate(self) -> SwapOptions:
        for name in ("swapper", "detector", "frame_enhancer", "occluder", "parser", "landmarker"):
            _model_name(name, getattr(self, name))
        _choice("selector", self.selector, SELECTORS)
        _choice("blend_mode", self.blend_mode, BLEND_MODES)
        _choice("face_order", self.face_order, FACE_ORDERS)
        _pixel_boost(self.pixel_boost)
        _number("swapper_weight", self.swapper_weight, 0.0, 1.0)
        _number("detector_score", self.detector_score, 0.05, 0.99)
        if self.detector_size is not None:
            _member("detector_size", self.detector_size, DETECTOR_SIZES)
        _members("detector_angles", self.detector_angles, DETECTOR_ANGLES, allow_empty=False)
        _number("reference_distance", self.reference_distance, 0.0, 2.0)
        if len(self.enhancer) > MAX_ENHANCERS:
            raise InvalidOptions(f"enhancer takes at most {MAX_ENHANCERS} models in a chain")
        for name in self.enhancer:
            _model_name("enhancer", name)
        if len(set(self.enhancer)) != len(self.enhancer):
            raise InvalidOptions("enhancer names a model twice")
        if len(self.enhancer_blend) not in (1, max(len(self.enhancer), 1)):
            raise InvalidOptions(
                f"enhancer_blend takes one value or one per enhancer ({len(self.enhancer)}); "
                f"got {len(self.enhancer_blend)}"
            )
        for value in self.enhancer_blend:
            _number("enhancer_blend", value, 0.0, 1.0)
        _number("enhancer_fidelity", self.enhancer_fidelity, 0.0, 1.0)
        _number("frame_enhancer_blend", self.frame_enhancer_blend, 0.0, 1.0)
        _members("mask_types", self.mask_types, MASK_TYPES, allow_empty=False)
        _members("mask_regions", self.mask_regions, MASK_REGIONS, allow_empty=False)
        _members("mask_areas", self.mask_areas, MASK_AREAS, allow_empty=False)
        _members("face_genders", self.face_genders, GENDERS, allow_empty=True)
        if self.face_ages is not None:
            parse_age_range(self.face_ages)
        _number("mask_blur", self.mask_blur, 0.0, 1.0)
        for value in padding4(self.mask_padding):
            _number("mask_padding", value, 0.0, 0.5)
        _number("temporal_smoothing", self.temporal_smoothing, 0.0, 0.95)
        _number("temporal_blend", self.temporal_blend, 0.0, 0.9)
        _integer("detect_every", self.detect_every, 1, 30)
        if self.reference_face_index is not None:
            _integer("reference_face_index", self.reference_face_index, 0, 1000)
        targets = [(entry.kind, entry.index) for entry in self.face_map]
        if len(set(targets)) != len(targets):
            raise InvalidOptions("face_map maps the same target face twice")
        return self

    def source_count_needed(self) -> int:
        """How many sources ``face_map`` refers to (the highest index + 1)."""
        return max((max(entry.source) + 1 for entry in self.face_map), default=0)

    def blend_for(self, index: int) -> float:
        """The blend of the ``index``-th enhancer of the chain."""
        blends = self.enhancer_blend or (0.8,)
        return blends[index] if len(blends) > 1 else blends[0]


def padding4(padding: float | tuple[float, ...]) -> tuple[float, float, float, float]:
    """Mask padding as (top, right, bottom, left)."""
    if isinstance(padding, int | float):
        return (float(padding),) * 4  # type: ignore[return-value]
    values = tuple(float(v) for v in padding)
    if len(values) == 1:
        return values * 4  # type: ignore[return-value]
    if len(values) != 4:
        raise InvalidOptions(
            f"mask_padding takes one value or four (top, right, bottom, left); got {len(values)}"
        )
    return values  # type: ignore[return-value]


def parse_age_range(value: str | Sequence[int]) -> tuple[int, int]:
    """``"MIN-MAX"`` (or a pair) as ``(MIN, MAX)``, both inclusive, 0 ≤ MIN ≤ MAX ≤ 100."""
    if isinstance(value, str):
        if not value.strip():
            raise InvalidOptions("face_ages is empty; give an age range MIN-MAX such as 20-40")
        match = _AGE_RANGE.fullmatch(value)
        if match is None:
            raise InvalidOptions(
                f"face_ages must be an age range MIN-MAX in years such as 20-40, got {shown(value)}"
            )
        low, high = int(match.group(1)), int(match.group(2))
    else:
        try:
            low, high = (int(v) for v in value)
        except (TypeError, ValueError):
            raise InvalidOptions(
                f"face_ages must be an age range MIN-MAX such as 20-40, got {shown(value)}"
            ) from None
    if not (AGE_MIN <= low <= AGE_MAX and AGE_MIN <= high <= AGE_MAX):
        raise InvalidOptions(
            f"face_ages must be MIN-MAX with ages between {AGE_MIN} and {AGE_MAX}; got {low}-{high}"
        )
    if low > high:
        raise InvalidOptions(
            f"face_ages must be MIN-MAX; {low}-{high} is empty: MIN must not exceed MAX"
        )
    return low, high


@dataclass(frozen=True)
class OutputOptions:
    """How the result is encoded. Image format follows the output file's extension."""

    quality: int = 92
    video_codec: str = "h264"
    crf: int = 18
    preset: str = "medium"
    container: str | None = None
    trim_start: float | None = None
    trim_end: float | None = None
    trim_mode: str = "cut"  # cut: output only the range; keep: the whole clip, outside untouched
    segment_seconds: float = 10.0
    keep_audio: bool = True

    def validate(self) -> OutputOptions:
        _integer("quality", self.quality, 1, 100)
        _choice("video_codec", self.video_codec, VIDEO_CODECS)
        _integer("crf", self.crf, 0, 51)
        _choice("preset", self.preset, PRESETS)
        if self.container is not None:
            _choice("container", self.container, CONTAINERS)
        for name in ("trim_start", "trim_end"):
            value = getattr(self, name)
            if value is not None:
                _number(name, value, 0.0, 86_400.0)
        _choice("trim_mode", self.trim_mode, TRIM_MODES)
        trimmed = self.trim_start is not None and self.trim_end is not None
        if trimmed and self.trim_end <= self.trim_start:
            raise InvalidOptions("trim_end must be after trim_start")
        _number("segment_seconds", self.segment_seconds, 0.5, 3600.0)
        return self


SWAP_FIELDS = frozenset(f.name for f in dataclasses.fields(SwapOptions))
OUTPUT_FIELDS = frozenset(f.name for f in dataclasses.fields(OutputOptions))
ENGINE_OPTION_KEYS = SWAP_FIELDS | OUTPUT_FIELDS


@dataclass(frozen=True)
class ParsedOptions:
    swap: SwapOptions = field(default_factory=SwapOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_trusted(cls, data: Mapping[str, Any] | None) -> ParsedOptions:
        """Rebuild the typed options from their canonical form (``options_to_dict``).

        Nothing is validated or coerced: the mapping must come from ``options_to_dict`` of
        a value that was parsed already (a stored job spec). Keys that are not engine
        options go to ``extra``; engine options that are absent keep their defaults.
        Untrusted input goes through ``parse_options`` instead.
        """
        data = dict(data or {})
        swap = {k: _trusted_value(k, v) for k, v in data.items() if k in SWAP_FIELDS}
        return cls(
            swap=SwapOptions(**swap),
            output=OutputOptions(**{k: v for k, v in data.items() if k in OUTPUT_FIELDS}),
            extra={k: v for k, v in data.items() if k not in ENGINE_OPTION_KEYS},
        )


def parse_options(raw: dict[str, Any] | None, extra_keys: tuple[str, ...] = ()) -> ParsedOptions:
    """Split a flat options mapping into validated swap and output options.

    Keys listed in ``extra_keys`` (for example ``priority`` or ``callback_url``,
    which belong to the scheduler and studio) are passed through untouched in
    ``extra``; any other unknown key is an error that names it.
    """
    raw = dict(raw or {})
    if not isinstance(raw, dict):
        raise InvalidOptions("options must be a JSON object")
    swap_fields = {f.name: f for f in dataclasses.fields(SwapOptions)}
    output_fields = {f.name: f for f in dataclasses.fields(OutputOptions)}
    swap_kwargs: dict[str, Any] = {}
    output_kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        if key in swap_fields:
            swap_kwargs[key] = _coerce(key, value, swap_fields[key])
        elif key in output_fields:
            output_kwargs[key] = _coerce(key, value, output_fields[key])
        elif key in extra_keys:
            extra[key] = value
        else:
            known = sorted([*swap_fields, *output_fields, *extra_keys])
            raise InvalidOptions(f"unknown option {shown(key)}; known options: {', '.join(known)}")
    return ParsedOptions(
        swap=SwapOptions(**swap_kwargs).validate(),
        output=OutputOptions(**output_kwargs).validate(),
        extra=extra,
    )


def options_to_dict(parsed: ParsedOptions) -> dict[str, Any]:
    """The inverse of ``parse_options``: a flat JSON-safe mapping (the canonical form)."""
    flat = {**dataclasses.asdict(parsed.swap), **dataclasses.asdict(parsed.output)}
    flat["face_map"] = [entry.to_dict() for entry in parsed.swap.face_map]
    return {**{k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}, **parsed.extra}


def options_from_dict(data: Mapping[str, Any] | None) -> ParsedOptions:
    """The inverse of ``options_to_dict``, trusted: see ``ParsedOptions.from_trusted``."""
    return ParsedOptions.from_trusted(data)


_STRING_LISTS = ("enhancer", "mask_types", "mask_regions", "mask_areas", "face_genders")
_NUMBER_LISTS = ("enhancer_blend", "mask_padding")
MAX_LIST_ITEMS = 16


def _trusted_value(key: str, value: Any) -> Any:
    """A stored option in its typed form: JSON lists become tuples; specs written before
    the enhancer chain stored one enhancer name (``"none"`` for none) and one blend."""
    if key == "enhancer" and isinstance(value, str):
        return () if value == "none" else (value,)
    if key == "enhancer_blend" and isinstance(value, int | float):
        return (float(value),)
    if key == "face_map":
        return tuple(_face_map_entry(item, number) for number, item in enumerate(value or ()))
    if isinstance(value, list):
        return tuple(value)
    return value


def _list_items(key: str, value: Any) -> list[Any]:
    """A list option's items: a JSON array, or a comma-separated string (the CLI's form)."""
    if isinstance(value, str):
        items: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        items = [value]
    if len(items) > MAX_LIST_ITEMS:
        raise InvalidOptions(f"option {shown(key)} takes at most {MAX_LIST_ITEMS} items")
    return items


def _string_list(key: str, value: Any) -> tuple[str, ...]:
    items = _list_items(key, value)
    for item in items:
        if not isinstance(item, str):
            raise InvalidOptions(f"option {shown(key)} lists {shown(item)}, which is not a name")
    names = tuple(item.strip() for item in items)
    if key == "enhancer" and names in ((), ("none",)):
        return ()
    return names


def _number_list(key: str, value: Any) -> tuple[float, ...]:
    numbers = []
    for item in _list_items(key, value):
        if isinstance(item, bool):
            raise InvalidOptions(f"option {shown(key)} must hold numbers, not {shown(item)}")
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise InvalidOptions(
                f"option {shown(key)} must hold numbers, not {shown(item)}"
            ) from None
        if number != number:
            raise InvalidOptions(f"option {shown(key)} must hold numbers, not {shown(item)}")
        numbers.append(number)
    if not numbers:
        raise InvalidOptions(f"option {shown(key)} needs at least one number")
    return tuple(numbers)


def _angle_list(key: str, value: Any) -> tuple[int, ...]:
    angles = []
    for item in _list_items(key, value):
        if isinstance(item, bool) or not _is_integral(item):
            raise InvalidOptions(f"option {shown(key)} must hold whole degrees, not {shown(item)}")
        angles.append(int(item))
    return tuple(sorted(set(angles)))


def _coerce(key: str, value: Any, spec: dataclasses.Field) -> Any:
    kind = str(spec.type)
    if value is None:
        if "None" in kind:
            return None
        raise InvalidOptions(f"option {shown(key)} may not be null")
    if key in _STRING_LISTS:
        return _string_list(key, value)
    if key == "detector_angles":
        return _angle_list(key, value)
    if key in _NUMBER_LISTS:
        numbers = _number_list(key, value)
        if key == "mask_padding" and len(numbers) == 1:
            return numbers[0]
        return numbers
    if key == "face_map":
        return parse_face_map(value)
    if key == "pixel_boost":
        if isinstance(value, bool):
            raise InvalidOptions(f"option {shown(key)} must be auto, native or a size in pixels")
        return str(value).strip().lower() if not isinstance(value, float) else _boost_text(value)
    if kind.startswith("bool"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise InvalidOptions(f"option {shown(key)} must be true or false, not {shown(value)}")
    if kind.startswith("int"):
        if isinstance(value, bool) or not _is_integral(value):
            raise InvalidOptions(f"option {shown(key)} must be an integer, not {shown(value)}")
        return int(value)
    if kind.startswith("float"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidOptions(
                f"option {shown(key)} must be a number, not {shown(value)}"
            ) from None
        if isinstance(value, bool) or number != number:
            raise InvalidOptions(f"option {shown(key)} must be a number, not {shown(value)}")
        return number
    if not isinstance(value, str):
        raise InvalidOptions(f"option {shown(key)} must be a string, not {shown(value)}")
    return value.strip()


def shown(value: Any, limit: int = 40) -> str:
    """A value as a message may show it: short, and never a huge number's full digits."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return "a number too large"
    text = (
        repr(value) if isinstance(value, str | int | float | bool | None) else type(value).__name__
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


MAX_INTEGER_DIGITS = 18  # every integer option is far smaller; longer ones are refused unread


def _is_integral(value: Any) -> bool:
    if isinstance(value, int):
        return abs(value) < 10**MAX_INTEGER_DIGITS
    if isinstance(value, float):
        return value.is_integer() and abs(value) < 10**MAX_INTEGER_DIGITS
    if isinstance(value, str):
        digits = value.strip().lstrip("-")
        return digits.isdigit() and len(digits) <= MAX_INTEGER_DIGITS
    return False


def parse_face_map(value: Any) -> tuple[FaceMapEntry, ...]:
    """``face_map`` from the API's JSON array, or the CLI's ``0:0,1:3`` (source:face) or a
    JSON string."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        if text.startswith("["):
            import json

            try:
                value = json.loads(text)
            except ValueError as exc:
                raise InvalidOptions(f"face_map is not valid JSON: {exc}") from None
        else:
            value = [_pair(part) for part in text.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise InvalidOptions("face_map must be a list of {source, face|track|reference} entries")
    if len(value) > MAX_FACE_MAP:
        raise InvalidOptions(f"face_map takes at most {MAX_FACE_MAP} entries")
    return tuple(_face_map_entry(item, number) for number, item in enumerate(value))


def _pair(text: str) -> dict[str, Any]:
    source, sep, face = text.strip().partition(":")
    if not sep:
        raise InvalidOptions(
            f"face_map entry {shown(text)} must be SOURCE:FACE (e.g. 0:0,1:3) or JSON"
        )
    return {"source": source.strip(), "face": face.strip()}


def _face_map_entry(item: Any, number: int) -> FaceMapEntry:
    where = f"face_map entry {number}"
    if isinstance(item, FaceMapEntry):
        return item
    if not isinstance(item, dict):
        raise InvalidOptions(f"{where} must be an object with source and face|track|reference")
    kinds = [kind for kind in FACE_MAP_KINDS if kind in item]
    unknown = set(item) - {"source", *FACE_MAP_KINDS}
    if unknown or len(kinds) != 1 or "source" not in item:
        raise InvalidOptions(
            f"{where} must have 'source' and exactly one of face, track, reference; "
            f"got keys {', '.join(sorted(map(str, item)))}"
        )
    kind = kinds[0]
    index = _index(f"{where} {kind}", item[kind])
    raw = item["source"]
    sources = raw if isinstance(raw, list | tuple) else [raw]
    if not sources or len(sources) > 16:
        raise InvalidOptions(f"{where} source must be an index or a list of 1 to 16 indices")
    source = tuple(_index(f"{where} source", value) for value in sources)
    if len(set(source)) != len(source):
        raise InvalidOptions(f"{where} lists a source twice")
    return FaceMapEntry(source, kind, index)


def _index(what: str, value: Any) -> int:
    if isinstance(value, bool) or not _is_integral(value) or int(value) < 0 or int(value) > 10_000:
        raise InvalidOptions(f"{what} must be a whole number from 0; got {shown(value)}")
    return int(value)


def _boost_text(value: float) -> str:
    if not value.is_integer():
        raise InvalidOptions(
            f"pixel_boost must be auto, native or a size in pixels; got {shown(value)}"
        )
    return str(int(value))


def _pixel_boost(value: str) -> None:
    if value in ("auto", "native"):
        return
    if not (isinstance(value, str) and value.isdigit() and len(value) <= 5):
        raise InvalidOptions(
            f"pixel_boost must be auto, native or a size in pixels (a whole multiple of the "
            f"swapper's size up to {MAX_PIXEL_BOOST}); got {shown(value)}"
        )
    _integer("pixel_boost", int(value), 64, MAX_PIXEL_BOOST)


def _model_name(name: str, value: str) -> None:
    if not isinstance(value, str) or not _MODEL_NAME.fullmatch(value):
        raise InvalidOptions(
            f"{name} must name a model (lower-case letters, digits, '_', '.', '-'); "
            f"got {shown(value)}"
        )


def _member(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise InvalidOptions(
            f"{name} must be one of {', '.join(str(c) for c in choices)}; got {shown(value)}"
        )


def _members(name: str, values: tuple[Any, ...], choices: tuple[Any, ...], allow_empty: bool):
    if not values and not allow_empty:
        raise InvalidOptions(f"{name} needs at least one of {', '.join(str(c) for c in choices)}")
    for value in values:
        _member(name, value, choices)
    if len(set(values)) != len(values):
        raise InvalidOptions(f"{name} lists a value twice")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidOptions(f"{name} must be one of {', '.join(choices)}; got {shown(value)}")


def _number(name: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):
        raise InvalidOptions(f"{name} must be between {low:g} and {high:g}; got {shown(value)}")


def _integer(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not (low <= value <= high):
        raise InvalidOptions(
            f"{name} must be an integer between {low} and {high}; got {shown(value)}"
        )
