"""Multiple-choice layouts, recognised by shape: where a row keeps its options and how it writes
the answer, so that every common layout is read as multiple choice and written back as it came.

Layouts (`find_layout`, first match wins):

- ``columns``: one column per option, named by `data.options_columns` (e.g. A, B, C, D)
  or recognised: ``A``..``E`` (MMLU's CSV), ``option_a``.. / ``option_A``.. / ``optionA``..,
  ``choice1``.. / ``choice_1``.. (``choice0``.. too), ``opa``.. (MedMCQA). An empty cell ends a
  row's options (a question with fewer options than columns).
- ``list``: a column holding a list of option texts (a JSON list in a CSV cell): the configured
  ``data.options_column`` (default ``options``), else ``choices``, ``endings`` or ``options``.
- ``arc``: ARC's ``choices: {"text": [...], "label": ["A", ...]}`` with the answer in ``answerKey``
  (ARC's labels are letters or digits ``1``..``4``; the answer is whichever the row uses).

The answer (``data.answer_column``, else ``answerKey`` or ``label`` when they hold it) is a letter,
an option's text, or an integer position. Integers are 0-based (the Hub's convention, MMLU's
``answer: 2`` is C) unless some answer equals the number of options and none is 0: then
1-based; `OptionLayout.describe` states which, and the dry run prints it. `answer_as_written`
turns a letter back into the row's own form (the integer in the same base, ARC's key).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Literal

from ..answers import letter_index, letters

__all__ = ["OptionLayout", "find_layout", "likely_option_columns"]

LIST_COLUMNS = ("choices", "endings", "options")
ANSWER_COLUMNS = ("answer", "answerKey", "label", "correct", "cop")
_MAX_OPTIONS = 26

# recognised families of option columns: a name for each position, from the first
_FAMILIES: tuple[tuple[str, Any], ...] = (
    ("letters", lambda i: chr(ord("A") + i)),
    ("option_a", lambda i: f"option_{chr(ord('a') + i)}"),
    ("option_A", lambda i: f"option_{chr(ord('A') + i)}"),
    ("optionA", lambda i: f"option{chr(ord('A') + i)}"),
    ("opa", lambda i: f"op{chr(ord('a') + i)}"),
    ("choice1", lambda i: f"choice{i + 1}"),
    ("choice_1", lambda i: f"choice_{i + 1}"),
    ("choice0", lambda i: f"choice{i}"),
    ("ending0", lambda i: f"ending{i}"),
)
_INTEGER = re.compile(r"[0-9]{1,2}")


@dataclass(frozen=True)
class OptionLayout:
    kind: Literal["list", "columns", "arc"]
    columns: tuple[str, ...]          # list / arc: the one column; columns: the option columns in order
    answer_column: str
    index_base: int | None = None     # 0 or 1 when answers are integer positions; None: letters or texts

    def describe(self) -> str:
        where = {"list": f"a list in column '{self.columns[0]}'",
                 "arc": f"ARC's {{text, label}} in column '{self.columns[0]}'",
                 "columns": f"columns {', '.join(self.columns)}"}[self.kind]
        how = (f"; answers in '{self.answer_column}' are {self.index_base}-based positions "
               f"({self.index_base} = A)" if self.index_base is not None else f"; answers in '{self.answer_column}'")
        return f"multiple choice: options from {where}{how}"

    def options(self, values: dict[str, Any]) -> list[str] | None:
        """This row's option texts (None when it has none). Raises ValueError saying what is wrong."""
        if self.kind == "columns":
            found = []
            for col in self.columns:
                value = values.get(col)
                if _empty(value):
                    break
                found.append(str(value).strip())
            return found or None
        raw = _as_list_or_dict(values.get(self.columns[0]))
        if raw is None:
            return None
        if self.kind == "arc":
            if not isinstance(raw, dict) or not isinstance(raw.get("text"), list):
                raise ValueError(f"'{self.columns[0]}' must be {{\"text\": [...], \"label\": [...]}} as in ARC")
            raw = raw["text"]
        if not isinstance(raw, list) or not all(isinstance(o, (str, int, float)) for o in raw):
            raise ValueError(f"'{self.columns[0]}' must be a list of option texts")
        return [str(o) for o in raw] or None

    def keys(self, values: dict[str, Any]) -> list[str] | None:
        """ARC: this row's option labels (``["A", "B", ...]`` or ``["1", "2", ...]``)."""
        if self.kind != "arc":
            return None
        raw = _as_list_or_dict(values.get(self.columns[0]))
        labels = raw.get("label") if isinstance(raw, dict) else None
        return [str(x) for x in labels] if isinstance(labels, list) else None

    def answer_text(self, answer: str, values: dict[str, Any], n_options: int) -> str:
        """The answer as a letter when it is written as a position or an ARC key; else as it is."""
        text = answer.strip()
        keys = self.keys(values)
        if keys and text in keys:
            return letters(len(keys))[keys.index(text)]
        if self.index_base is not None and _INTEGER.fullmatch(text):
            i = int(text) - self.index_base
            if 0 <= i < max(n_options, 1) and i < _MAX_OPTIONS:
                return letters(i + 1)[-1]
        return answer

    def answer_as_written(self, letter: str, original: Any, values: dict[str, Any]) -> Any:
        """``letter`` in the form this row wrote its answer (a position, an ARC key), else None."""
        i = letter_index(letter)
        if i is None:
            return None
        keys = self.keys(values)
        if keys and i < len(keys) and str(original).strip() in keys:
            return keys[i]
        if self.index_base is not None and _INTEGER.fullmatch(str(original).strip()):
            n = i + self.index_base
            return n if isinstance(original, int) and not isinstance(original, bool) else str(n)
        return None


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or str(value).strip() == ""


def _as_list_or_dict(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in value.items()}
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text[0] in "[{":
            try:
                return json.loads(text)
            except ValueError:
                raise ValueError(f"{text[:60]!r} is not valid JSON") from None
        return value
    return value


def _option_columns(present: set[str]) -> tuple[str, ...] | None:
    for _, name in _FAMILIES:
        found = []
        while len(found) < _MAX_OPTIONS and name(len(found)) in present:
            found.append(name(len(found)))
        if len(found) >= 2:
            return tuple(found)
    return None


def likely_option_columns(columns: Iterable[str]) -> list[str]:
    """Columns that look like they hold options, for an error message (``opt1``, ``Answer A``...)."""
    out = []
    for c in columns:
        low = c.casefold()
        if re.fullmatch(r"(option|choice|opt|ans(wer)?|ending)[ _-]?([a-z]|[0-9]{1,2})", low) or \
                re.fullmatch(r"[a-e]", low) or low in ("choices", "options", "endings", "distractors"):
            out.append(c)
    return out


def find_layout(columns: list[str], rows: list[dict[str, Any]], *, options_column: str,
                options_columns: list[str] | None, answer_column: str) -> OptionLayout | None:
    """The multiple-choice layout of rows with these columns, or None (see the module docstring)."""
    present = set(columns)
    answer = answer_column if answer_column in present else next(
        (c for c in ANSWER_COLUMNS if c in present), answer_column)
    if options_columns:
        layout: OptionLayout | None = OptionLayout("columns", tuple(options_columns), answer)
    elif options_column in present:
        layout = OptionLayout("list", (options_column,), answer)
    else:
        listed = next((c for c in LIST_COLUMNS if c in present), None)
        cols = _option_columns(present - {answer})
        if listed is not None:
            layout = OptionLayout("list", (listed,), answer)
        elif cols is not None:
            layout = OptionLayout("columns", cols, answer)
        else:
            return None
    if layout.kind == "list":
        first = next((_safe(r.get(layout.columns[0])) for r in rows if not _empty_list(r.get(layout.columns[0]))), None)
        if isinstance(first, dict):
            answer = "answerKey" if "answerKey" in present and answer_column not in present else answer
            layout = OptionLayout("arc", layout.columns, answer)
    return OptionLayout(layout.kind, layout.columns, layout.answer_column, _index_base(layout, rows))


def _safe(value: Any) -> Any:
    try:
        return _as_list_or_dict(value)
    except ValueError:
        return None


def _empty_list(value: Any) -> bool:
    return _safe(value) in (None, [], {})


def _index_base(layout: OptionLayout, rows: list[dict[str, Any]]) -> int | None:
    """0 or 1 when every answer is a small integer (and not an ARC key); None otherwise."""
    seen: list[tuple[int, int]] = []  # (answer, number of options)
    for values in rows:
        raw = values.get(layout.answer_column)
        if raw is None or isinstance(raw, bool):
            return None
        text = str(raw).strip()
        if layout.kind == "arc":
            keys = layout.keys(values) or []
            if text in keys:
                continue
        if not _INTEGER.fullmatch(text):
            return None
        try:
            n = len(layout.options(values) or [])
        except ValueError:
            n = 0
        seen.append((int(text), n))
    if not seen:
        return None
    if any(a == 0 for a, _ in seen):
        return 0
    if any(n and a == n for a, n in seen):
        return 1
    return 0
