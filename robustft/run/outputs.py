"""The records of the run directory's output files (DESIGN's output contract).

- `records.sample_record`: a sample's state as it leaves the graph, as a samples.jsonl record
  (`records.SampleRecord`, with the status it has then: clean, noisy, candidate or failed) and
  the fingerprint of what made it.
- `final_record`: that record once selection has decided (candidate -> relabeled when the kept label
  differs from the given one, confirmed when it is the same, dropped with reason "selection").
  A sample whose answers could not be read after the re-asks ends dropped with reason
  "unreadable" already in the graph: running again would read the same stored replies.
- `fine_tuning_record`: its line in denoised.jsonl, or None when it is not in the set.
- `human_record`: its line in denoised.jsonl once a person decided its label (`robustft review`).
- `Summary`: summary.json's counts, accumulated record by record.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..answers import DEFAULT_TOLERANCE, answers_match
from ..agents.state import Scalar, Turn
from .records import FINAL_STATUSES, NOT_FINISHED, FineTuningRecord, SampleRecord

KEPT_STATUSES = ("clean", "relabeled", "confirmed")  # in the fine-tuning set; its `source` is the status
DROP_REASONS = ("selection", "unreadable")


def _conversation(state: SampleRecord) -> dict[str, list[Turn]]:
    """A chat sample's conversation before the answer (only when there is one: tables stay as they were)."""
    conversation = state.get("conversation")
    return {"conversation": conversation} if conversation else {}


def is_candidate(status: str, reason: str | None = None) -> bool:
    """A relabel waiting for selection, or one that an earlier selection kept or dropped (not a
    sample dropped because its answers could not be read: it has no relabel to select)."""
    return status in ("candidate", "relabeled", "confirmed", "dropped") and reason != "unreadable"


def label_changed(record: SampleRecord, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Whether a relabel says something other than the given label, by the task's own comparison
    (letters, numbers, normalised text; open-ended responses: normalised text)."""
    proposed, original = record.get("proposed_label"), record.get("original_label")
    if proposed is None or original is None:
        return proposed != original
    task = record.get("task") or "text"
    if task == "text":  # containment ("Paris" in "Paris, France") is agreement, not the same label
        return " ".join(str(proposed).split()).casefold() != " ".join(str(original).split()).casefold()
    return not answers_match(str(proposed), str(original), task, tolerance)


def final_record(record: SampleRecord, kept: bool, tolerance: float = DEFAULT_TOLERANCE) -> SampleRecord:
    status = record["status"]
    if is_candidate(status, record.get("reason")):
        if not kept:
            record.update(status="dropped", reason="selection", label=None)
        elif label_changed(record, tolerance):
            record.update(status="relabeled", reason=None, label=record.get("proposed_label"))
        else:  # kept, and the relabel is the given label: the given label is confirmed, as written
            record.update(status="confirmed", reason=None, label=record.get("original_label"))
    elif status not in FINAL_STATUSES:
        record.update(status="failed", label=None, error=record.get("error") or NOT_FINISHED)
    return record


def fine_tuning_record(record: SampleRecord) -> FineTuningRecord | None:
    if record["status"] not in KEPT_STATUSES:
        return None
    out: FineTuningRecord = {"id": record["id"], "question": record["question"]}
    if record.get("options"):
        out["options"] = record["options"]
    out.update(_conversation(record))
    out.update({"task": record["task"], "label": record["label"], "original_label": record["original_label"],
                "source": record["status"],
                "score": record["score"] if record["status"] != "clean" else None})
    return out


def human_record(record: SampleRecord, label: Scalar) -> FineTuningRecord:
    out: FineTuningRecord = {"id": record["id"], "question": record.get("question")}
    if record.get("options"):
        out["options"] = record["options"]
    out.update({"task": record.get("task"), "label": label, "original_label": record.get("original_label"),
                "source": "human", "score": record.get("score")})
    return out


def kept_count(summary: dict[str, Any]) -> int:
    """The fine-tuning set's size from summary.json's counts (one written before `confirmed` too)."""
    return sum(int(summary.get(s) or 0) for s in KEPT_STATUSES)


def describe_counts(summary: dict[str, Any]) -> str:
    """One line saying what happened to the samples, each status counted separately."""
    s = summary
    dropped = s.get("dropped_by_reason") or {"selection": s.get("dropped", 0)}
    beta = (s.get("selection") or {}).get("beta")
    parts = [f"{s.get('clean', 0)} clean", f"{s.get('noisy', 0)} flagged noisy -> "
             f"{s.get('relabeled', 0)} relabeled (label changed)",
             f"{s.get('confirmed', 0)} confirmed (relabel kept the given label)",
             f"{dropped.get('selection', 0)} dropped by selection" + (f" (beta={beta})" if beta is not None else "")]
    if dropped.get("unreadable"):
        parts.append(f"{dropped['unreadable']} dropped as unreadable (no answer in the replies, even re-asked)")
    parts.append(f"{s.get('failed', 0)} failed")
    return f"{s.get('total', 0)} samples: " + ", ".join(parts)


class Summary:
    """summary.json, counted from the final records as they are written."""

    def __init__(self) -> None:
        self.counts = {s: 0 for s in FINAL_STATUSES}
        self.dropped = {r: 0 for r in DROP_REASONS}
        self.noisy = 0
        self.calls: dict[str, int] = {}
        self.prompt_tokens = self.completion_tokens = 0
        self.tokens_by_role: dict[str, tuple[int, int]] = {}  # role -> (prompt, completion): what they cost

    def add(self, record: SampleRecord) -> SampleRecord:
        self.counts[record["status"]] += 1
        if record["status"] == "dropped":
            reason = record.get("reason") or "selection"
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.noisy += record.get("decision") == "noisy"
        for name, node in (record.get("nodes") or {}).items():
            self.calls[name] = self.calls.get(name, 0) + int(node.get("attempts") or 0)
            prompt, completion = int(node.get("prompt_tokens") or 0), int(node.get("completion_tokens") or 0)
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            role = node.get("role") or name  # records written before nodes named their role
            before = self.tokens_by_role.get(role, (0, 0))
            self.tokens_by_role[role] = (before[0] + prompt, before[1] + completion)
        return record

    def result(self, *, selection: dict[str, Any], wall_time_s: float, config: dict[str, Any], task: str,
               data_path: str | None, resumed: int, store: dict[str, Any],
               cost: dict[str, Any] | None = None,
               replicas: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        calls = dict(self.calls)
        calls["total"] = sum(calls.values())
        money = {"cost_usd": cost["usd"], "cost": cost} if cost else {}
        return {
            "total": sum(self.counts.values()), **self.counts,
            "noisy": self.noisy,
            "dropped_by_reason": dict(self.dropped),
            "selection": selection,
            "model_calls": calls,
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            **money,
            "wall_time_s": round(wall_time_s, 3),
            "resumed_samples": resumed,
            "this_run": store,
            "replicas": replicas or [],
            "task": task, "data": data_path, "robustft_version": __version__, "config": config,
        }
