"""The run directory's output files, built from the samples' final states (DESIGN's output contract).

- samples.jsonl: one record per input sample, kept or not, with every node's record.
- denoised.jsonl: the fine-tuning set (clean samples with their label, selected relabels).
- summary.json: counts, selection, model calls and tokens, wall time, resolved config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .. import __version__
from ..data import write_jsonl

FINAL_STATUSES = ("clean", "relabeled", "dropped", "failed")


def sample_record(state: dict[str, Any], task: str, selected: set[str]) -> dict[str, Any]:
    """samples.jsonl's record for one sample; `selected` holds the ids selection kept."""
    status = state.get("status")
    if status == "candidate":
        status = "relabeled" if state["id"] in selected else "dropped"
    elif status not in FINAL_STATUSES:
        # The graph stopped before a final status (an internal error): say so, lose nothing.
        status = "failed"
    label = {"clean": state.get("label"), "relabeled": state.get("proposed_label")}.get(status)
    return {
        "id": state["id"], "row": state.get("row"), "question": state.get("question"),
        "options": state.get("options"), "task": task, "original_label": state.get("label"),
        "nodes": state.get("nodes", {}), "decision": state.get("decision"),
        "decision_reason": state.get("decision_reason"), "status": status, "label": label,
        "proposed_label": state.get("proposed_label"), "score": state.get("score"),
        "error": state.get("error") or (None if status != "failed" else "the sample did not finish"),
    }


def denoised_record(record: dict[str, Any]) -> dict[str, Any]:
    out = {"id": record["id"], "question": record["question"]}
    if record.get("options"):
        out["options"] = record["options"]
    out.update({"task": record["task"], "label": record["label"], "original_label": record["original_label"],
                "source": "clean" if record["status"] == "clean" else "relabeled",
                "score": record["score"] if record["status"] == "relabeled" else None})
    return out


def summarize(records: list[dict[str, Any]], *, selection: dict[str, Any], wall_time_s: float,
              config: dict[str, Any], task: str, data_path: str | None, resumed: int) -> dict[str, Any]:
    counts = {s: 0 for s in FINAL_STATUSES}
    for r in records:
        counts[r["status"]] += 1
    calls: dict[str, int] = {}
    prompt_tokens = completion_tokens = 0
    for r in records:
        for role, node in r["nodes"].items():
            calls[role] = calls.get(role, 0) + int(node.get("attempts") or 0)
            prompt_tokens += int(node.get("prompt_tokens") or 0)
            completion_tokens += int(node.get("completion_tokens") or 0)
    calls["total"] = sum(calls.values())
    return {
        "total": len(records), **counts,
        "noisy": sum(1 for r in records if r["decision"] == "noisy"),
        "selection": selection,
        "model_calls": calls,
        "tokens": {"prompt": prompt_tokens, "completion": completion_tokens},
        "wall_time_s": round(wall_time_s, 3),
        "resumed_samples": resumed,
        "task": task, "data": data_path, "robustft_version": __version__, "config": config,
    }


def write_outputs(out_dir: Path, records: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    from ..inspect.review import BACKUP, replay_review_log

    write_jsonl(out_dir / "samples.jsonl", records)
    denoised = [denoised_record(r) for r in records if r["status"] in ("clean", "relabeled")]
    reviewed = replay_review_log(out_dir, denoised, records)
    if reviewed is not denoised:  # a person reviewed this run: keep the tool's own version beside it
        write_jsonl(out_dir / BACKUP, denoised)
    write_jsonl(out_dir / "denoised.jsonl", reviewed)
    write_json(out_dir / "summary.json", summary)


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
