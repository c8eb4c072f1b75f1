"""Text a terminal cannot be tricked by, and JSON any strict parser accepts.

This module imports nothing heavy, so the argument parser and the JSON writers
of any layer can use it. :mod:`import_model.report` builds on it for all
terminal output.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

#: Code points shown as escapes even in multi-line text: C0 controls other than
#: newline and tab, DEL, C1 controls, the Unicode line/paragraph separators and
#: the bidirectional embedding, override and isolate controls.
_ALWAYS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
           *range(0x2066, 0x206A)]
#: Deeper than any JSON the tool reads (Python's parser stops near 1,000); deeper means a cycle.
MAX_JSON_DEPTH = 5_000

_SHORT = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def _escape(code: int) -> str:
    if code in _SHORT:
        return _SHORT[code]
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


_SINGLE_LINE = {code: _escape(code) for code in [*_ALWAYS, *range(0xD800, 0xE000)]}
_MULTI_LINE = {code: text for code, text in _SINGLE_LINE.items() if code not in (0x09, 0x0A)}


def visible(text: str, *, multiline: bool = False) -> str:
    r"""``text`` with every control character written as an escape (``\x1b``, ``\n``, ``\u202e``).

    Single-line text (table cells, titles, progress and error lines) shows
    newlines and tabs as ``\n`` and ``\t`` too. Multi-line text keeps them and
    turns CRLF into a newline; a lone carriage return is still shown as ``\r``.
    Lone surrogates (undecodable file-name bytes) are escaped so printing never
    fails on encoding.
    """
    if multiline:
        return text.replace("\r\n", "\n").translate(_MULTI_LINE)
    return text.translate(_SINGLE_LINE)


class VisibleArgumentParser(argparse.ArgumentParser):
    """An argument parser whose error line shows control characters in the user's arguments as escapes."""

    def error(self, message: str) -> NoReturn:
        super().error(visible(message))


def finite(value: Any) -> Any:
    """A copy of a JSON-like tree with every NaN or infinite float replaced by ``None`` (JSON ``null``).

    Tuples and sets become lists; dict keys that JSON cannot hold become strings.
    Other objects are left to the writer's ``default``.
    """
    return _finite_and_depth(value)[0]


def _finite_and_depth(value: Any) -> tuple[Any, int]:
    """:func:`finite` and the nesting depth, walked with a stack (a 900-deep config is valid JSON)."""
    holder: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, holder, 0, 1)]
    deepest = 0
    while stack:
        source, target, slot, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"the output nests deeper than {MAX_JSON_DEPTH} levels (or refers to itself)")
        if isinstance(source, float):
            target[slot] = float(source) if math.isfinite(source) else None
        elif isinstance(source, dict):
            copy: dict[Any, Any] = {}
            target[slot] = copy
            for key, item in source.items():
                name = _key(key)
                copy[name] = None  # a placeholder, so the copy keeps the order of the keys
                stack.append((item, copy, name, depth + 1))
        elif isinstance(source, (list, tuple, set, frozenset)):
            items = list(source)
            target[slot] = out = [None] * len(items)
            stack.extend((item, out, index, depth + 1) for index, item in enumerate(items))
        else:
            target[slot] = source
    return holder[0], deepest


def walk_json(value: Any) -> Iterator[tuple[Any, str, int]]:
    """Every value of a JSON-like tree in document order, with its path (``a.b[2]``) and depth (the top is 1).

    Walked with a stack, lazily: a 900-deep config is valid JSON, and a caller may stop early.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, where, depth = stack.pop()
        yield item, where, depth
        if isinstance(item, dict):
            stack.extend((child, f"{where}.{key}" if where else str(key), depth + 1)
                         for key, child in reversed(item.items()))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, f"{where}[{index}]", depth + 1) for index, child in reversed(list(enumerate(item))))


def first_non_finite(value: Any) -> str | None:
    """The path (``a.b[2]``) of the first NaN or infinite float in a JSON-like tree, or None if there is none."""
    return next((where or "(top level)" for item, where, _depth in walk_json(value)
                 if isinstance(item, float) and not math.isfinite(item)), None)


def _key(key: Any) -> Any:
    if isinstance(key, float):
        return float(key) if math.isfinite(key) else "null"
    return key if key is None or isinstance(key, (str, int)) else str(key)


def strict_json(payload: Any, *, indent: int | None = 2, sort_keys: bool = False,
                default: Callable[[Any], Any] | None = str) -> str:
    """``payload`` as strict JSON: non-finite floats become ``null``, control characters are ``\\u`` escapes.

    ``default`` turns objects JSON cannot hold into something it can (``str``
    unless told otherwise); what it returns is made finite too.
    """
    def fallback(value: Any) -> Any:
        if default is None:
            raise TypeError(f"{type(value).__name__} is not JSON serializable")
        return finite(default(value))

    data, depth = _finite_and_depth(payload)
    with _room_for(depth):
        return json.dumps(data, indent=indent, sort_keys=sort_keys, allow_nan=False, default=fallback)


@contextmanager
def _room_for(depth: int) -> Iterator[None]:
    """Let :mod:`json` (which recurses once or twice per level) write ``depth`` levels."""
    limit = sys.getrecursionlimit()
    if depth <= limit // 4:
        yield
        return
    sys.setrecursionlimit(limit + 2 * depth)
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)
