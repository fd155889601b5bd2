"""Reading a finished run directory (`robustft denoise --out DIR`) for inspection commands.

`load_run(DIR)` returns the run's files parsed: the per-sample records of samples.jsonl (in input
order), summary.json and the fine-tuning set denoised.jsonl. Errors say what DIR is instead and
what to pass, because `trace`, `report` and `review` all start here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError

SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
DENOISED = "denoised.jsonl"
REVIEW_LOG = "review_log.jsonl"


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
    if not samples.is_file():
        if (d / "ablation.json").is_file() or (d / "responses.sqlite").is_file():
            variants = sorted(p.name for p in d.iterdir() if (p / SAMPLES).is_file())
            hint = f" (here: {', '.join(variants)})" if variants else ""
            raise UserError(f"{d} holds an ablation (`robustft ablate`), not one run; pass one of its variant "
                            f"directories, e.g. {d / (variants[0] if variants else 'full')}{hint}")
        if (d / "run.json").is_file() or (d / "checkpoints.sqlite").is_file():
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
