"""Reading records: the one place that turns CSV, TSV, JSON Lines and JSON files into rows. Every
module that reads a file of records uses these, or the pieces they are made of.

    read_records(path)  -> list[dict]   CSV / TSV / JSON Lines / JSON, by suffix
    read_jsonl(path)    -> list[dict]   one object per line
    read_csv(path)      -> list[dict]   a header, then one row per record (fields up to any size)

    utf8_text(data)     -> str          bytes to text, or NotUTF8 saying where they are not
    json_lines(text)    -> (row, line, text, value) per non-blank line, or BadJsonLine saying where
    no_field_limit()                    lifts the csv module's 128 KiB field limit while reading

The pieces let a reader with its own file (the run directory's, a review file) keep its own
messages. Writing (atomically) is `robustft.files`; `write_jsonl` and `write_json` are also here.

Errors are `InputError`s that name the file, the data row (counted from 1, header and blank
lines not counted), the line where it starts when that differs, and the fix.

`read_table` keeps more than the values: each row's exact source text (a JSON Lines line, a CSV
record, a JSON array item), so that a file can be written back with everything but a changed
answer byte-for-byte as it was (see `robustft.data.writeback`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import InputError
from ..files import write_json, write_jsonl
from ..formats import JSONL_SUFFIXES, TEXT_SUFFIXES

__all__ = ["BadJsonLine", "NotUTF8", "Row", "Table", "json_lines", "json_type", "no_field_limit", "read_csv",
           "read_json_records", "read_jsonl", "read_records", "read_table", "utf8_text", "write_json",
           "write_jsonl"]

DELIMITERS = {"csv": ",", "tsv": "\t"}
# Keys under which a JSON object commonly holds its list of records.
LIST_KEYS = ("data", "rows", "records", "examples", "samples", "items", "instances", "train")


@dataclass
class Row:
    number: int                # 1-based data row
    line: int | None           # line of the file where the row starts, when there are lines
    values: dict[str, Any]
    raw: str | None = None     # the row's exact source text, when the source is text


@dataclass
class Table:
    """Rows read from one source, with what is needed to write the same source back."""

    path: Any                  # what error messages name: a Path, or a hub name
    columns: list[str]
    rows: list[Row]
    kind: str = "records"      # csv | tsv | jsonl | json | parquet | disk | hub | records
    header_lines: int = 0      # lines before data row 1 normally starts (1 for a CSV header)
    noun: str = "columns"
    text: str | None = None    # json: the whole document, for writing it back in place
    json_key: str | None = None  # json: the key of the top-level object that holds the list
    header_raw: str | None = None  # csv/tsv: the header line exactly as it was
    newline: str = "\n"        # csv/tsv: the line ending the file uses
    schema: Any = None         # parquet: pyarrow schema; disk/hub: datasets Features
    split: str | None = None   # disk/hub: the split that was read


# --- bytes and text --------------------------------------------------------------------------


def json_type(value: Any) -> str:
    """'a list', 'an object', ...: the JSON kind of ``value`` with its article."""
    kind = {dict: "object", list: "list", str: "string", int: "number", float: "number",
            bool: "boolean", type(None): "null"}.get(type(value), type(value).__name__)
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot be read: {e.strerror or e}", path=path,
                         fix="check the file's permissions") from None


class NotUTF8(ValueError):
    """Bytes that are not UTF-8 text, and where: the first bad byte's offset and line."""

    def __init__(self, data: bytes, error: UnicodeDecodeError):
        self.offset = error.start
        self.byte = data[error.start]
        self.line = data.count(b"\n", 0, error.start) + 1
        self.before = data[:data.rfind(b"\n", 0, error.start) + 1]  # the whole lines before that one
        super().__init__(f"byte 0x{self.byte:02X} at byte offset {self.offset} (line {self.line}) is not UTF-8")


def utf8_text(data: bytes) -> str:
    """`data` as text, a leading byte-order mark dropped; `NotUTF8` when it is not UTF-8."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotUTF8(data, e) from None


def decode(path: Path, data: bytes, csv_delimiter: str | None = None) -> str:
    """UTF-8 text (a byte-order mark is dropped), or an InputError naming the row and byte."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError("the file is UTF-16 encoded, not UTF-8", path=path,
                         fix="re-save the file as UTF-8 (in a spreadsheet: 'CSV UTF-8')")
    try:
        return utf8_text(data)
    except NotUTF8 as e:
        prefix = e.before.decode("utf-8", errors="replace")
        if csv_delimiter is not None:
            with no_field_limit():
                records = [r for r in csv.reader(io.StringIO(prefix, newline=""), delimiter=csv_delimiter) if r]
            row = len(records) if records else None
        else:
            row = sum(1 for ln in prefix.split("\n") if ln.strip()) + 1
        raise InputError(
            f"not UTF-8 text: byte 0x{e.byte:02X} at byte offset {e.offset} (line {e.line}) "
            "cannot be decoded",
            path=path, row=row,
            fix="re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`, or "
                "'CSV UTF-8' in a spreadsheet)",
        ) from None


def _text_of(path: Path, csv_delimiter: str | None = None) -> str:
    if not path.is_file():
        raise InputError("file not found" if not path.exists() else "is not a file", path=path,
                         fix="check the path")
    return decode(path, _read_bytes(path), csv_delimiter)


# --- CSV -------------------------------------------------------------------------------------


@contextlib.contextmanager
def no_field_limit() -> Iterator[None]:
    """The csv module refuses fields over 128 KiB by default; long contexts are normal in SFT data."""
    old = csv.field_size_limit()
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            break
        except OverflowError:  # a C long smaller than Py_ssize_t (Windows)
            limit //= 2
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _read_csv_table(path: Path, kind: str, limit: int | None = None, delimiter: str | None = None) -> Table:
    delimiter = delimiter or DELIMITERS[kind]
    text = _text_of(path, delimiter)
    if not text.strip():
        raise InputError("the file is empty", path=path,
                         fix="write a header row (e.g. id,question,answer,options) and one row per sample")
    lines = list(io.StringIO(text, newline=""))  # the physical lines, exactly as the reader consumes them
    reader = csv.reader(iter(lines), delimiter=delimiter)
    header: list[str] | None = None
    header_raw: str | None = None
    rows: list[Row] = []
    header_lines = 0
    consumed = 0
    try:
        with no_field_limit():
            for record in reader:
                start, consumed = consumed + 1, reader.line_num
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                raw = "".join(lines[start - 1:consumed])
                if header is None:
                    header = [name.strip() for name in record]
                    header_raw, header_lines = raw, consumed
                    _check_header(path, header)
                    continue
                number = len(rows) + 1
                if len(record) != len(header):
                    where = f" (the row starts on line {start})" if start != number + header_lines else ""
                    raise InputError(
                        f"has {len(record)} fields but the header has {len(header)} columns{where}",
                        path=path, row=number,
                        fix="quote fields that contain the delimiter or line breaks with double quotes "
                            '("a, b"), as a spreadsheet\'s CSV export does')
                rows.append(Row(number, start, dict(zip(header, record)), raw))
                if limit is not None and len(rows) >= limit:
                    break
    except csv.Error as e:
        raise InputError(f"not valid CSV near line {reader.line_num}: {e}", path=path,
                         row=len(rows) + 1 if header is not None else None,
                         fix="check the quoting of that row: a field with quotes must be wrapped in "
                             'double quotes, and quotes inside it doubled ("")') from None
    assert header is not None and header_raw is not None
    if not rows:
        raise InputError("no data rows: the file has only a header", path=path,
                         fix="add one row per sample below the header")
    newline = "\r\n" if header_raw.endswith("\r\n") else "\r" if header_raw.endswith("\r") else "\n"
    return Table(path, header, rows, kind=kind, header_lines=header_lines, header_raw=header_raw,
                 newline=newline)


def _check_header(path: Path, header: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(header, 1):
        if name in seen:
            raise InputError(f"column '{name}' appears twice in the header (columns {seen[name]} and {i})",
                             path=path, fix="give every column a different name")
        seen[name] = i


def read_csv(path: str | Path, delimiter: str | None = None) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts keyed by the header; `delimiter` defaults to a tab for
    ``.tsv`` and a comma otherwise (``";"`` reads what spreadsheets write in many locales).

    Fields of any size are read (the csv module's 128 KiB limit is lifted while reading). Raises
    `InputError` naming the file and row for a ragged row, bad quoting or text that is not UTF-8.
    """
    p = Path(path)
    if delimiter is not None and len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, not {delimiter!r}")
    kind = "tsv" if p.suffix.lower() == ".tsv" else "csv"
    return [row.values for row in _read_csv_table(p, kind, delimiter=delimiter).rows]


# --- JSON Lines and JSON ---------------------------------------------------------------------


class BadJsonLine(ValueError):
    """A line of JSON Lines text that is not JSON: its line, its data row, the parser's error, and
    whether it is the last line that holds anything (a file cut short ends in one)."""

    def __init__(self, line: int, row: int, error: json.JSONDecodeError, last: bool):
        self.line, self.row, self.error, self.last = line, row, error, last
        super().__init__(f"line {line} is not valid JSON: {error}")


def load_json(text: str) -> Any:
    """`json.loads`, with every way the text can fail raised as `json.JSONDecodeError`: an integer
    longer than Python converts (4,300 digits) and nesting deeper than the interpreter's recursion
    limit (about 1,000 levels) included (they were a ValueError and a RecursionError: a traceback)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply (more than about 1,000 levels of [ and {)", text, 0) from None
    except ValueError as e:  # "Exceeds the limit (4300 digits) for integer string conversion"
        import re

        long_number = re.search(r"\d{4300,}", text)
        raise json.JSONDecodeError(f"a number too long to read ({str(e).split(';')[0]}); write it as a string",
                                   text, long_number.start() if long_number else 0) from None


def json_lines(text: str) -> Iterator[tuple[int, int, str, Any]]:
    """(data row from 1, line, the line's text, value) per non-blank line of JSON Lines text;
    `BadJsonLine` at the first line that is not JSON. Only "\n" ends a line."""
    lines = text.split("\n")
    last = max((i for i, ln in enumerate(lines, 1) if ln.strip()), default=0)
    number = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        number += 1
        try:
            value = load_json(line)
        except json.JSONDecodeError as e:
            raise BadJsonLine(lineno, number, e, lineno == last) from None
        yield number, lineno, line.rstrip("\r"), value


def _iter_jsonl(path: Path, text: str) -> Iterator[tuple[int, int, str, Any]]:
    try:
        yield from json_lines(text)
    except BadJsonLine as bad:
        truncated = bad.last and not text.endswith("\n")
        raise InputError(
            f"line {bad.line} is not valid JSON: {bad.error.msg} (column {bad.error.colno})",
            path=path, row=bad.row,
            fix=("the last line looks cut off: the file may be truncated; remove or complete it"
                 if truncated else
                 "each line must hold exactly one JSON object, e.g. "
                 '{"question": "...", "answer": "..."}')) from None


def _objects(path: Path, items: Iterable[tuple[int, int | None, str | None, Any]]) -> list[Row]:
    rows = []
    for number, line, raw, value in items:
        if not isinstance(value, dict):
            where = f"line {line}" if line is not None else f"item {number}"
            raise InputError(f"{where} holds {json_type(value)}, not an object", path=path,
                             row=number, fix='each record must be a JSON object: {"question": ..., "answer": ...}')
        rows.append(Row(number, line, value, raw))
    return rows


def columns_of(rows: list[Row]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row.values))
    return list(columns)


CHAT_KEYS = ("messages", "conversations", "history")


def _list_in_object(path: Path, obj: dict, key: str | None) -> tuple[str, list] | None:
    """The list of records a top-level JSON object holds, and its key; None when the object is
    itself one record."""
    if key is not None:
        if isinstance(obj.get(key), list):
            return key, obj[key]
        lists = [k for k, v in obj.items() if isinstance(v, list)]
        raise InputError(f"the JSON object has no list under '{key}' (keys holding lists: "
                         f"{', '.join(repr(k) for k in lists) or 'none'})", path=path,
                         fix="set data.split to one of those keys")
    for k in LIST_KEYS:
        if isinstance(obj.get(k), list):
            return k, obj[k]
    # An object whose every value is a list (and none a conversation) holds records; else it is one.
    if not obj or any(not isinstance(v, list) or k in CHAT_KEYS for k, v in obj.items()):
        return None
    if len(obj) == 1:
        return next(iter(obj.items()))
    raise InputError(f"the JSON object holds several lists ({', '.join(repr(k) for k in obj)}) and none is "
                     f"under a usual key ({', '.join(LIST_KEYS)})", path=path,
                     fix="set data.split to the key of the list to read")


def _read_json_table(path: Path, kind: str, limit: int | None, key: str | None = None) -> Table:
    text = _text_of(path)
    if not text.strip():
        raise InputError("the file is empty", path=path,
                         fix='write one JSON object per line: {"question": "...", "answer": "..."}')
    head = text.lstrip()[:1]
    whole_document = kind == "json" and head in ("[", "{")
    if whole_document:
        try:
            document = load_json(text)
        except json.JSONDecodeError as e:
            if head == "{" and "\n{" in text.strip():
                whole_document = False  # JSON Lines saved as .json
            else:
                raise InputError(f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})", path=path,
                                 fix="fix the JSON, or write one object per line as .jsonl") from None
    if whole_document:
        json_key = None
        if isinstance(document, dict):
            held = _list_in_object(path, document, key)
            if held is None:
                document = [document]
            else:
                json_key, document = held
        items = document
        if limit is not None:
            items = items[:limit]
        rows = _objects(path, ((i, None, None, v) for i, v in enumerate(items, 1)))
        table = Table(path, columns_of(rows), rows, kind="json", noun="fields", text=text, json_key=json_key)
    else:
        collected = []
        for item in _iter_jsonl(path, text):
            collected.append(item)
            if limit is not None and len(collected) >= limit:
                break
        rows = _objects(path, collected)
        table = Table(path, columns_of(rows), rows, kind="jsonl", noun="fields",
                      newline="\r\n" if "\r\n" in text else "\n")
    if not rows:
        raise InputError("no records in the file", path=path, fix="add one JSON object per sample")
    return table


def read_jsonl(path: str | Path) -> list[dict]:
    """Every object in a JSON Lines file, in order. Blank lines are skipped.

    Raises `InputError` (with the line number) on a missing file, bytes that are not UTF-8, a line
    that is not valid JSON (e.g. a truncated last line) or a line that is not an object.
    """
    p = Path(path)
    text = _text_of(p)
    return [row.values for row in _objects(p, _iter_jsonl(p, text))]


def read_json_records(path: str | Path) -> list[dict]:
    """A JSON file's records: a list of objects, or an object holding one under "data" (or another
    usual key, or its only list); a `.json` file written as JSON Lines works too."""
    return [row.values for row in _read_json_table(Path(path), "json", None).rows]


def read_records(path: str | Path) -> list[dict]:
    """The records of a CSV, TSV, JSON Lines or JSON file, by its suffix."""
    p = Path(path)
    kind = TEXT_SUFFIXES.get(p.suffix.lower())
    if kind is None:
        raise InputError(f"unsupported file type '{p.suffix or '(none)'}'", path=p,
                         fix="use .csv, .tsv, .jsonl or .json")
    return [row.values for row in read_table(p, kind).rows]


def read_table(path: Path, kind: str, limit: int | None = None, json_key: str | None = None) -> Table:
    """A text file of records as a `Table` (kind: csv, tsv, jsonl or json)."""
    if kind in DELIMITERS:
        return _read_csv_table(path, kind, limit)
    return _read_json_table(path, kind, limit, json_key)
