"""Building samples from rows: ids, questions, answers, options, the task type, and the checks that
make every bad row an `InputError` naming the file, the row, the field and the fix.

    load_dataset(cfg, source=None) -> Dataset          read `source` (default cfg.path) and build
    build_dataset(table, cfg) -> Dataset               build from rows already read

Row numbers in messages count *data rows from 1*: a CSV header is not counted, nor are blank
lines, so "row 1" is the first sample (whose default id is "0": ids taken from row numbers are
0-based, as `Sample.row` is). When a row does not start on the line a person would expect
(multi-line quoted CSV fields, blank lines in JSON Lines) the message also gives the line.

Columns (names from `DataConfig`): in a table the question and answer are required; in a chat
shape they come from the conversation (`robustft.data.shapes`). The id is optional everywhere
(the 0-based row number without it). Options, when present and non-empty, make the dataset
multiple choice: a JSON list of strings (a real list in JSON / Parquet / datasets), with the label
a letter (``"b"``, or an option's exact text, is accepted and normalised to ``"B"``). With
``data.task`` set to text, numeric or open the options column is not used (it stays in
`Sample.extra`). Every other column is kept, unchanged, in `Sample.extra`.

Task inference (``data.task: auto``): options -> multiple_choice; every label a number ->
numeric (normalised: ``"1,234.50"`` -> ``"1234.5"``); answers that are long free text -> open,
when the median answer has `OPEN_MEDIAN_WORDS` (8) words or more (a short answer such as "Paris"
or "the Treaty of Versailles" stays text, compared as a string; a paragraph can only be compared
by meaning); else text. Open-ended labels are kept exactly as written (only surrounding
whitespace is dropped).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..answers import letters, normalize_label, parse_number
from ..config import DataConfig
from ..errors import InputError
from ..tasks import task_of
from .choices import OptionLayout, find_layout, likely_option_columns
from .records import Row, Table, json_type, load_json
from .shapes import SHAPE_HINT, Layout, Shape, ShapeError, cell_text, layout_of, recognise
from .sources import open_source

__all__ = ["Dataset", "DataSource", "Sample", "OPEN_MEDIAN_WORDS", "build_dataset", "infer_task", "load_dataset",
           "load_source"]

OPEN_MEDIAN_WORDS = 8
_MAX_OPTIONS = 26
_OPTIONS_EXAMPLE = '["first option", "second option"]'


@dataclass
class Sample:
    id: str                    # the id column, or the 0-based row number as a string
    question: str              # a conversation's last user turn; Alpaca: instruction + input
    label: str                 # the given (maybe noisy) answer, normalised: MC -> "A".."Z"
    options: list[str] | None  # present => multiple choice
    row: int                   # 0-based data row (header not counted)
    extra: dict = field(default_factory=dict)  # other columns, kept as they came
    # Chat shapes: the turns before the answer, [{"role": "system"|"user"|"assistant", "content"}],
    # ending with the last user turn (whose content is `question`). None for tables.
    conversation: list[dict[str, str]] | None = None


@dataclass
class DataSource:
    """What was read and how, so that the same format can be written back (`robustft export`)."""

    location: str              # the path (absolute) or hub name as read
    kind: str                  # csv | tsv | jsonl | json | parquet | disk | hub | records
    shape: str                 # the layout: table | messages | sharegpt | alpaca, or a package's
    columns: list[str]         # every column / top-level key, in order
    answer_column: str         # the column holding the answer (Alpaca: output; chats: the conversation)
    split: str | None = None
    options_layout: OptionLayout | None = None  # multiple choice: where the options are, how answers are written
    shape_column: str | None = None  # the column the layout reads records from (a conversation's), if one


@dataclass
class Dataset:
    samples: list[Sample]
    task: str                  # "multiple_choice" | "text" | "numeric" | "open"
    path: Path
    source: DataSource | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)


# --- errors ----------------------------------------------------------------------------------


_COLUMN_KEYS = {
    "question": ("question_column", "questions"),
    "answer": ("answer_column", "answers (labels)"),
    "options": ("options_column", "options (a JSON list of strings)"),
}


def _missing_column(table: Table, name: str, role: str, why: str = "") -> InputError:
    key, what = _COLUMN_KEYS[role]
    found = ", ".join(repr(c) for c in table.columns) or "none"
    near = [c for c in table.columns if c.strip().casefold() == name.casefold()]
    if near:
        fix = f"set data.{key}: {near[0]} (column names are case-sensitive)"
    elif len(table.columns) == 1 and any(d in table.columns[0] for d in ";\t|"):
        fix = ("the header looks separated by something other than commas: save the file "
               "comma-separated (or tab-separated as .tsv)")
    elif role == "options":
        fix = f"set data.{key} to the column that holds the {what}"
    else:
        fix = (f"set data.{key} to the column that holds the {what}; the recognised shapes are "
               f"{SHAPE_HINT}")
    return InputError(f"missing column '{name}'{why} ({table.noun} found: {found})",
                      path=table.path, field=name, fix=fix)


class _RowContext:
    def __init__(self, table: Table, row: Row, sample_id: str | None = None):
        self.table, self.row, self.sample_id = table, row, sample_id

    def error(self, field_name: str | None, message: str, fix: str) -> InputError:
        notes = []
        if self.sample_id is not None:
            notes.append(f"id '{self.sample_id}'")
        row = self.row
        if row.line is not None and row.line != row.number + self.table.header_lines:
            notes.append(f"starts on line {row.line}")
        if notes:
            message = f"{message} ({'; '.join(notes)})"
        return InputError(message, path=self.table.path, row=row.number, field=field_name, fix=fix)


def _as_text(value: Any, ctx: _RowContext, field_name: str) -> str:
    try:
        return cell_text(value, field_name)
    except ShapeError as e:
        raise ctx.error(e.field, str(e), fix=e.fix) from None


def _check_text(values: dict[str, Any], ctx: _RowContext) -> None:
    """No text in the row that robustft cannot keep: a NUL character (a binary file, or text that
    files and spreadsheets cut off) or a lone surrogate (`\\ud800` in JSON: half of a character,
    which no UTF-8 file can hold). Checked for every field, nested ones too, before anything is
    written."""
    def bad(value: Any) -> str | None:
        if isinstance(value, str):
            if "\x00" in value:
                return "holds a NUL character (\\u0000)"
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as e:
                    return f"holds a lone surrogate ({value[e.start]!r}: half of a character) at position {e.start}"
            return None
        if isinstance(value, dict):
            return next((b for b in map(bad, list(value.keys()) + list(value.values())) if b), None)
        if isinstance(value, (list, tuple)):
            return next((b for b in map(bad, value) if b), None)
        return None

    for name, value in values.items():
        problem = bad(name) if isinstance(name, str) else None
        problem = problem or bad(value)
        if problem:
            raise ctx.error(str(name).encode("utf-8", "backslashreplace").decode(), problem,
                            fix="remove or replace that character in the data (a JSON file may spell it as an "
                                "escape such as \\u0000 or \\ud800)")


def _parse_options(raw: Any, ctx: _RowContext, col: str) -> list[str] | None:
    """The options list, or None when the field is empty."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    fix = f"write the options as a JSON list of strings, e.g. {_OPTIONS_EXAMPLE}"
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            parsed = load_json(raw)
        except json.JSONDecodeError:
            shown = raw if len(raw) <= 60 else raw[:57] + "..."
            hint = (" (it looks like a Python list: JSON needs double quotes)"
                    if raw.lstrip().startswith("[") and "'" in raw else "")
            raise ctx.error(col, f"options {shown!r} are not a JSON list{hint}", fix=fix) from None
    else:
        parsed = raw.tolist() if hasattr(raw, "tolist") else raw
    if isinstance(parsed, tuple):
        parsed = list(parsed)
    if not isinstance(parsed, list):
        raise ctx.error(col, f"options must be a JSON list of strings, not {json_type(parsed)}", fix=fix)
    if not parsed:
        return None
    for i, option in enumerate(parsed, 1):
        if not isinstance(option, str):
            raise ctx.error(col, f"option {i} is {json_type(option)}, not a string", fix=fix)
        if not option.strip():
            raise ctx.error(col, f"option {i} is empty", fix="remove the empty option or give it its text")
    if len(parsed) > _MAX_OPTIONS:
        raise ctx.error(col, f"has {len(parsed)} options; at most {_MAX_OPTIONS} are supported",
                        fix="split the question or reduce its options")
    return parsed


# --- building --------------------------------------------------------------------------------


@dataclass
class _Parsed:
    row: Row
    sample_id: str
    question: str
    label: str
    options: list[str] | None
    conversation: list[dict[str, str]] | None
    used: set[str]


def load_source(cfg: DataConfig, source: Any = None) -> tuple[Table, Dataset]:
    """The rows as read and the dataset built from them (`robustft export` needs both)."""
    chosen = source if source is not None else cfg.path
    if chosen is None:
        raise InputError("no data given", fix="set data.path to a file, a folder or a hub name")
    table = open_source(chosen, limit=cfg.limit, split=cfg.split)
    return table, build_dataset(table, cfg)


def load_dataset(cfg: DataConfig, path: Any = None, *, out_of_range_labels: str | None = None) -> Dataset:
    """Read the samples at ``path`` (default ``cfg.path``: a file, a folder, a hub name, or records
    in memory), fields and task as ``cfg`` says.

    ``cfg.limit`` keeps the first N rows (rows after them are not read from text files). Raises
    `InputError` naming the file, the data row (counted from 1, header and blank lines not
    counted), the field and the fix.

    ``out_of_range_labels="keep"`` accepts, in multiple choice, a label that is a letter past the
    last option (e.g. "D" with three options) and keeps it as that letter: such a label is
    certainly wrong, which is what denoising is for (the published ARC noisy50/noisy70 files have
    one). The default (``cfg.out_of_range_labels``, "error") rejects it. Any other label that fits
    no option is always an error.
    """
    if out_of_range_labels is not None:
        if out_of_range_labels not in ("error", "keep"):
            raise ValueError(f"out_of_range_labels must be 'error' or 'keep', not {out_of_range_labels!r}")
        cfg = cfg.model_copy(update={"out_of_range_labels": out_of_range_labels})
    return load_source(cfg, path)[1]


def _layout(table: Table, cfg: DataConfig) -> OptionLayout | None:
    """The multiple-choice layout (`robustft.data.choices`), when the task may be multiple choice."""
    if cfg.task not in ("auto", "multiple_choice"):
        return None
    if cfg.options_columns:
        missing = [c for c in cfg.options_columns if c not in table.columns]
        if missing:
            raise InputError(f"data.options_columns names {', '.join(repr(c) for c in missing)}, not in the data "
                             f"({table.noun} found: {', '.join(repr(c) for c in table.columns)})", path=table.path,
                             field=missing[0], fix="name the columns that hold the options, in order, e.g. "
                                                   "data.options_columns: [A, B, C, D]")
    return find_layout(table.columns, [r.values for r in table.rows], options_column=cfg.options_column,
                       options_columns=cfg.options_columns, answer_column=cfg.answer_column)


def build_dataset(table: Table, cfg: DataConfig) -> Dataset:
    layout = _layout(table, cfg)
    if layout is not None and cfg.answer_column not in table.columns and layout.answer_column in table.columns:
        cfg = cfg.model_copy(update={"answer_column": layout.answer_column})  # ARC's answerKey, a `label`
    shape = recognise(table.columns, cfg, table.rows[0].values if table.rows else None)
    form = layout_of(shape.name)  # the input layout (`robustft.data.shapes.Layout`): how a record is read
    columns = set(table.columns)
    idcol = cfg.id_column
    ocol = layout.columns[0] if layout is not None else cfg.options_column
    if shape.name == "table":  # the fallback layout: its message says which columns were looked for and why
        if cfg.question_column not in columns:
            raise _missing_column(table, cfg.question_column, "question")
        if cfg.answer_column not in columns:
            raise _missing_column(table, cfg.answer_column, "answer")
    fields, fix = form.required(shape, cfg)
    for name in fields:
        if name not in columns:
            raise InputError(f"missing field '{name}' (data.format is {shape.name}; {table.noun} found: "
                             f"{', '.join(repr(c) for c in table.columns)})", path=table.path, field=name, fix=fix)
    if cfg.task == "multiple_choice" and layout is None:
        raise _missing_column(table, ocol, "options", why=" (data.task is multiple_choice)")
    has_id = idcol in columns

    parsed: list[_Parsed] = []
    first_row_of: dict[str, int] = {}
    for row in table.rows:
        ctx = _RowContext(table, row)
        _check_text(row.values, ctx)
        if has_id:
            sample_id = _as_text(row.values.get(idcol), ctx, idcol).strip()
            if not sample_id:
                raise ctx.error(idcol, "id is empty",
                                fix=f"give every row an id, or remove the '{idcol}' column to use row "
                                    "numbers as ids (set data.id_column if ids live in another column)")
            if sample_id in first_row_of:
                raise ctx.error(idcol, f"duplicate id '{sample_id}': row {first_row_of[sample_id]} has it too",
                                fix="ids must be unique: change or remove one of the two rows")
            first_row_of[sample_id] = row.number
            ctx.sample_id = sample_id
        else:
            sample_id = str(row.number - 1)
        question, label, conversation, used = _question_and_answer(form, shape, row, ctx, cfg)
        options = None
        if layout is not None and layout.kind == "list":
            options = _parse_options(row.values.get(ocol), ctx, ocol)  # the checks as before, word for word
        elif layout is not None:
            try:
                options = layout.options(row.values)
            except ValueError as e:
                raise ctx.error(ocol, str(e), fix=f"give every row its options, e.g. {_OPTIONS_EXAMPLE}") from None
            if options is not None and len(options) > _MAX_OPTIONS:
                raise ctx.error(ocol, f"has {len(options)} options; at most {_MAX_OPTIONS} are supported",
                                fix="split the question or reduce its options")
        if layout is not None and options:
            label = layout.answer_text(label, row.values, len(options))
        parsed.append(_Parsed(row, sample_id, question, label, options, conversation, used))

    task = _decide_task(cfg.task, parsed, table, ocol)
    if task != "multiple_choice" and cfg.task == "auto":
        _check_not_unseen_choices(parsed, table, form.answer_column(shape, cfg))
    samples = []
    for item in parsed:
        ctx = _RowContext(table, item.row, item.sample_id if has_id else None)
        label = _normalise(item, task, ctx, form.answer_column(shape, cfg), ocol,
                           keep_out_of_range=cfg.out_of_range_labels == "keep")
        option_cols = set(layout.columns) if layout is not None else set()
        used = item.used | ({idcol} if has_id else set()) | (option_cols if task == "multiple_choice" else set())
        extra = {k: v for k, v in item.row.values.items() if k not in used}
        samples.append(Sample(id=item.sample_id, question=item.question, label=label,
                              options=item.options if task == "multiple_choice" else None,
                              row=item.row.number - 1, extra=extra, conversation=item.conversation))
    path = Path(table.path) if isinstance(table.path, (str, Path)) else Path(str(table.path))
    if table.kind not in ("hub", "records"):
        path = path.resolve()
    source = DataSource(location=str(path), kind=table.kind, shape=shape.name, columns=list(table.columns),
                        answer_column=form.answer_column(shape, cfg), split=table.split, shape_column=shape.column,
                        options_layout=layout if task == "multiple_choice" else None)
    return Dataset(samples=samples, task=task, path=path, source=source)


_LETTER_LABEL = frozenset("ABCDEFGH")  # capitals: a lowercase "a" is as likely a word as an option


def _check_not_unseen_choices(parsed: list[_Parsed], table: Table, acol: str) -> None:
    """Answers that are all option letters (or all small integers, beside columns that look like
    options) with no options found: a multiple-choice file read as text would waste every call."""
    labels = [p.label.strip().strip("().") for p in parsed]
    if not labels:
        return
    likely = likely_option_columns(table.columns)
    as_letters = all(len(x) == 1 and x in _LETTER_LABEL for x in labels)
    # small integers are often counts: only beside two or more columns that look like options
    as_numbers = all(x.isdigit() and int(x) < 10 for x in labels)
    if not (as_letters or (as_numbers and len(likely) >= 2)):
        return
    what = "an option letter" if as_letters else "a small integer (an option position?)"
    near = f"; columns that look like options: {', '.join(repr(c) for c in likely)}" if likely else ""
    raise InputError(
        f"every answer is {what}, but no options were found{near} ({table.noun} found: "
        f"{', '.join(repr(c) for c in table.columns)})", path=table.path, field=acol,
        fix="name the option columns in order in data.options_columns (e.g. A, B, C, D), or put the options in an "
            "'options' column as a JSON list; if the answers really are short text, set data.task to text")


def _question_and_answer(form: Layout, shape: Shape, row: Row, ctx: _RowContext, cfg: DataConfig):
    try:
        p = form.parse(shape, row.values, cfg)
    except ShapeError as e:
        raise ctx.error(e.field, str(e), fix=e.fix) from None
    if not p.question.strip():
        raise ctx.error(p.slot.column, "the question (the last user turn) is empty",
                        fix="write the question, or remove the record")
    if not p.answer.strip():
        raise ctx.error(p.slot.column, "the answer (the last assistant turn) is empty",
                        fix="write the answer, or remove the record")
    return p.question.strip(), p.answer.strip(), p.conversation, p.used


def infer_task(labels: list[str], has_options: bool = False) -> str:
    """The task `data.task: auto` picks for these labels (see the module docstring)."""
    if has_options:
        return "multiple_choice"
    if labels and all(parse_number(label) is not None for label in labels):
        return "numeric"
    if labels and statistics.median(len(label.split()) for label in labels) >= OPEN_MEDIAN_WORDS:
        return "open"
    return "text"


def _decide_task(requested: str, parsed: list[_Parsed], table: Table, ocol: str) -> str:
    with_options = [p for p in parsed if p.options is not None]
    if requested == "multiple_choice" or (requested == "auto" and with_options):
        for item in parsed:
            if item.options is None:
                why = (f" (other rows have options, e.g. row {with_options[0].row.number})"
                       if with_options else " (data.task is multiple_choice)")
                raise _RowContext(table, item.row).error(
                    ocol, f"options are empty{why}",
                    fix=f"give every row its options as a JSON list, e.g. {_OPTIONS_EXAMPLE}")
        return "multiple_choice"
    if requested != "auto":
        return task_of(requested).name  # a task type nobody registered: the ConfigError naming data.task
    return infer_task([p.label for p in parsed])


def _normalise(item: _Parsed, task: str, ctx: _RowContext, acol: str, ocol: str,
               keep_out_of_range: bool) -> str:
    if task == "open":
        return item.label
    try:
        return normalize_label(item.label, task, item.options)
    except ValueError as e:
        problem = str(e)
    if task == "multiple_choice" and keep_out_of_range:
        try:
            return normalize_label(item.label, task, None)  # any letter A-Z
        except ValueError:
            pass
    shown = item.label if len(item.label) <= 60 else item.label[:57] + "..."
    if task == "multiple_choice":
        valid = letters(len(item.options or []))
        raise ctx.error(
            acol, f"label {shown!r} is not one of the options: valid labels are {', '.join(valid)} "
                  f"(or an option's exact text)",
            fix=f"set the label to a letter {valid[0]}-{valid[-1]} (A = first option), or check that "
                f"'{ocol}' lists every option" + (
                    "; if the letter is just a wrong label, set data.out_of_range_labels to keep "
                    "to have it relabeled" if len(shown) == 1 and shown.isalpha() else ""))
    if task == "numeric":
        raise ctx.error(
            acol, f"label {shown!r} is not a number",
            fix="correct the label, or set data.task to text (or auto) if the answers are not numbers")
    raise ctx.error(acol, problem, fix=f"correct the label, or set data.task to the task type of these answers "
                                       f"(data.task is {task})")
