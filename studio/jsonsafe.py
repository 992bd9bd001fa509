"""Strict JSON for text that strangers send (job options, request bodies).

``json.loads`` alone accepts what the API must refuse and fails badly on what a
hostile client can send: it reads ``NaN``, ``Infinity`` and ``-Infinity``; it
turns ``1e400`` into ``inf`` (which later overflows ``int()`` or SQLite); it
raises a bare ``ValueError`` for an integer of more than 4,300 digits; and it
recurses once per nesting level (``[[[[…]]]]`` 20,000 deep is a
``RecursionError``). ``loads`` here refuses all of them with an
``InvalidOptions`` (HTTP 422) that says what was wrong:

* the nesting depth is checked first, by a linear scan that skips strings, so
  the parser never recurses deeper than ``max_depth``;
* ``NaN`` / ``Infinity`` / ``-Infinity`` and floats that overflow are refused;
* integers longer than ``max_int_digits`` digits are refused (an integer the API
  accepts is a priority, a count or an index: 20 digits is far beyond any).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from engine.errors import InvalidOptions

MAX_DEPTH = 32
MAX_INT_DIGITS = 20

# A JSON string (possibly unterminated: then it runs to the end of the text), or a bracket.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def loads(
    text: str | bytes,
    what: str = "the JSON body",
    *,
    max_depth: int = MAX_DEPTH,
    max_int_digits: int = MAX_INT_DIGITS,
) -> Any:
    """Parse ``text`` as strict JSON; ``what`` names it in error messages."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidOptions(f"{what} is not UTF-8 text") from None
    check_depth(text, what, max_depth)

    def constant(name: str) -> Any:
        raise InvalidOptions(f"{what} is not valid JSON: {name} is not a JSON number")

    def number(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise InvalidOptions(f"{what}: the number {_short(literal)} is too large")
        return value

    def integer(literal: str) -> int:
        if len(literal.lstrip("-")) > max_int_digits:
            raise InvalidOptions(
                f"{what}: the integer {_short(literal)} has more than {max_int_digits} digits"
            )
        return int(literal)

    try:
        return json.loads(text, parse_constant=constant, parse_float=number, parse_int=integer)
    except json.JSONDecodeError as exc:
        raise InvalidOptions(f"{what} is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except RecursionError:  # unreachable after check_depth; never a 500 all the same
        raise InvalidOptions(f"{what} is nested too deeply") from None


def check_depth(text: str, what: str = "the JSON body", max_depth: int = MAX_DEPTH) -> None:
    """Refuse ``text`` whose arrays and objects nest deeper than ``max_depth`` (no recursion)."""
    depth = 0
    for token in _TOKENS.finditer(text):
        char = token.group()[0]
        if char == '"':
            continue
        if char in "[{":
            depth += 1
            if depth > max_depth:
                raise InvalidOptions(f"{what} is nested too deeply (more than {max_depth} levels)")
        else:
            depth -= 1  # unbalanced text is the parser's to report


def _short(literal: str) -> str:
    return literal if len(literal) <= 24 else f"{literal[:12]}…{literal[-6:]}"
