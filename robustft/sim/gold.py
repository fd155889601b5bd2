"""The gold answers the simulated expert knows, read with `robustft.data.gold` like any dataset."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..answers import letters
from ..data.gold import read_gold
from ..errors import InputError
from .facts import ANSWER_MARKER, fact_words, is_right

__all__ = ["GoldItem", "load_gold"]


@dataclass(frozen=True)
class GoldItem:
    """One gold row.

    `answer` is a letter when `options` is set, else the answer text. An open-ended row (a `key`
    column) has a free-text response as `answer`, the key fact that response states as `key`, and
    optionally `distractors`: facts a right response must not state (e.g. the other options of the
    question the row was made from). See `robustft.sim.facts` for what "states" means.

    Two optional columns make an open-ended question *hard* for the simulated experts (the noise kinds
    of `robustft.sim.open_data`): `mistake`, a wrong fact every expert tends to state (a consistent
    error), and `confabulates` (true/false), where each expert reply states a fact drawn anew.
    """

    id: str
    question: str
    answer: str
    options: tuple[str, ...] | None = None
    key: str | None = None
    distractors: tuple[str, ...] = ()
    mistake: str | None = None
    confabulates: bool = False

    @property
    def answer_text(self) -> str:
        if self.options is None:
            return self.answer
        return self.options[letters(len(self.options)).index(self.answer)]

    @property
    def is_open(self) -> bool:
        return self.key is not None

    @property
    def is_hard(self) -> bool:
        return self.mistake is not None or self.confabulates


def _text_list(value: Any, path: Path, row: int, column: str) -> tuple[str, ...]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return ()
    fix = f"write {column} as a JSON list of strings, e.g. [\"first fact\", \"second fact\"], or leave it empty"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InputError(f"{column} is not a JSON list", path=path, row=row, field=column, fix=fix) from None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError(f"{column} must be a list of non-empty strings", path=path, row=row, field=column, fix=fix)
    return tuple(v.strip() for v in value)


def _hardness(sample: Any, path: Path, key: str) -> tuple[str | None, bool]:
    row = sample.row + 1
    mistake = str(sample.extra.get("mistake") or "").strip() or None
    if mistake is not None and fact_words(mistake) in ((), fact_words(key)):
        raise InputError("the mistake is the key fact itself (or has no words)", path=path, row=row, field="mistake",
                         fix="give a wrong fact the experts state instead of the key, or leave it empty")
    flag = sample.extra.get("confabulates")
    text = str(flag).strip().lower() if flag is not None else ""
    if text not in ("", "true", "false", "1", "0"):
        raise InputError(f"confabulates must be true or false, got {flag!r}", path=path, row=row,
                         field="confabulates", fix="write true, false, or leave it empty")
    return mistake, text in ("true", "1")


def _open_item(sample: Any, path: Path) -> tuple[str, tuple[str, ...]]:
    row = sample.row + 1
    key = str(sample.extra.get("key") or "").strip()
    if not key or not fact_words(key):
        raise InputError("empty key fact", path=path, row=row, field="key",
                         fix="give every row of an open-ended gold file its key fact (a few words its "
                             "answer states), or drop the key column for short answers")
    if ANSWER_MARKER in sample.label.lower():
        raise InputError("the answer contains the marker 'Answer:'", path=path, row=row, field="answer",
                         fix="replies end with 'Answer: <response>', so a response cannot contain the marker; "
                             "reword it")
    distractors = tuple(d for d in _text_list(sample.extra.get("distractors"), path, row, "distractors")
                        if fact_words(d) != fact_words(key))
    if not is_right(sample.label, key, distractors):
        raise InputError(f"the answer does not state its key fact {key!r} (or also states a distractor)",
                         path=path, row=row, field="key",
                         fix="make the key a phrase that occurs in the answer, word for word (case and "
                             "punctuation aside), and no distractor occurs outside it")
    return key, distractors


def load_gold(path: str | Path) -> list[GoldItem]:
    """Gold rows from any file `robustft.data.gold.read_gold` reads (CSV, JSONL, JSON, ...).

    Columns: `question`, `answer`, optional `id` and `options` (multiple choice: a JSON list, the
    answer a letter or an option's text); for open-ended rows `key` (the key fact) and optional
    `distractors` (a JSON list), `mistake` and `confabulates`. Raises `InputError` naming the file, row (counted from 1) and field.
    """
    path = Path(path)
    dataset = read_gold(path)
    open_ended = dataset.task != "multiple_choice" and any("key" in s.extra for s in dataset.samples)
    items = []
    for sample in dataset.samples:
        key, distractors = _open_item(sample, path) if open_ended else (None, ())
        mistake, confabulates = _hardness(sample, path, key) if key is not None else (None, False)
        items.append(GoldItem(id=sample.id, question=sample.question, answer=sample.label,
                              options=tuple(sample.options) if sample.options is not None else None,
                              key=key, distractors=distractors, mistake=mistake, confabulates=confabulates))
    return items
