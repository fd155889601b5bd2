"""Loading datasets (CSV, JSON Lines, Hugging Face datasets on disk) and writing JSON Lines.

`load_dataset` turns a file into `Sample`s with normalised labels and a task type, or raises
`InputError` naming the file, the row, the field and the fix.

Row numbers in error messages count *data rows from 1*: the header of a CSV is not counted and
neither are blank lines, so "row 1" is the first sample (whose default id is "0", because ids
taken from row numbers are 0-based, as `Sample.row` is). When a row does not start on the line a
person would expect (multi-line quoted CSV fields, blank lines in JSON Lines), the message also
gives the line of the file where it starts.

Formats, chosen by the path:

- ``*.csv`` (``*.tsv``): a header row, then one row per sample; quoted fields may span lines. A
  UTF-8 byte-order mark is accepted.
- ``*.jsonl`` / ``*.ndjson``: one JSON object per line; ``*.json``: a JSON list of objects (or
  JSON Lines).
- a folder written by ``datasets``' ``save_to_disk``: a ``Dataset``, or a ``DatasetDict`` whose
  "train" split (or only split) is used.

Columns (names from `DataConfig`): question and answer are required; id is optional (the 0-based
row number is used without it); options, when present and non-empty, make the dataset multiple
choice: a JSON list of strings (a real list in JSON Lines / datasets), with the label a letter
(``"b"``, or an option's exact text, is accepted and normalised to ``"B"``). With ``data.task``
set explicitly to "text" or "numeric" the options column is not used (it stays in `Sample.extra`).
Numeric labels are normalised to canonical numbers (``"1,234.50"`` -> ``"1234.5"``). Every other
column is kept, unchanged, in `Sample.extra`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .answers import letters, normalize_label, parse_number
from .config import DataConfig
from .errors import InputError

__all__ = ["Dataset", "Sample", "load_dataset", "read_jsonl", "write_jsonl"]

_MAX_OPTIONS = 26
_OPTIONS_EXAMPLE = '["first option", "second option"]'


@dataclass
class Sample:
    id: str                    # the id column, or the 0-based row number as a string
    question: str
    label: str                 # the given (maybe noisy) answer, normalised: MC -> "A".."Z"
    options: list[str] | None  # present => multiple choice
    row: int                   # 0-based data row (header not counted)
    extra: dict = field(default_factory=dict)  # other columns, kept as they came


@dataclass
class Dataset:
    samples: list[Sample]
    task: str                  # "multiple_choice" | "text" | "numeric"
    path: Path

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)


@dataclass
class _Row:
    number: int                # 1-based data row
    line: int | None           # line of the file where the row starts, when there are lines
    values: dict[str, Any]


@dataclass
class _Table:
    path: Path
    columns: list[str]
    rows: list[_Row]
    header_lines: int = 0      # lines before data row 1 normally starts (1 for a CSV header)
    noun: str = "columns"


# --- reading files ---------------------------------------------------------------------------


def _decode(path: Path, data: bytes, csv_delimiter: str | None = None) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError("the file is UTF-16 encoded, not UTF-8", path=path,
                         fix="re-save the file as UTF-8 (in a spreadsheet: 'CSV UTF-8')")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        prefix = data[:line_start].decode("utf-8", errors="replace")
        row = None
        if csv_delimiter is not None:
            records = [r for r in csv.reader(io.StringIO(prefix, newline=""), delimiter=csv_delimiter) if r]
            row = len(records) if records else None
        else:
            row = sum(1 for ln in prefix.split("\n") if ln.strip()) + 1
        raise InputError(
            f"not UTF-8 text: byte 0x{data[e.start]:02X} at byte offset {e.start} (line {line}) "
            "cannot be decoded",
            path=path, row=row,
            fix="re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`, or "
                "'CSV UTF-8' in a spreadsheet)",
        ) from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot be read: {e.strerror or e}", path=path,
                         fix="check the file's permissions") from None


def _read_csv(path: Path, delimiter: str, limit: int | None) -> _Table:
    data = _read_bytes(path)
    text = _decode(path, data, delimiter)
    if not text.strip():
        raise InputError("the file is empty", path=path,
                         fix="write a header row (e.g. id,question,answer,options) and one row per sample")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[_Row] = []
    header_lines = 0
    start = 1
    try:
        for record in reader:
            blank = not record or (len(record) == 1 and not record[0].strip())
            if blank:
                start = reader.line_num + 1
                continue
            if header is None:
                header = [name.strip() for name in record]
                header_lines = reader.line_num
                seen: dict[str, int] = {}
                for i, name in enumerate(header, 1):
                    if name in seen:
                        raise InputError(
                            f"column '{name}' appears twice in the header (columns {seen[name]} and {i})",
                            path=path, fix="give every column a different name")
                    seen[name] = i
            else:
                number = len(rows) + 1
                if len(record) != len(header):
                    where = f" (the row starts on line {start})" if start != number + header_lines else ""
                    raise InputError(
                        f"has {len(record)} fields but the header has {len(header)} columns{where}",
                        path=path, row=number,
                        fix="quote fields that contain the delimiter or line breaks with double quotes "
                            '("a, b"), as a spreadsheet\'s CSV export does')
                rows.append(_Row(number, start, dict(zip(header, record))))
                if limit is not None and len(rows) >= limit:
                    break
            start = reader.line_num + 1
    except csv.Error as e:
        raise InputError(f"not valid CSV near line {reader.line_num}: {e}", path=path,
                         row=len(rows) + 1 if header is not None else None,
                         fix="check the quoting of that row: a field with quotes must be wrapped in "
                             'double quotes, and quotes inside it doubled ("")') from None
    assert header is not None
    if not rows:
        raise InputError("no data rows: the file has only a header", path=path,
                         fix="add one row per sample below the header")
    return _Table(path, header, rows, header_lines=header_lines)


def _iter_jsonl(path: Path, text: str) -> Iterator[tuple[int, int, Any]]:
    """(data row from 1, line, value) per non-blank line; InputError on invalid JSON."""
    lines = text.split("\n")
    last = max((i for i, ln in enumerate(lines, 1) if ln.strip()), default=0)
    number = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        number += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            truncated = lineno == last and not text.endswith("\n")
            raise InputError(
                f"line {lineno} is not valid JSON: {e.msg} (column {e.colno})",
                path=path, row=number,
                fix=("the last line looks cut off: the file may be truncated; remove or complete it"
                     if truncated else
                     "each line must hold exactly one JSON object, e.g. "
                     '{"question": "...", "answer": "..."}')) from None
        yield number, lineno, value


def _objects(path: Path, items: Iterable[tuple[int, int | None, Any]]) -> list[_Row]:
    rows = []
    for number, line, value in items:
        if not isinstance(value, dict):
            where = f"line {line}" if line is not None else f"item {number}"
            raise InputError(f"{where} holds {_json_type(value)}, not an object", path=path,
                             row=number, fix='each record must be a JSON object: {"question": ..., "answer": ...}')
        rows.append(_Row(number, line, value))
    return rows


def _json_type(value: Any) -> str:
    """'a list', 'an object', ...: the JSON kind of ``value`` with its article."""
    kind = {dict: "object", list: "list", str: "string", int: "number", float: "number",
            bool: "boolean", type(None): "null"}.get(type(value), type(value).__name__)
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _columns_of(rows: list[_Row]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row.values))
    return list(columns)


def _read_json_records(path: Path, limit: int | None) -> _Table:
    text = _decode(path, _read_bytes(path))
    if not text.strip():
        raise InputError("the file is empty", path=path,
                         fix='write one JSON object per line: {"question": "...", "answer": "..."}')
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})", path=path,
                             fix="fix the JSON, or write one object per line as .jsonl") from None
        if limit is not None:
            items = items[:limit]
        rows = _objects(path, ((i, None, v) for i, v in enumerate(items, 1)))
        header_lines = 0
    else:
        collected = []
        for item in _iter_jsonl(path, text):
            collected.append(item)
            if limit is not None and len(collected) >= limit:
                break
        rows = _objects(path, collected)
        header_lines = 0
    if not rows:
        raise InputError("no records in the file", path=path, fix="add one JSON object per sample")
    return _Table(path, _columns_of(rows), rows, header_lines=header_lines, noun="fields")


def _read_hf(path: Path, limit: int | None) -> _Table:
    markers = ("dataset_info.json", "state.json", "dataset_dict.json")
    if not any((path / m).is_file() for m in markers):
        raise InputError(
            "is a folder but not a dataset saved with Hugging Face datasets' save_to_disk "
            "(no dataset_dict.json or dataset_info.json in it)", path=path,
            fix="pass a .csv or .jsonl file, or a folder written by Dataset.save_to_disk")
    try:
        import datasets
    except ImportError:  # pragma: no cover - a dependency of the package
        raise InputError("reading a dataset folder needs the 'datasets' package", path=path,
                         fix="pip install datasets") from None
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - any failure here is a bad input folder
        raise InputError(f"cannot be loaded as a Hugging Face dataset: {e}", path=path,
                         fix="re-create it with Dataset.save_to_disk, or export it as .jsonl") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if "train" in loaded:
            loaded = loaded["train"]
        elif len(splits) == 1:
            loaded = loaded[splits[0]]
        else:
            shown = ", ".join(splits) if splits else "none"
            raise InputError(
                f"holds several splits ({shown}) and none is named 'train'", path=path,
                fix=f"point --data (or data.path) at one split's folder, e.g. {path / splits[0]}"
                if splits else "save a dataset with at least one split")
    if limit is not None and limit < len(loaded):
        loaded = loaded.select(range(limit))
    rows = [_Row(i, None, dict(record)) for i, record in enumerate(loaded, 1)]
    if not rows:
        raise InputError("the dataset has no rows", path=path, fix="save a dataset with at least one row")
    return _Table(path, list(loaded.column_names), rows)


def _read_table(path: Path, limit: int | None) -> _Table:
    if path.is_dir():
        return _read_hf(path, limit)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path, ",", limit)
    if suffix == ".tsv":
        return _read_csv(path, "\t", limit)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_json_records(path, limit)
    raise InputError(
        f"unsupported file type '{path.suffix or '(none)'}'", path=path,
        fix="use .csv, .tsv, .jsonl (one JSON object per line), .json, or a folder written by "
            "Hugging Face datasets' save_to_disk")


# --- building samples ------------------------------------------------------------------------


_COLUMN_KEYS = {
    "question": ("question_column", "questions"),
    "answer": ("answer_column", "answers (labels)"),
    "options": ("options_column", "options (a JSON list of strings)"),
}


def _missing_column(table: _Table, name: str, role: str, why: str = "") -> InputError:
    key, what = _COLUMN_KEYS[role]
    found = ", ".join(repr(c) for c in table.columns) or "none"
    near = [c for c in table.columns if c.strip().casefold() == name.casefold()]
    if near:
        fix = f"set data.{key}: {near[0]} (column names are case-sensitive)"
    elif len(table.columns) == 1 and any(d in table.columns[0] for d in ";\t|"):
        fix = ("the header looks separated by something other than commas: save the file "
               "comma-separated (or tab-separated as .tsv)")
    else:
        fix = f"set data.{key} to the column that holds the {what}"
    return InputError(f"missing column '{name}'{why} ({table.noun} found: {found})",
                      path=table.path, field=name, fix=fix)


class _RowContext:
    def __init__(self, table: _Table, row: _Row, sample_id: str | None = None):
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
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ctx.error(field_name, f"is {_json_type(value)}, not text",
                    fix="write this field as a string")


def _parse_options(raw: Any, ctx: _RowContext, col: str) -> list[str] | None:
    """The options list, or None when the field is empty."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    fix = f"write the options as a JSON list of strings, e.g. {_OPTIONS_EXAMPLE}"
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            shown = raw if len(raw) <= 60 else raw[:57] + "..."
            hint = (" (it looks like a Python list: JSON needs double quotes)"
                    if raw.lstrip().startswith("[") and "'" in raw else "")
            raise ctx.error(col, f"options {shown!r} are not a JSON list{hint}", fix=fix) from None
    else:
        parsed = raw
    if isinstance(parsed, tuple):
        parsed = list(parsed)
    if not isinstance(parsed, list):
        raise ctx.error(col, f"options must be a JSON list of strings, not {_json_type(parsed)}", fix=fix)
    if not parsed:
        return None
    for i, option in enumerate(parsed, 1):
        if not isinstance(option, str):
            raise ctx.error(col, f"option {i} is {_json_type(option)}, not a string", fix=fix)
        if not option.strip():
            raise ctx.error(col, f"option {i} is empty", fix="remove the empty option or give it its text")
    if len(parsed) > _MAX_OPTIONS:
        raise ctx.error(col, f"has {len(parsed)} options; at most {_MAX_OPTIONS} are supported",
                        fix="split the question or reduce its options")
    return parsed


@dataclass
class _Parsed:
    row: _Row
    sample_id: str
    question: str
    label: str
    options: list[str] | None


def load_dataset(cfg: DataConfig, path: str | Path | None = None, *,
                 out_of_range_labels: str | None = None) -> Dataset:
    """Read the samples at ``path`` (default ``cfg.path``), columns and task as ``cfg`` says.

    ``cfg.limit`` keeps the first N rows (rows after them are not read). Raises `InputError`
    naming the file, the data row (counted from 1, header and blank lines not counted), the field
    and the fix.

    ``out_of_range_labels="keep"`` accepts, in multiple choice, a label that is a letter past the
    last option (e.g. "D" with three options) and keeps it as that letter: such a label is
    certainly wrong, which is what denoising is for (the published ARC noisy50/noisy70 files have
    one). The default (``cfg.out_of_range_labels``, "error") rejects it. Any other label that fits
    no option is always an error.
    """
    out_of_range_labels = out_of_range_labels or cfg.out_of_range_labels
    if out_of_range_labels not in ("error", "keep"):
        raise ValueError(f"out_of_range_labels must be 'error' or 'keep', not {out_of_range_labels!r}")
    chosen = path if path is not None else cfg.path
    if chosen is None:
        raise InputError("no data file given", fix="pass --data FILE, or set data.path in the config")
    p = Path(chosen)
    if not p.exists():
        raise InputError("file not found", path=p,
                         fix="check the path (a relative data.path is relative to the config file "
                             "or the current directory)")
    table = _read_table(p, cfg.limit)
    columns = set(table.columns)
    qcol, acol, idcol, ocol = cfg.question_column, cfg.answer_column, cfg.id_column, cfg.options_column
    if qcol not in columns:
        raise _missing_column(table, qcol, "question")
    if acol not in columns:
        raise _missing_column(table, acol, "answer")
    if cfg.task == "multiple_choice" and ocol not in columns:
        raise _missing_column(table, ocol, "options", why=" (data.task is multiple_choice)")
    has_id = idcol in columns
    use_options = ocol in columns and cfg.task in ("auto", "multiple_choice")

    parsed: list[_Parsed] = []
    first_row_of: dict[str, int] = {}
    for row in table.rows:
        ctx = _RowContext(table, row)
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
        if qcol not in row.values:
            raise ctx.error(qcol, f"no '{qcol}' field in this record", fix="give every record a question")
        question = _as_text(row.values[qcol], ctx, qcol).strip()
        if not question:
            raise ctx.error(qcol, "question is empty", fix="write the question, or remove the row")
        if acol not in row.values:
            raise ctx.error(acol, f"no '{acol}' field in this record", fix="give every record an answer")
        label = _as_text(row.values[acol], ctx, acol).strip()
        if not label:
            raise ctx.error(acol, "label is empty", fix="write the answer, or remove the row")
        options = _parse_options(row.values.get(ocol), ctx, ocol) if use_options else None
        parsed.append(_Parsed(row, sample_id, question, label, options))

    task = _decide_task(cfg.task, parsed, table, ocol)
    used = {qcol, acol} | ({idcol} if has_id else set()) | ({ocol} if task == "multiple_choice" else set())
    samples = []
    for item in parsed:
        ctx = _RowContext(table, item.row, item.sample_id if has_id else None)
        label = _normalise(item, task, ctx, acol, ocol, keep_out_of_range=out_of_range_labels == "keep")
        extra = {k: v for k, v in item.row.values.items() if k not in used}
        samples.append(Sample(id=item.sample_id, question=item.question, label=label,
                              options=item.options if task == "multiple_choice" else None,
                              row=item.row.number - 1, extra=extra))
    return Dataset(samples=samples, task=task, path=p)


def _decide_task(requested: str, parsed: list[_Parsed], table: _Table, ocol: str) -> str:
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
        return requested
    if all(parse_number(p.label) is not None for p in parsed):
        return "numeric"
    return "text"


def _normalise(item: _Parsed, task: str, ctx: _RowContext, acol: str, ocol: str,
               keep_out_of_range: bool) -> str:
    try:
        return normalize_label(item.label, task, item.options)
    except ValueError:
        pass
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
                    "; if the letter is just a wrong label, set data.out_of_range_labels: keep "
                    "(--out-of-range-labels keep) to have it relabeled" if len(shown) == 1 and shown.isalpha() else ""))
    raise ctx.error(
        acol, f"label {shown!r} is not a number",
        fix="correct the label, or set data.task to text (or auto) if the answers are not numbers")


# --- JSON Lines ------------------------------------------------------------------------------


def read_jsonl(path: str | Path) -> list[dict]:
    """Every object in a JSON Lines file, in order. Blank lines are skipped.

    Raises `InputError` (with the line number) on a missing file, bytes that are not UTF-8, a line
    that is not valid JSON (e.g. a truncated last line) or a line that is not an object.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError("file not found", path=p, fix="check the path")
    text = _decode(p, _read_bytes(p))
    return [row.values for row in _objects(p, _iter_jsonl(p, text))]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    """Write one JSON object per line, atomically: a temp file in the same folder, then rename.

    Readers see either the old file or the complete new one, never a half-written file. The
    folder is created if needed. Paths, dataclasses and numpy values are converted.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    mode = p.stat().st_mode & 0o777 if p.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False, default=_json_default))
                f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
