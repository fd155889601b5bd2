"""Human review: export the contested samples of a run to a file a person edits, import the decisions.

    robustft review export DIR [--out FILE] [--score-above X]    -> DIR/review.csv by default
    robustft review import DIR FILE

Contested samples are those the checker flagged as noisy: relabeled (kept), dropped by selection,
or failed after the flag. `score_above` narrows the relabeled ones to those whose selection
score is above X (the model was unsure); dropped and failed ones are always exported.

Open-ended runs with trust scores (`denoise.trust`) export every scored sample, the ones the
checker called clean too, ordered by the given response's `trust`, most suspicious (lowest) first:
a person who reviews the first 10 % of the rows sees the 10 % the score trusts least. Samples
without a score follow in input order.

The file (CSV, or JSON Lines when FILE ends in .jsonl) has one row per sample: id, status,
question, options, original_label, proposed_label, current_label (its label in denoised.jsonl, empty
when left out), score, each agent's answer, the checker's reason, and two columns for the person:

    decision   empty   no change: what the tool decided stands
               keep    keep the sample with its original (given) label
               accept  keep the sample with the proposed label (e.g. rescue a dropped relabel)
               drop    leave the sample out of the fine-tuning set
               A, B..  (multiple choice) keep the sample with this option letter
               text    (free-text / numeric tasks) keep the sample with this label; write
                       `label:keep` to use one of the words above as a label
    note       free text, kept in the review log

Import validates every row first (unknown id, a letter outside the options, a duplicate id: exit 2
naming the row) and changes nothing unless all rows are valid. It then rewrites denoised.jsonl:
decided samples carry `source: "human"`, dropped ones are removed, rescued ones are inserted in
input order. The first import keeps the tool's version as denoised.before_review.jsonl; every
change is appended to review_log.jsonl (shown by `robustft trace`). Importing the same file again
changes nothing. Re-running `robustft denoise` on DIR keeps the decisions: the run directory replays
review_log.jsonl over the fresh fine-tuning set (`robustft.run.rundir.replay_review_log`).
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..answers import format_options, letters, normalize_label
from ..data.records import JSONL_SUFFIXES, BadJsonLine, NotUTF8, json_lines, no_field_limit, utf8_text
from ..errors import UserError
from ..method import ANSWERING
from ..files import atomic_write, remove_stale_temporaries, write_jsonl
from ..run.outputs import human_record
from ..run.records import FineTuningRecord, SampleRecord
from ..run.rundir import (BACKUP, DENOISED, SAMPLES, ReviewDecision, RunFiles, append_review_log, load_run,
                          read_jsonl_checked, read_review_log, replay_review_log)

COLUMNS = ["id", "status", "question", "options", "original_label", "proposed_label", "current_label", "score", "trust",
           "base_answer", "reasoning_answer", "context_answer", "reviewer_answer", "checker_reason",
           "decision", "note"]
KEYWORDS = ("keep", "accept", "drop")

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection). OWASP's
# remedy: a leading single quote, which spreadsheets show as text. A value that already starts with
# quotes before such a character gets one more, so that import (which removes one) restores every
# value exactly. Plain numbers (-3.5, +2) are left alone: they are numbers, not formulas.
_FORMULA_START = re.compile(r"'*[=+\-@\t\r]")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_QUOTED = re.compile(r"'+[=+\-@\t\r]")


# A NUL byte cannot travel in a CSV file (spreadsheets cut the text there, and a NUL marks a
# damaged file on import): a cell holding one is written as `json:` and the value as a JSON string
# (NUL as \u0000), and so is a value that itself starts with `json:`, so every text comes back.
_ESCAPED = "json:"


def neutralise_cell(value: str) -> str:
    """A CSV cell a spreadsheet shows as text, never evaluates, and that holds no NUL byte."""
    if "\x00" in value or value.startswith(_ESCAPED):
        return _ESCAPED + json.dumps(value)
    if _FORMULA_START.match(value) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def restore_cell(value: str) -> str:
    """The value `neutralise_cell` was given."""
    if value.startswith(_ESCAPED):
        try:
            decoded = json.loads(value[len(_ESCAPED):])
        except ValueError:
            return value
        return decoded if isinstance(decoded, str) else value
    return value[1:] if _QUOTED.match(value) else value


def contested(run: RunFiles, score_above: float | None = None) -> list[dict[str, Any]]:
    """The samples to review, in the order to review them (see the module docstring)."""
    ranked = any(r.get("trust") is not None for r in run.records)
    out = []
    for r in run.records:
        if ranked and r.get("trust") is not None and r.get("decision") != "noisy":
            out.append(r)
            continue
        if r.get("decision") != "noisy":
            continue
        if r["status"] in ("relabeled", "confirmed") and score_above is not None:
            if r.get("score") is not None and r["score"] <= score_above:
                continue
        out.append(r)
    if ranked:  # stable: ties and unscored samples keep input order
        out.sort(key=lambda r: (r.get("trust") is None, r.get("trust") or 0.0))
    return out


def _row(r: SampleRecord, current: FineTuningRecord | None, for_csv: bool) -> dict[str, Any]:
    nodes = r.get("nodes") or {}
    opts = r.get("options")
    return {
        "id": r["id"], "status": r["status"], "question": r.get("question"),
        "options": (format_options(opts) if for_csv else opts) if opts else ("" if for_csv else None),
        "original_label": r.get("original_label"), "proposed_label": r.get("proposed_label"),
        "current_label": current.get("label") if current else None,
        "score": None if r.get("score") is None else round(float(r["score"]), 4),
        "trust": None if r.get("trust") is None else round(float(r["trust"]), 4),
        **{f"{role}_answer": (nodes.get(role) or {}).get("answer") for role in ANSWERING},
        "checker_reason": r.get("decision_reason"), "decision": "", "note": "",
    }


def export_review(run_dir: str | Path, out: str | Path | None = None, *, score_above: float | None = None,
                  force: bool = False) -> tuple[Path, int]:
    """Write the contested samples to `out` (default DIR/review.csv); returns the path and row count."""
    run = load_run(run_dir)
    path = Path(out) if out is not None else run.dir / "review.csv"
    if path.exists() and not force:
        raise UserError(f"{path} exists (it may hold someone's decisions); give another `out` file, "
                        "or `force` to overwrite it")
    remove_stale_temporaries(path.parent, [path.name])  # left by an export of this file that was killed
    current = {d["id"]: d for d in run.fine_tuning_set()}
    rows = contested(run, score_above)
    as_jsonl = path.suffix.lower() in JSONL_SUFFIXES
    records = [_row(r, current.get(r["id"]), not as_jsonl) for r in rows]
    if as_jsonl:
        write_jsonl(path, records)
    else:
        with atomic_write(path, newline="") as fh:
            fh.write("\ufeff")  # a byte-order mark lets spreadsheets read UTF-8
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            for rec in records:
                writer.writerow({k: "" if v is None else neutralise_cell(str(v)) for k, v in rec.items()})
    return path, len(records)


@dataclass
class Decision:
    row: int            # data row in the file, counted from 1 (header not counted)
    id: str
    raw: str
    action: str         # "keep" | "accept" | "drop" | "label"
    label: str | None
    note: str = ""


@dataclass
class ImportResult:
    file: Path
    decided: int
    changed: list[ReviewDecision] = field(default_factory=list)
    unchanged: int = 0
    blank: int = 0

    def describe(self) -> str:
        kinds: dict[str, int] = {}
        for c in self.changed:
            kinds[c["effect"]] = kinds.get(c["effect"], 0) + 1
        what = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing"
        return (f"{self.file}: {self.decided} decisions, {len(self.changed)} changed the fine-tuning set ({what}); "
                f"{self.unchanged} already in effect, {self.blank} rows without a decision left as they were")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        raise UserError(f"{path} is a folder; pass the file written by `robustft review export`")
    if not path.is_file():
        raise UserError(f"{path}: file not found; pass the file written by `robustft review export`")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the file ({e.strerror or e}); check its permissions") from None
    try:
        text = utf8_text(data)
    except NotUTF8 as e:
        raise UserError(f"{path}, line {e.line}: not UTF-8 text; save the review file as UTF-8 "
                        "(in a spreadsheet: CSV UTF-8)") from None
    if "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise UserError(f"{path}, line {line}: holds a NUL byte: the file is damaged or not text; "
                        "export again with `robustft review export` and copy the decisions over") from None
    if path.suffix.lower() in JSONL_SUFFIXES:
        return _jsonl_rows(path, text)
    return _csv_rows(path, text)


def _jsonl_rows(path: Path, text: str) -> list[dict[str, Any]]:
    rows = []
    try:
        for _, line, _, obj in json_lines(text):
            if not isinstance(obj, dict):
                raise UserError(f"{path}, line {line}: expected a JSON object with 'id' and 'decision'")
            rows.append(obj)
    except BadJsonLine as bad:
        raise UserError(f"{path}, line {bad.line}: not valid JSON ({bad.error}); fix the line, or export again "
                        "and copy the decisions over") from None
    return rows


def _csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = max(",;\t", key=first.count) if first else ","
    # newline="": only \r and \n end a row; a U+2028 or \x1c in a question is text, not a line break.
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        with no_field_limit():
            if reader.fieldnames is None or "id" not in reader.fieldnames or "decision" not in reader.fieldnames:
                raise UserError(f"{path}: needs the columns 'id' and 'decision' (found: "
                                f"{', '.join(reader.fieldnames or []) or 'none'}); start from the file "
                                "`robustft review export` writes")
            rows = []
            for row in reader:
                if None in row:  # more cells than header columns: a stray delimiter or quote
                    raise UserError(f"{path}, row {len(rows) + 1}: more cells than columns; a quote or delimiter "
                                    "is out of place: fix the row, or export again and copy the decisions over")
                rows.append({k: restore_cell(v) if isinstance(v, str) else v for k, v in row.items()})
            return rows
    except csv.Error as e:
        raise UserError(f"{path}, line {reader.line_num}: not readable as CSV ({e}); fix the line, or export "
                        "again and copy the decisions over") from None


def parse_decisions(path: Path, run: RunFiles) -> tuple[list[Decision], int]:
    """Every row checked before anything is applied; returns the decisions and the blank rows."""
    rows = _read_rows(path)
    decisions, blank, seen = [], 0, {}
    for number, row in enumerate(rows, 1):
        sid = str(row.get("id") if row.get("id") is not None else "").strip()
        raw = str(row.get("decision") if row.get("decision") is not None else "").strip()
        where = f"{path}, row {number}" + (f" (id {sid})" if sid else "")
        if not sid:
            if raw:
                raise UserError(f"{where}: the id is empty; keep the id column as exported")
            blank += 1
            continue
        rec = run.by_id.get(sid)
        if rec is None:
            raise UserError(f"{where}: no sample with this id in {run.dir / SAMPLES}; keep the id column "
                            "as exported, and import into the run the file was exported from")
        if sid in seen:
            raise UserError(f"{where}: id {sid} appears again (first on row {seen[sid]}); give one decision per sample")
        seen[sid] = number
        if not raw:
            blank += 1
            continue
        low = raw.casefold()
        note = str(row.get("note") or "").strip()
        if low in KEYWORDS:
            if low == "accept" and rec.get("proposed_label") is None:
                raise UserError(f"{where}: 'accept' takes the proposed label, but this sample has none "
                                f"(status {rec['status']}); write keep, drop or a label")
            label = {"keep": rec.get("original_label"), "accept": rec.get("proposed_label"), "drop": None}[low]
            decisions.append(Decision(number, sid, raw, low, label, note))
            continue
        text = raw[len("label:"):].strip() if low.startswith("label:") else raw
        try:
            label = normalize_label(text, rec.get("task") or run.task, rec.get("options"))
        except ValueError as e:
            opts = rec.get("options")
            hint = f"a letter {letters(len(opts))[0]}-{letters(len(opts))[-1]}" if opts else "a label"
            raise UserError(f"{where}: decision {raw!r} is not usable ({e}); write keep, accept, drop, {hint}, "
                            "or leave it empty") from None
        decisions.append(Decision(number, sid, raw, "label", label, note))
    return decisions, blank


def import_review(run_dir: str | Path, file: str | Path) -> ImportResult:
    """Apply the decisions in `file`: logged first, then applied.

    The decisions are appended to review_log.jsonl in one write (and flushed to the disk) before
    denoised.jsonl is replaced, and denoised.jsonl is always the log replayed over the tool's set
    (`replay_review_log`, idempotent). So a kill at any instant loses no decision: before the log
    write, nothing changed and importing again does it all; after it, any later import, `denoise`
    on DIR or `robustft doctor --repair` applies the logged decisions again.
    """
    run = load_run(run_dir)
    logged = read_review_log(run.dir)  # a damaged log is named now, not left with new decisions after it
    path = Path(file)
    decisions, blank = parse_decisions(path, run)
    tool_set = _tool_set(run)
    current = {d["id"]: d for d in (replay_review_log(run.dir, tool_set, run.records) if logged else run.fine_tuning_set())}
    result = ImportResult(file=path, decided=len(decisions), blank=blank)
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    log = []
    for dec in decisions:
        rec = run.by_id[dec.id]
        before = current.get(dec.id)
        if dec.action == "drop":
            after = None
        else:
            after = human_record(rec, dec.label)
        same = (before is None and after is None) or (
            before is not None and after is not None and before.get("label") == after["label"]
            and before.get("source") == "human")
        if same:
            result.unchanged += 1
            continue
        if after is None:
            current.pop(dec.id)
            effect = "removed"
        else:
            current[dec.id] = after
            effect = "added" if before is None else (
                "relabeled" if before.get("label") != after["label"] else "confirmed")
        change: ReviewDecision = {
            "time": now, "file": str(path), "row": dec.row, "id": dec.id, "decision": dec.raw, "note": dec.note,
            "effect": effect,
            "before": {"label": before.get("label"), "source": before.get("source")} if before else None,
            "after": {"label": after["label"], "source": "human"} if after else None}
        result.changed.append(change)
        log.append(change)
    if log or logged:
        backup = run.dir / BACKUP
        if run.denoised is not None and not backup.exists():
            write_jsonl(backup, tool_set)
        if log:
            append_review_log(run.dir, log)
        ordered = [current[r["id"]] for r in run.records if r["id"] in current]
        ordered += [d for sid, d in current.items() if sid not in run.by_id]  # never lose a row
        on_disk = read_jsonl_checked(run.dir / DENOISED) if (run.dir / DENOISED).is_file() else None
        if ordered != on_disk:  # (load_run replayed the log in memory: compare with the file itself)
            write_jsonl(run.dir / DENOISED, ordered)
    return result


def _tool_set(run: RunFiles) -> list[FineTuningRecord]:
    """The fine-tuning set as the tool made it, before any human decision."""
    backup = run.dir / BACKUP
    if backup.is_file():
        return read_jsonl_checked(backup)
    return run.fine_tuning_set()
