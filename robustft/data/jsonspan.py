"""Where a value stands in JSON text, so one value can be replaced and every other byte kept.

    value_span(text, path, start=0) -> (start, end)     path: keys and list indexes
    item_spans(text, start) -> [(start, end), ...]      the elements of the array at `start`
    replace_value(text, path, new_value) -> text

`json.loads` gives values but not positions; this walks the text with the standard library's own
scanner (`JSONDecoder.scan_once` skips a whole value at a time), so it accepts exactly what
`json.loads` accepts.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

__all__ = ["value_span", "item_spans", "replace_value", "dumps_like"]

_WS = re.compile(r"[ \t\n\r]*")
_scan = json.JSONDecoder().scan_once
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]


def _skip(text: str, i: int) -> int:
    return _WS.match(text, i).end()  # type: ignore[union-attr]


def _value_end(text: str, i: int) -> int:
    try:
        return _scan(text, i)[1]
    except StopIteration:
        raise ValueError(f"no JSON value at offset {i}") from None


def _expect(text: str, i: int, char: str) -> int:
    if text[i:i + 1] != char:
        raise ValueError(f"expected {char!r} at offset {i}, found {text[i:i + 1]!r}")
    return i + 1


def value_span(text: str, path: Sequence[str | int], start: int = 0) -> tuple[int, int]:
    """The [start, end) offsets of the value at `path` inside the JSON value that begins at
    `start` (leading whitespace allowed). Raises KeyError/IndexError when the path is absent."""
    i = _skip(text, start)
    for step in path:
        if isinstance(step, str):
            i = _expect(text, i, "{")
            i = _skip(text, i)
            while True:
                if text[i:i + 1] == "}":
                    raise KeyError(step)
                key, i = _scanstring(text, i + 1)
                i = _expect(text, _skip(text, i), ":")
                i = _skip(text, i)
                if key == step:
                    break  # the last duplicate would win in json.loads; records do not repeat keys
                i = _skip(text, _value_end(text, i))
                if text[i:i + 1] == ",":
                    i = _skip(text, i + 1)
        else:
            spans = item_spans(text, i)
            if not 0 <= step < len(spans):
                raise IndexError(step)
            i = spans[step][0]
    return i, _value_end(text, i)


def item_spans(text: str, start: int) -> list[tuple[int, int]]:
    """The [start, end) offsets of each element of the JSON array that begins at `start`."""
    i = _expect(text, _skip(text, start), "[")
    i = _skip(text, i)
    spans: list[tuple[int, int]] = []
    if text[i:i + 1] == "]":
        return spans
    while True:
        end = _value_end(text, i)
        spans.append((i, end))
        i = _skip(text, end)
        if text[i:i + 1] == "]":
            return spans
        i = _skip(text, _expect(text, i, ","))


def dumps_like(value: Any, original: str) -> str:
    """`value` as JSON, escaping non-ASCII characters only when `original` did (an ASCII-only
    text that holds \\u escapes)."""
    ascii_only = original.isascii() and "\\u" in original
    return json.dumps(value, ensure_ascii=ascii_only)


def replace_value(text: str, path: Sequence[str | int], new_value: Any, start: int = 0) -> str:
    """`text` with the value at `path` replaced by `new_value`; every other character unchanged."""
    s, e = value_span(text, path, start)
    return text[:s] + dumps_like(new_value, text) + text[e:]
