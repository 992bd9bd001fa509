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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidOptions

SWAPPERS = ("auto", "classic", "inswapper_128")
DETECTORS = ("auto", "mtcnn", "scrfd")
SELECTORS = ("one", "many", "reference")
ENHANCERS = ("none", "gfpgan_1.4")
BLEND_MODES = ("alpha", "poisson")
VIDEO_CODECS = ("h264", "hevc", "vp9", "mpeg4")
CONTAINERS = ("mp4", "webm", "mov", "mkv")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower")


@dataclass(frozen=True)
class SwapOptions:
    """How faces are found, chosen and swapped."""

    swapper: str = "auto"
    detector: str = "auto"
    detector_score: float = 0.5
    selector: str = "one"
    reference_face_index: int | None = None
    reference_distance: float = 0.6
    enhancer: str = "none"
    enhancer_blend: float = 0.8
    mask_blur: float = 0.3
    mask_padding: float = 0.0
    color_correction: bool = True
    blend_mode: str = "alpha"
    temporal_smoothing: float = 0.0
    detect_every: int = 1

    def validate(self) -> SwapOptions:
        _choice("swapper", self.swapper, SWAPPERS)
        _choice("detector", self.detector, DETECTORS)
        _choice("selector", self.selector, SELECTORS)
        _choice("enhancer", self.enhancer, ENHANCERS)
        _choice("blend_mode", self.blend_mode, BLEND_MODES)
        _number("detector_score", self.detector_score, 0.05, 0.99)
        _number("reference_distance", self.reference_distance, 0.0, 2.0)
        _number("enhancer_blend", self.enhancer_blend, 0.0, 1.0)
        _number("mask_blur", self.mask_blur, 0.0, 1.0)
        _number("mask_padding", self.mask_padding, 0.0, 0.5)
        _number("temporal_smoothing", self.temporal_smoothing, 0.0, 0.95)
        _integer("detect_every", self.detect_every, 1, 30)
        if self.reference_face_index is not None:
            _integer("reference_face_index", self.reference_face_index, 0, 1000)
        return self


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
        return cls(
            swap=SwapOptions(**{k: v for k, v in data.items() if k in SWAP_FIELDS}),
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
    return {**dataclasses.asdict(parsed.swap), **dataclasses.asdict(parsed.output), **parsed.extra}


def options_from_dict(data: Mapping[str, Any] | None) -> ParsedOptions:
    """The inverse of ``options_to_dict``, trusted: see ``ParsedOptions.from_trusted``."""
    return ParsedOptions.from_trusted(data)


def _coerce(key: str, value: Any, spec: dataclasses.Field) -> Any:
    kind = str(spec.type)
    if value is None:
        if "None" in kind:
            return None
        raise InvalidOptions(f"option {shown(key)} may not be null")
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
