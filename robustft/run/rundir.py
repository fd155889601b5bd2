"""The run directory (`robustft denoise --out DIR`): its files, who may write them, and reading them.

    DIR/samples.jsonl      one record per sample (during a run: the journal, see `journal`)
    DIR/denoised.jsonl     the fine-tuning set
    DIR/summary.json       counts, calls, the resolved configuration
    DIR/responses.sqlite   every model response and embedding (`robustft.backends.store`)
    DIR/run.json           the settings the samples were made with (to say what changed)
    DIR/run.log            the run's messages
    DIR/.lock              held by the process running in DIR
    DIR/review_log.jsonl   human review decisions (`robustft review import` appends them)
    DIR/denoised.before_review.jsonl   the fine-tuning set as the tool made it, before review

`RunDir` is what a run uses: it checks that DIR can be written, takes the lock (one run per
directory), and writes the outputs so that a kill never leaves them from two different
selections, with any human review decisions applied again (`replay_review_log`).
`load_run(DIR)` is what the inspection commands use: the files of a finished run, parsed, with
the run's configuration typed (`RunFiles.config`); its errors say what DIR is instead and what
to pass, because `trace`, `report` and `review` all start there. `read_summary(DIR)` and
`run_config(summary)` serve a command that needs only summary.json (`export`).

The files are checked as they are read (JSON, the fields and types the commands rely on, one
record per sample, counts that agree), so a damaged, truncated or hand-edited file gives one
message naming the file, the line or record and the fix, never a traceback halfway through.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from typing_extensions import Required, TypedDict

from ..config import RobustFTConfig, recorded_config
from ..data.records import BadJsonLine, NotUTF8, json_lines, utf8_text
from ..errors import UserError
from ..files import atomic_write, json_text, open_nofollow, refuse_link, remove_stale_temporaries, write_json, write_jsonl
from ..agents.state import READ_BACK, Scalar
from .outputs import KEPT_STATUSES, human_record
from .records import FINAL_STATUSES, FINE_TUNING_RECORD, RECORD, FineTuningRecord, SampleRecord

SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
DENOISED = "denoised.jsonl"
REVIEW_LOG = "review_log.jsonl"
BACKUP = "denoised.before_review.jsonl"
STORE = "responses.sqlite"
BATCHES = "batches.jsonl"  # with denoise.batch_api: the batches submitted and collected (backends/batch.py)
RUN_FILE = "run.json"
LOG = "run.log"
LOCK = ".lock"
WRITING = ".writing-outputs"  # present while the outputs are being replaced
STAGED = f".{DENOISED}.next.tmp"  # the new fine-tuning set while the outputs are being replaced
PLOTS = "plots"
REPORT_FILES = ("report.html", "report.json")
PLOT_NAMES = ("outcomes", "gold", "scores", "labels", "roles")
REVIEW_FILES = ("review.csv", "review.jsonl")
EXPORT = "export"
# Every name robustft writes in a run directory: none may be a symbolic link (`refuse_links`), and
# only the temporaries of these are ever removed (`remove_stale_temporaries`).
WRITTEN = (SAMPLES, SUMMARY, DENOISED, REVIEW_LOG, BACKUP, RUN_FILE, STAGED, *REPORT_FILES, *REVIEW_FILES)
RUN_NAMES = (*WRITTEN, STORE, f"{STORE}-wal", f"{STORE}-shm", f"{STORE}-journal", LOG, LOCK, WRITING, PLOTS,
             EXPORT)


def refuse_links(d: Path) -> None:
    """A `UserError` naming the first file robustft writes in `d` that is a symbolic link: a link
    there would make a command write, cut or delete a file outside the run directory."""
    for name in RUN_NAMES:
        refuse_link(d / name)
    for sub, names in ((PLOTS, [f"{n}.png" for n in PLOT_NAMES]),):
        if (d / sub).is_dir():
            for name in names:
                refuse_link(d / sub / name)

REWRITE = ("run the same `robustft denoise` command again on this run directory: it rewrites the run's output files "
           "from its checkpoints (finished samples are not asked again)")
REVIEW_LOG_FIX = ("this file holds the human review decisions, one per line (`robustft review import` appends "
                  "them): repair or delete the damaged line")

class _Lenient(BaseModel):
    """The shape the inspection commands rely on; other fields are allowed and kept (the records of
    samples.jsonl and denoised.jsonl are checked against their own shapes, `records.SampleRecord`
    and `records.FineTuningRecord`)."""

    model_config = ConfigDict(extra="allow", strict=True)  # "0.5" is not a score: the commands format numbers


class _Selection(_Lenient):
    beta: float | None = None
    enabled: bool | None = None
    threshold: float | None = None
    candidates: int | None = None
    kept: int | None = None


class _Summary(_Lenient):
    total: int | None = None
    task: str | None = None
    selection: _Selection | None = None
    config: dict[str, Any] | None = None


class LabelState(TypedDict, total=False):
    """A sample's line of the fine-tuning set before or after a human decision (None: not in it)."""

    __pydantic_config__ = READ_BACK

    label: Required[Scalar]
    source: str | None


class ReviewDecision(TypedDict, total=False):
    """One line of review_log.jsonl (`robustft review import` writes them, in this order)."""

    __pydantic_config__ = READ_BACK

    time: str | None
    file: str | None            # the decisions file it came from
    row: int | None             # its row there
    id: Required[str | int]
    decision: Scalar            # as the person wrote it
    note: str | None
    effect: str | None          # added, removed, relabeled, confirmed
    before: LabelState | None
    after: LabelState | None


_CHECKS = {"record": RECORD, "summary": TypeAdapter(_Summary), "fine-tuning record": FINE_TUNING_RECORD,
           "review decision": TypeAdapter(ReviewDecision)}


def _checked(path: Path, what: str, number: int | None, obj: Any, fix: str) -> None:
    if what == "record" and isinstance(obj, dict) and obj.get("status", FINAL_STATUSES[0]) not in FINAL_STATUSES:
        # A record's status may be noisy or candidate while a run is going, not once it has finished.
        _bad(path, what, number, obj, "status", f"Input should be {_either(FINAL_STATUSES)}", obj["status"], fix)
    try:
        _CHECKS[what].validate_python(obj)
    except ValidationError as e:
        err = e.errors()[0]
        _bad(path, what, number, obj, ".".join(str(p) for p in err["loc"]), err["msg"], err.get("input"), fix)


def _either(values: tuple[str, ...]) -> str:
    quoted = [repr(v) for v in values]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


def _bad(path: Path, what: str, number: int | None, obj: Any, loc: str, msg: str, value: Any, fix: str) -> None:
    got = repr(value)
    got = got if len(got) <= 80 else got[:77] + "..."
    where = f"{path}, {what} {number}" if number is not None else str(path)
    sid = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), (str, int)) else None
    where += f" (id {str(sid)[:80]})" if sid is not None else ""
    raise UserError(f"{where}: field '{loc or '(top level)'}': {msg} (got {got}); the file was changed or damaged: "
                    f"{fix}") from None

@dataclass
class RunFiles:
    dir: Path
    records: list[SampleRecord]
    summary: dict[str, Any]
    denoised: list[FineTuningRecord] | None
    by_id: dict[str, SampleRecord] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {r["id"]: r for r in self.records}

    @property
    def task(self) -> str:
        return self.summary.get("task") or (self.records[0].get("task") if self.records else None) or "multiple_choice"

    @cached_property
    def config(self) -> RobustFTConfig:
        """The configuration the run recorded, typed (see `run_config`)."""
        return run_config(self.summary)

    @property
    def selection(self) -> dict[str, Any]:
        return self.summary.get("selection") or {}

    @property
    def tolerance(self) -> float:
        return self.config.data.numeric_tolerance

    def fine_tuning_set(self) -> list[FineTuningRecord]:
        """denoised.jsonl as it is now (after any human review), else rebuilt from the records."""
        if self.denoised is not None:
            return self.denoised
        return [{"id": r["id"], "label": r["label"], "original_label": r["original_label"],
                 "source": r["status"], "score": r.get("score")}
                for r in self.records if r["status"] in KEPT_STATUSES]

    def review_log(self) -> list[ReviewDecision]:
        return read_review_log(self.dir)


def read_review_log(run_dir: Path) -> list[ReviewDecision]:
    """The human decisions logged in DIR/review_log.jsonl, checked (empty when there is none).

    A last line without its newline is an import cut off mid-write (a power cut): its decisions
    were never reported as imported, so it is left out (and cut off by the next import)."""
    path = Path(run_dir) / REVIEW_LOG
    if not path.is_file():
        return []
    entries = _read_jsonl(path, REVIEW_LOG_FIX, torn_tail_ok=True)
    for number, entry in enumerate(entries, 1):
        _checked(path, "review decision", number, entry, REVIEW_LOG_FIX)
        entry["id"] = str(entry["id"])
    return entries


def _read_text(path: Path, fix: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e}); check its permissions") from None
    try:
        return utf8_text(data)
    except NotUTF8 as e:
        raise UserError(f"{path}, line {e.line}: not UTF-8 text: the file is damaged: {fix}") from None


def append_review_log(run_dir: Path, entries: list[ReviewDecision]) -> None:
    """Append human decisions to DIR/review_log.jsonl in one write, flushed to the disk: all of them
    or (after a power cut) a torn last line that `read_review_log` leaves out and this cuts off."""
    path = Path(run_dir) / REVIEW_LOG
    fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size:
            tail = os.pread(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            if not tail.endswith(b"\n"):
                keep = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
                os.ftruncate(fd, keep)
                os.lseek(fd, keep, os.SEEK_SET)
        start = os.lseek(fd, 0, os.SEEK_CUR)
        data = "".join(json_text(e) + "\n" for e in entries).encode("utf-8", "surrogatepass")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as e:  # a full disk: take back what was written, so no decision is half-logged
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        os.close(fd)


def read_jsonl_checked(path: Path, fix: str = REWRITE) -> list[dict[str, Any]]:
    """A JSON Lines file of the run, one object per line, or a `UserError` naming the bad line."""
    return _read_jsonl(path, fix)


def _read_jsonl(path: Path, fix: str = REWRITE, torn_tail_ok: bool = False) -> list[dict[str, Any]]:
    out = []
    text = _read_text(path, fix)
    if torn_tail_ok and text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    try:
        for _, line, _, obj in json_lines(text):
            if not isinstance(obj, dict):
                raise UserError(f"{path}, line {line}: expected a JSON object per line, found "
                                f"{type(obj).__name__}; the file is damaged: {fix}")
            out.append(obj)
    except BadJsonLine as bad:
        what = ("the file ends in the middle of a record (it was cut short)" if bad.last
                else f"not valid JSON ({bad.error})")
        raise UserError(f"{path}, line {bad.line}: {what}; the file is damaged: {fix}") from None
    return out


def _read_summary(path: Path) -> dict[str, Any]:
    text = _read_text(path, REWRITE)
    try:
        summary = json.loads(text)
    except ValueError as e:
        what = "the file is cut short" if not text.rstrip().endswith("}") else f"not valid JSON ({e})"
        raise UserError(f"{path}: {what}; the file is damaged: {REWRITE}") from None
    if not isinstance(summary, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(summary).__name__}; the file is damaged: {REWRITE}")
    _checked(path, "summary", None, summary, REWRITE)
    return summary


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """summary.json of a finished run, checked, for a command that reads nothing else of it."""
    d = Path(run_dir)
    if not d.is_dir():
        raise UserError(f"{d}: not a directory; pass the run directory a `robustft denoise` run wrote")
    if not (d / SUMMARY).is_file():
        raise UserError(f"{d}: no {SUMMARY}: not a finished run directory; pass the folder a `robustft denoise` run "
                        "wrote (it has summary.json once the run has finished)")
    return _read_summary(d / SUMMARY)


def run_config(summary: dict[str, Any]) -> RobustFTConfig:
    """The configuration a run recorded in its summary, typed: a run directory of an older or newer
    version reads too (`robustft.config.recorded_config`)."""
    return recorded_config(summary.get("config"))


def load_run(run_dir: str | Path) -> RunFiles:
    d = Path(run_dir)
    if not d.exists():
        raise UserError(f"{d}: no such directory; pass the run directory of a `robustft denoise` run")
    if not d.is_dir():
        raise UserError(f"{d}: not a directory; pass the run directory of a `robustft denoise` run")
    refuse_links(d)
    samples = d / SAMPLES
    if samples.is_file() and not run_finished(d):
        raise UserError(f"{d}: the run has not finished (it was stopped, or is still going); run the same "
                        "`robustft denoise` command again to finish it")
    if not samples.is_file():
        if (d / "ablation.json").is_file() or any((p / SAMPLES).is_file() for p in d.iterdir() if p.is_dir()):
            variants = sorted(p.name for p in d.iterdir() if (p / SAMPLES).is_file())
            hint = f" (here: {', '.join(variants)})" if variants else ""
            raise UserError(f"{d} holds an ablation (`robustft ablate`), not one run; pass one of its variant "
                            f"directories, e.g. {d / (variants[0] if variants else 'full')}{hint}")
        if (d / RUN_FILE).is_file() or (d / STORE).is_file():
            raise UserError(f"{d}: the run has not finished (no {SAMPLES} yet); run the same "
                            "`robustft denoise` command again to finish it")
        raise UserError(f"{d} is not a robustft run directory (it has no {SAMPLES}); pass the run "
                        "directory of a `robustft denoise` run")
    records = _read_jsonl(samples)
    if not records:
        raise UserError(f"{samples}: holds no records; the file is damaged (a run writes one per sample): {REWRITE}")
    first_of: dict[str, int] = {}
    for number, rec in enumerate(records, 1):
        _checked(samples, "record", number, rec, REWRITE)
        rec["id"] = str(rec["id"])
        if rec["id"] in first_of:
            raise UserError(f"{samples}, record {number}: id {rec['id'][:80]} appears again (record "
                            f"{first_of[rec['id']]}); the file was changed or two runs were mixed: {REWRITE}")
        first_of[rec["id"]] = number
        rec.setdefault("nodes", {})
    summary: dict[str, Any] = {}
    if (d / SUMMARY).is_file():
        summary = _read_summary(d / SUMMARY)
        total = summary.get("total")
        if isinstance(total, int) and total != len(records):
            raise UserError(f"{samples}: {len(records)} records, but {d / SUMMARY} counts {total} samples; one of the "
                            f"files is cut short or from another run: {REWRITE}")
    denoised = None
    if (d / DENOISED).is_file():
        denoised = _read_jsonl(d / DENOISED)
        for number, rec in enumerate(denoised, 1):
            _checked(d / DENOISED, "fine-tuning record", number, rec, REWRITE)
            rec["id"] = str(rec["id"])
        kept = sum(1 for r in records if r["status"] in KEPT_STATUSES)
        if not (d / REVIEW_LOG).is_file() and len(denoised) != kept:
            raise UserError(f"{d / DENOISED}: {len(denoised)} samples, but {samples} keeps {kept}; one of the files "
                            f"is cut short or from another run: {REWRITE}")
    if denoised is not None and (d / REVIEW_LOG).is_file():
        # The log is what a person decided; denoised.jsonl lags behind it only after an import was
        # killed between the two writes. Replaying is idempotent: an up-to-date set stays as it is.
        denoised = replay_review_log(d, denoised, records)
    return RunFiles(dir=d, records=records, summary=summary, denoised=denoised)


def run_finished(d: Path) -> bool:
    """False while a run is going in `d` or after one was stopped before writing all its outputs."""
    if (d / WRITING).exists():
        return False
    try:
        return json.loads((d / RUN_FILE).read_text(encoding="utf-8")).get("state", "finished") == "finished"
    except (OSError, ValueError, AttributeError):
        return True  # no run.json: written by hand or by an older version; judge by its files


class RunDir:
    """A run's hold on its directory: checked, locked, and written only through here."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.samples, self.denoised, self.summary = self.path / SAMPLES, self.path / DENOISED, self.path / SUMMARY
        self.store, self.run_file, self.log = self.path / STORE, self.path / RUN_FILE, self.path / LOG
        self.review_log = self.path / REVIEW_LOG
        self._lock_file: Any = None

    def open(self) -> "RunDir":
        """Make sure DIR can hold a run, and take it: one process per run directory."""
        d = self.path
        if d.exists() and not d.is_dir():
            raise UserError(f"{d}: a file is in the way (a run directory is a folder); give another run directory "
                            "(`out`) or move the file")
        try:
            d.mkdir(parents=True, exist_ok=True)
            refuse_links(d)
            probe = d / f".write-test-{os.getpid()}"
            os.close(open_nofollow(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            probe.unlink()
        except OSError as e:
            raise UserError(f"{d}: cannot write there ({e.strerror or e}); pass a folder you can write to, "
                            "or fix its permissions") from None
        self._lock()
        remove_stale_temporaries(d, WRITTEN)
        return self

    def _lock(self) -> None:
        import fcntl

        f = os.fdopen(open_nofollow(self.path / LOCK, os.O_RDWR | os.O_CREAT), "r+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise UserError(f"{self.path} is in use by another robustft run ({holder}); wait for it to finish or "
                            "stop it, or give another run directory (`out`)") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            f.flush()
        except OSError as e:  # a full disk: name the file
            with contextlib.suppress(OSError):
                f.close()
            raise OSError(e.errno, e.strerror, str(self.path / LOCK)) from None
        self._lock_file = f  # the lock lasts as long as this open file: a killed process frees it

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # --- run.json: the settings behind the samples, and whether the run finished -----------------

    def previous_settings(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.run_file.read_text(encoding="utf-8")).get("settings")
        except (OSError, ValueError, AttributeError):
            return None

    def mark(self, state: str, settings: dict[str, Any]) -> None:
        write_json(self.run_file, {"state": state, "settings": settings})

    # --- outputs ------------------------------------------------------------------------------

    def write_outputs(self, records: Iterable[SampleRecord], summary: Callable[[], dict[str, Any]],
                      fine_tuning_record: Callable[[SampleRecord], FineTuningRecord | None]) -> None:
        """Replace samples.jsonl, denoised.jsonl and summary.json with the run's final outputs.

        `records` come in input order and are streamed to disk. While the three files are being
        replaced a marker file stands in DIR, so a reader (and `load_run`) never takes outputs of
        two different selections for one run; a run stopped here rewrites them when run again.
        """
        marker = self.path / WRITING
        fd = open_nofollow(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            os.write(fd, b"outputs are being written\n")
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(marker)) from None
        finally:
            os.close(fd)
        from .journal import dump_line

        with atomic_write(self.samples, binary=True) as samples, \
                atomic_write(self.path / STAGED, binary=True) as denoised:
            for record in records:
                samples.write(dump_line(record))
                kept = fine_tuning_record(record)
                if kept is not None:
                    denoised.write(dump_line(kept))
        staged = self.path / STAGED
        if self.review_log.exists():  # a person reviewed this run: apply their decisions again
            tool_set = _read_jsonl(staged)
            reviewed = replay_review_log(self.path, tool_set, _read_jsonl(self.samples))
            write_jsonl(self.path / BACKUP, tool_set)
            write_jsonl(staged, reviewed)
        os.replace(staged, self.denoised)
        from ..secrets import redact_tree

        write_json(self.summary, redact_tree(summary()))  # no key, no password in a URL of the config
        marker.unlink()


def replay_review_log(run_dir: Path, denoised: list[FineTuningRecord],
                      records: list[SampleRecord]) -> list[FineTuningRecord]:
    """The fine-tuning set with the latest logged human decision per sample applied again.

    `write_outputs` calls this when it rewrites denoised.jsonl, so resuming or re-selecting a
    reviewed run does not silently undo what a person decided.
    """
    entries = read_review_log(Path(run_dir))
    if not entries:
        return denoised
    latest: dict[str, LabelState | None] = {}
    for entry in entries:
        latest[entry["id"]] = entry.get("after")
    by_id = {r["id"]: r for r in records}
    current = {d["id"]: d for d in denoised}
    for sid, after in latest.items():
        if sid not in by_id:
            continue
        if after is None:
            current.pop(sid, None)
        else:
            current[sid] = human_record(by_id[sid], after["label"])
    return [current[r["id"]] for r in records if r["id"] in current]


@dataclass
class DenoiseResult:
    """A finished run (`robustft.Result`): its `summary`, and `records` (samples.jsonl) and
    `fine_tuning_set` (denoised.jsonl) read when first asked for, so that a large run's records
    are not held in memory."""

    out_dir: Path
    summary: dict[str, Any]

    @cached_property
    def records(self) -> list[SampleRecord]:
        from ..data import read_jsonl

        return read_jsonl(self.out_dir / SAMPLES)

    @cached_property
    def fine_tuning_set(self) -> list[FineTuningRecord]:
        from ..data import read_jsonl

        return read_jsonl(self.out_dir / DENOISED)

    def to_pandas(self):
        """The fine-tuning set as a DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.fine_tuning_set)
