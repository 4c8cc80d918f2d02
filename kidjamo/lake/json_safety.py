"""What a reading may contain beyond its schema: no control characters, no deep nesting.

Two checks shared by the ingestion service (which answers 422) and the bronze step (which
quarantines what a direct landing producer wrote):

- a control character (Unicode category Cc: U+0000-U+001F, U+007F-U+009F) in any string or key.
  PostgreSQL's text type cannot hold U+0000, so one NUL in a ``message_id`` used to fail the
  fast-path alert and every retry of the minute's COPY; the others are never meant to be in an
  identifier or a firmware version either.
- nesting deeper than :data:`MAX_NESTING_DEPTH`. A reading nests 2 levels (``vitals.spo2``);
  thousands of levels crash Arrow's JSON reader (segfault) or raise ``RecursionError``, and
  orjson refuses to serialize past 254 levels. :func:`text_nesting_depth` measures it on the
  bytes, before anything parses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: Generous for the contract (2 levels) and for producers' own extra fields, far below what breaks parsers.
MAX_NESTING_DEPTH = 16

INVALID_TEXT = "invalid_text"  # a control character in a string or a key
TOO_DEEP = "too_deeply_nested"  # objects/arrays nested deeper than MAX_NESTING_DEPTH

CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")
_STRING_LITERAL = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_RAW_CONTROL = bytes(range(0x20)) + b"\x7f"  # C0 and DEL as raw bytes (C1 in UTF-8 starts with 0xC2)
_OPEN = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSE = np.frombuffer(b"]}", dtype=np.uint8)


@dataclass(frozen=True)
class UnsafeContent:
    """The first problem found: reason code, the field's path, and what a person can act on."""

    reason: str
    path: str
    detail: str


def _join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def describe_control_character(text: str) -> str | None:
    """``'control character U+0000 at position 3'`` for the first one in ``text``, or None."""
    match = CONTROL_CHARACTER.search(text)
    if match is None:
        return None
    return f"control character U+{ord(match.group()):04X} at position {match.start()}"


def unsafe_content(document, *, max_depth: int = MAX_NESTING_DEPTH) -> UnsafeContent | None:
    """The first control character or excess nesting in a decoded JSON document, or None.

    Iterative and stopped at ``max_depth``, so a hostile document cannot exhaust the stack.
    The document itself is level 1 (``{"vitals": {"spo2": 1}}`` nests 2 levels).
    """
    pending = [(document, "", 1)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, str):
            problem = describe_control_character(value)
            if problem:
                return UnsafeContent(INVALID_TEXT, path, f"{path or 'value'}: {problem}; text may not contain control characters")
        elif isinstance(value, (dict, list)):
            if depth > max_depth:
                return UnsafeContent(TOO_DEEP, path, f"{path or 'value'}: nested more than {max_depth} levels deep")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    problem = describe_control_character(key)
                    if problem:
                        return UnsafeContent(INVALID_TEXT, _join(path, key), f"{_join(path, key)}: the key has a {problem}")
                pending.append((item, _join(path, key), depth + 1))
    return None


def certainly_safe(text: bytes, readings: list) -> bool:
    """True when JSON text and its decoded readings can hold no control character and no deep nesting.

    Cheap checks for the ingestion service's hot path, over-inclusive on purpose: the text has no
    raw C0/DEL byte, no 0xC2 byte (which starts every C1 character in UTF-8) and no backslash (no
    escape can then produce a control character), and every reading is an object whose values are
    scalars or objects of scalars (the contract's 2 levels). When True, :func:`unsafe_content`
    would find nothing and need not walk the readings; when False, walk them to name the field.
    """
    if b"\\" in text or b"\xc2" in text or len(text.translate(None, _RAW_CONTROL)) != len(text):
        return False
    for reading in readings:  # plain loops: this runs for every request
        if type(reading) is not dict:
            return False
        for value in reading.values():
            if type(value) is list:
                return False
            if type(value) is dict:
                for inner in value.values():
                    if type(inner) is dict or type(inner) is list:
                        return False
    return True


def text_nesting_depth(text: bytes) -> int:
    """How deep objects and arrays nest in JSON text, counted without parsing it (string contents ignored).

    Vectorized: string literals are blanked out, then the running depth is a cumulative sum. On text
    that is not JSON the figure is still a bound a parser would have to reach.
    """
    stripped = _STRING_LITERAL.sub(b'""', text)
    codes = np.frombuffer(stripped, dtype=np.uint8)
    steps = np.isin(codes, _OPEN).astype(np.int32) - np.isin(codes, _CLOSE).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def too_deep(text: bytes, max_depth: int = MAX_NESTING_DEPTH) -> bool:
    """Does JSON text nest deeper than ``max_depth``? Cheap for ordinary records (a byte count)."""
    if text.count(b"[") + text.count(b"{") <= max_depth:
        return False
    return text_nesting_depth(text) > max_depth
