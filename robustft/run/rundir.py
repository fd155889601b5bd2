"""The run directory (`robustft denoise --out DIR`): its files, who may write them, and reading them.

    DIR/samples.jsonl      one record per sample (during a run: the journal, see `journal`)
    DIR/denoised.jsonl     the fine-tuning set
    DIR/summary.json       counts, calls, the resolved configuration
    DIR/responses.sqlite   every model response and embedding (`robustft.backends.store`)
    DIR/run.json           the settings the samples were made with (to say what changed)
    DIR/run.log            the run's messages
    DIR/.lock              held by the process running in DIR

`RunDir` is what a run uses: it checks that DIR can be written, takes the lock (one run per
directory), and writes the outputs so that a kill never leaves them from two different
selections. `load_run(DIR)` is what the inspection commands use: the files of a finished run,
parsed; its errors say what DIR is instead and what to pass, because `trace`, `report` and
`review` all start there.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import UserError
from ..files import atomic_write, remove_stale_temporaries, write_json, write_jsonl

SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
DENOISED = "denoised.jsonl"
REVIEW_LOG = "review_log.jsonl"
STORE = "responses.sqlite"
RUN_FILE = "run.json"
LOG = "run.log"
LOCK = ".lock"
WRITING = ".writing-outputs"  # present while the outputs are being replaced


@dataclass
class RunFiles:
    dir: Path
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    denoised: list[dict[str, Any]] | None
    by_id: dict[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {r["id"]: r for r in self.records}

    @property
    def task(self) -> str:
        return self.summary.get("task") or (self.records[0].get("task") if self.records else None) or "multiple_choice"

    @property
    def config(self) -> dict[str, Any]:
        return self.summary.get("config") or {}

    @property
    def selection(self) -> dict[str, Any]:
        return self.summary.get("selection") or {}

    @property
    def rel_tol(self) -> float:
        return float((self.config.get("data") or {}).get("numeric_rel_tol", 1e-2))

    def fine_tuning_set(self) -> list[dict[str, Any]]:
        """denoised.jsonl as it is now (after any human review), else rebuilt from the records."""
        if self.denoised is not None:
            return self.denoised
        return [{"id": r["id"], "label": r["label"], "original_label": r["original_label"],
                 "source": "clean" if r["status"] == "clean" else "relabeled", "score": r.get("score")}
                for r in self.records if r["status"] in ("clean", "relabeled")]

    def review_log(self) -> list[dict[str, Any]]:
        path = self.dir / REVIEW_LOG
        return _read_jsonl(path) if path.is_file() else []


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise UserError(f"{path}, line {number}: not valid JSON ({e}); the file is damaged: "
                                "run `robustft denoise` with the same --out again to rewrite it") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}, line {number}: expected a JSON object per line")
            out.append(obj)
    return out


def load_run(run_dir: str | Path) -> RunFiles:
    d = Path(run_dir)
    if not d.exists():
        raise UserError(f"{d}: no such directory; pass the --out directory of a `robustft denoise` run")
    if not d.is_dir():
        raise UserError(f"{d}: not a directory; pass the --out directory of a `robustft denoise` run")
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
        raise UserError(f"{d} is not a robustft run directory (it has no {SAMPLES}); pass the --out "
                        "directory of a `robustft denoise` run")
    records = _read_jsonl(samples)
    for number, rec in enumerate(records, 1):
        missing = [k for k in ("id", "status", "original_label") if k not in rec]
        if missing:
            raise UserError(f"{samples}, record {number}: missing {', '.join(missing)}; this file was not written "
                            "by `robustft denoise`")
        rec["id"] = str(rec["id"])
        rec.setdefault("nodes", {})
    summary: dict[str, Any] = {}
    if (d / SUMMARY).is_file():
        try:
            summary = json.loads((d / SUMMARY).read_text(encoding="utf-8"))
        except ValueError:
            raise UserError(f"{d / SUMMARY}: not valid JSON; run `robustft denoise` with the same --out again "
                            "to rewrite it") from None
    denoised = _read_jsonl(d / DENOISED) if (d / DENOISED).is_file() else None
    if denoised is not None:
        for rec in denoised:
            rec["id"] = str(rec.get("id"))
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
            raise UserError(f"--out {d}: a file is in the way (a run directory is a folder); pass another --out "
                            "or move the file")
        try:
            d.mkdir(parents=True, exist_ok=True)
            probe = d / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise UserError(f"--out {d}: cannot write there ({e.strerror or e}); pass a folder you can write to, "
                            "or fix its permissions") from None
        self._lock()
        remove_stale_temporaries(d)
        return self

    def _lock(self) -> None:
        import fcntl

        f = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise UserError(f"{self.path} is in use by another robustft run ({holder}); wait for it to finish or "
                            "stop it, or pass another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
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

    def write_outputs(self, records: Iterable[dict[str, Any]], summary: Callable[[], dict[str, Any]],
                      fine_tuning_record: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        """Replace samples.jsonl, denoised.jsonl and summary.json with the run's final outputs.

        `records` come in input order and are streamed to disk. While the three files are being
        replaced a marker file stands in DIR, so a reader (and `load_run`) never takes outputs of
        two different selections for one run; a run stopped here rewrites them when run again.
        """
        from ..inspect.review import BACKUP, replay_review_log

        marker = self.path / WRITING
        marker.write_text("outputs are being written\n", encoding="utf-8")
        from .journal import dump_line

        with atomic_write(self.samples, binary=True) as samples, \
                atomic_write(self.path / f".{DENOISED}.next.tmp", binary=True) as denoised:
            for record in records:
                samples.write(dump_line(record))
                kept = fine_tuning_record(record)
                if kept is not None:
                    denoised.write(dump_line(kept))
        staged = self.path / f".{DENOISED}.next.tmp"
        if self.review_log.exists():  # a person reviewed this run: apply their decisions again
            tool_set = _read_jsonl(staged)
            reviewed = replay_review_log(self.path, tool_set, _read_jsonl(self.samples))
            write_jsonl(self.path / BACKUP, tool_set)
            write_jsonl(staged, reviewed)
        os.replace(staged, self.denoised)
        write_json(self.summary, summary())
        marker.unlink()
