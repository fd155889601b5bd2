"""The records of the run directory's output files (DESIGN's output contract).

- `sample_record`: a sample's state as it leaves the graph, as a samples.jsonl record (with
  the status it has then: clean, noisy, candidate or failed) and the fingerprint of what made it.
- `final_record`: that record once selection has decided (candidate -> relabeled or dropped).
- `fine_tuning_record`: its line in denoised.jsonl, or None when it is not in the set.
- `human_record`: its line in denoised.jsonl once a person decided its label (`robustft review`).
- `Summary`: summary.json's counts, accumulated record by record.
"""

from __future__ import annotations

from typing import Any

from .. import __version__

FINAL_STATUSES = ("clean", "relabeled", "dropped", "failed")
NOT_FINISHED = "the sample did not finish"


def sample_record(state: dict[str, Any], task: str, fingerprint: str | None) -> dict[str, Any]:
    status = state.get("status")
    if status not in ("clean", "noisy", "candidate", "failed"):
        # The graph stopped before a status it can end with (an internal error): say so, lose nothing.
        status = "failed"
    return {
        "id": state["id"], "row": state.get("row"), "question": state.get("question"),
        "options": state.get("options"), **_conversation(state), "task": task,
        "original_label": state.get("label"),
        "nodes": state.get("nodes") or {}, "decision": state.get("decision"),
        "decision_reason": state.get("decision_reason"), "status": status,
        "label": state.get("label") if status == "clean" else None,
        "proposed_label": state.get("proposed_label"), "score": state.get("score"),
        **({"trust": state.get("trust"), "trust_signals": state.get("trust_signals")}
           if state.get("trust_signals") is not None else {}),
        "error": state.get("error") or (NOT_FINISHED if status == "failed" else None),
        "fingerprint": fingerprint,
    }


def _conversation(state: dict[str, Any]) -> dict[str, Any]:
    """A chat sample's conversation before the answer (only when there is one: tables stay as they were)."""
    conversation = state.get("conversation")
    return {"conversation": conversation} if conversation else {}


def state_of(record: dict[str, Any]) -> dict[str, Any]:
    """The graph state a journal record was made from (to relabel a sample detected earlier)."""
    return {"id": record["id"], "row": record.get("row"), "question": record.get("question"),
            "options": record.get("options"), "conversation": record.get("conversation"),
            "label": record.get("original_label"), "examples": None,
            "nodes": record.get("nodes") or {}, "decision": record.get("decision"),
            "decision_reason": record.get("decision_reason"), "status": record["status"],
            "proposed_label": record.get("proposed_label"), "score": record.get("score"), "error": record.get("error"),
            "trust": record.get("trust"), "trust_signals": record.get("trust_signals")}


def is_candidate(status: str) -> bool:
    """A relabel waiting for selection, or one that an earlier selection kept or dropped."""
    return status in ("candidate", "relabeled", "dropped")


def final_record(record: dict[str, Any], kept: bool) -> dict[str, Any]:
    status = record["status"]
    if is_candidate(status):
        record["status"] = "relabeled" if kept else "dropped"
        record["label"] = record.get("proposed_label") if kept else None
    elif status not in FINAL_STATUSES:
        record.update(status="failed", label=None, error=record.get("error") or NOT_FINISHED)
    return record


def fine_tuning_record(record: dict[str, Any]) -> dict[str, Any] | None:
    if record["status"] not in ("clean", "relabeled"):
        return None
    out = {"id": record["id"], "question": record["question"]}
    if record.get("options"):
        out["options"] = record["options"]
    out.update(_conversation(record))
    out.update({"task": record["task"], "label": record["label"], "original_label": record["original_label"],
                "source": "clean" if record["status"] == "clean" else "relabeled",
                "score": record["score"] if record["status"] == "relabeled" else None})
    return out


def human_record(record: dict[str, Any], label: Any) -> dict[str, Any]:
    out = {"id": record["id"], "question": record.get("question")}
    if record.get("options"):
        out["options"] = record["options"]
    out.update({"task": record.get("task"), "label": label, "original_label": record.get("original_label"),
                "source": "human", "score": record.get("score")})
    return out


class Summary:
    """summary.json, counted from the final records as they are written."""

    def __init__(self) -> None:
        self.counts = {s: 0 for s in FINAL_STATUSES}
        self.noisy = 0
        self.calls: dict[str, int] = {}
        self.prompt_tokens = self.completion_tokens = 0
        self.tokens_by_role: dict[str, tuple[int, int]] = {}  # role -> (prompt, completion): what they cost

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        self.counts[record["status"]] += 1
        self.noisy += record.get("decision") == "noisy"
        for role, node in (record.get("nodes") or {}).items():
            self.calls[role] = self.calls.get(role, 0) + int(node.get("attempts") or 0)
            prompt, completion = int(node.get("prompt_tokens") or 0), int(node.get("completion_tokens") or 0)
            self.prompt_tokens += prompt
            self.completion_tokens += completion
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
