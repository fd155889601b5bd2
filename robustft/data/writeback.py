"""The fine-tuning set in the input's own format: the records that were read, with new answers.

    write_back(table, dataset, labels, out) -> WriteResult

`labels` maps the id of each sample to keep to the label to train on (`denoised.jsonl`'s
`label`). The records are written in input order; samples not in `labels` are left out. A record
whose label did not change is written exactly as it was read: its source text, byte for byte,
when the output has the input's file type. A changed record gets its answer replaced (in a
conversation, only the content of the last assistant turn) and nothing else: in JSON text the new
answer is spliced into the record's own text (`robustft.data.jsonspan`), so every other field and
turn keeps its bytes and order; CSV rows are re-quoted by the csv module; Parquet and datasets
folders keep their schema.

The new answer is written in the form the original answer had: an option letter stays a letter,
an option's text becomes the new option's text; a number keeps its type in typed columns.

The output's type follows `out`'s suffix (.jsonl/.ndjson, .json, .csv, .tsv, .parquet; anything
else is a folder written with save_to_disk), so a CSV can also come out as JSON Lines.
"""

from __future__ import annotations

import copy
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..answers import option_text
from ..errors import InputError
from ..files import atomic_folder, atomic_write, json_text
from .jsonspan import dumps_like, item_spans, replace_value, value_span
from .records import Row, Table
from .samples import Dataset
from .shapes import AnswerSlot, Shape, layout_of
from .sources import PARQUET_SUFFIXES

__all__ = ["WriteResult", "kind_for", "write_back", "answer_like"]

_SUFFIX_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
                 **{s: "parquet" for s in PARQUET_SUFFIXES}}
_LETTER = re.compile(r"\(?([A-Za-z])[.)]?")


@dataclass
class WriteResult:
    path: Path
    kind: str
    count: int
    changed: int


def kind_for(out: str | Path) -> str:
    """The file type written to `out`, from its suffix; no known suffix: a save_to_disk folder."""
    return _SUFFIX_KINDS.get(Path(out).suffix.lower(), "disk")


def answer_like(original: Any, label: str, task: str, options: list[str] | None) -> Any:
    """`label` written in the form `original` had (letter or option text; a number's type)."""
    if task == "multiple_choice" and options:
        text = option_text(label, options)
        if not _LETTER.fullmatch(str(original).strip()) and text is not None:
            return text
        return label
    if isinstance(original, bool) or not isinstance(original, (int, float)):
        return label
    try:
        number = float(label)
    except ValueError:
        return label
    return int(number) if isinstance(original, int) and number.is_integer() else number


# --- one record ------------------------------------------------------------------------------


def _slot(dataset: Dataset, row: Row) -> tuple[AnswerSlot, Any]:
    """Where the answer stands in this record, and the answer as written there (its layout says)."""
    src = dataset.source
    assert src is not None
    return layout_of(src.shape).answer_slot(Shape(src.shape, src.shape_column), row.values, src.answer_column)


def _set_path(value: Any, path: list[str | int], new: Any) -> Any:
    if not path:
        return new
    value = value.tolist() if hasattr(value, "tolist") else value
    value = copy.copy(value)
    value[path[0]] = _set_path(value[path[0]], path[1:], new)
    return value


def _new_values(row: Row, slot: AnswerSlot, new: Any) -> dict[str, Any]:
    values = dict(row.values)
    if slot.encoded:
        values[slot.column] = replace_value(values[slot.column], slot.path, new)
    else:
        values[slot.column] = _set_path(values[slot.column], slot.path, new)
    return values


def _new_raw(raw: str, slot: AnswerSlot, values: dict[str, Any], new: Any) -> str:
    """The record's JSON text with only the answer replaced."""
    if slot.encoded:
        return replace_value(raw, [slot.column], values[slot.column])
    s, e = value_span(raw, [slot.column, *slot.path])
    return raw[:s] + dumps_like(new, raw) + raw[e:]


# --- files -----------------------------------------------------------------------------------


@dataclass
class _Out:
    row: Row
    values: dict[str, Any]
    raw: str | None            # source text to write as is (None: serialise `values`)


def write_back(table: Table, dataset: Dataset, labels: dict[str, str], out: str | Path) -> WriteResult:
    out = Path(out)
    kind = kind_for(out)
    same_kind = kind == table.kind
    raws = _json_item_texts(table) if same_kind and kind == "json" else None
    records: list[_Out] = []
    changed = 0
    for sample in dataset.samples:
        if sample.id not in labels:
            continue
        row = table.rows[sample.row]
        raw = row.raw if same_kind else None
        if raws is not None:
            raw = raws[sample.row]
        label = labels[sample.id]
        if label == sample.label:
            records.append(_Out(row, row.values, raw))
            continue
        slot, original = _slot(dataset, row)
        layout = dataset.source.options_layout if dataset.source is not None else None
        new = layout.answer_as_written(label, original, row.values) if layout is not None else None
        if new is None:  # a letter or an option's text, as the row wrote it
            new = answer_like(original, label, dataset.task, sample.options)
        values = _new_values(row, slot, new)
        if raw is not None and kind in ("jsonl", "json"):
            raw = _new_raw(raw, slot, values, new)
        else:
            raw = None
        records.append(_Out(row, values, raw))
        changed += 1
    writer = {"jsonl": _write_jsonl, "json": _write_json, "csv": _write_csv, "tsv": _write_csv,
              "parquet": _write_parquet, "disk": _write_disk}[kind]
    writer(out, table, records, same_kind)
    return WriteResult(path=out, kind=kind, count=len(records), changed=changed)


def _dumps(values: dict[str, Any]) -> str:
    return json_text(values)


def _write_jsonl(out: Path, table: Table, records: list[_Out], same_kind: bool) -> None:
    newline = table.newline if same_kind else "\n"
    with atomic_write(out, newline="") as f:
        for r in records:
            f.write((r.raw if r.raw is not None else _dumps(r.values)) + newline)


def _json_item_texts(table: Table) -> list[str] | None:
    """Each record's source text in a JSON document (None when the document is one record)."""
    if table.text is None:
        return None
    start = value_span(table.text, [table.json_key])[0] if table.json_key else 0
    if table.text[start:].lstrip()[:1] != "[":
        return None
    spans = item_spans(table.text, start)
    return [table.text[s:e] for s, e in spans]


def _write_json(out: Path, table: Table, records: list[_Out], same_kind: bool) -> None:
    text = table.text if same_kind else None
    items = _json_item_texts(table) if same_kind else None
    if text is None or items is None or any(r.raw is None for r in records):
        body = json_text([r.values for r in records], indent=2)
        with atomic_write(out) as f:
            f.write(body + "\n")
        return
    # Keep the document around the list, and the list's own layout (indentation, separators).
    list_start, list_end = value_span(text, [table.json_key]) if table.json_key else value_span(text, [])
    spans = item_spans(text, list_start)
    opening = text[list_start + 1:spans[0][0]] if spans else ""
    closing = text[spans[-1][1]:list_end - 1] if spans else ""
    separator = text[spans[0][1]:spans[1][0]] if len(spans) > 1 else "," + opening
    inner = opening + separator.join(r.raw for r in records) + closing if records else ""  # type: ignore[misc]
    with atomic_write(out, newline="") as f:
        f.write(text[:list_start] + "[" + inner + "]" + text[list_end:])


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json_text(value)


def _write_csv(out: Path, table: Table, records: list[_Out], same_kind: bool) -> None:
    delimiter = "\t" if kind_for(out) == "tsv" else ","
    newline = table.newline if same_kind else "\n"
    columns = list(table.columns)
    with atomic_write(out, newline="") as f:
        if same_kind and table.header_raw is not None:
            f.write(table.header_raw if table.header_raw.endswith(("\n", "\r")) else table.header_raw + newline)
        else:
            csv.writer(f, delimiter=delimiter, lineterminator=newline).writerow(columns)
        for r in records:
            if r.raw is not None and same_kind:
                f.write(r.raw if r.raw.endswith(("\n", "\r")) else r.raw + newline)
                continue
            buffer = io.StringIO()
            csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerow(
                ["" if r.values.get(c) is None else _cell(r.values.get(c)) for c in columns])
            f.write(buffer.getvalue())


def _write_parquet(out: Path, table: Table, records: list[_Out], same_kind: bool) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = table.schema if same_kind and isinstance(table.schema, pa.Schema) else None
    arrow = pa.Table.from_pylist([r.values for r in records], schema=schema)
    with atomic_write(out, binary=True) as f:
        pq.write_table(arrow, f)


def _write_disk(out: Path, table: Table, records: list[_Out], same_kind: bool) -> None:
    import datasets

    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not (out / "dataset_info.json").is_file():
        raise InputError("exists and is not a dataset folder this command wrote", path=out,
                         fix="give `out` a new or empty folder, or a file name ending in .jsonl, .json, .csv "
                             "or .parquet")
    features = table.schema if isinstance(table.schema, datasets.Features) else None
    ds = datasets.Dataset.from_list([r.values for r in records], features=features)
    with atomic_folder(out) as folder:
        ds.save_to_disk(str(folder))
