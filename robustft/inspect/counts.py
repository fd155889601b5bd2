"""The numbers of a finished run that `robustft report` shows: how the samples ended, how often
each agent agrees with the given (and the gold) label, and the given -> final label matrix."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..answers import answers_match
from ..method import ANSWERING
from ..run.outputs import FINAL_STATUSES
from ..run.rundir import RunFiles

__all__ = ["MAX_MATRIX", "ROLES", "ROLE_NAMES", "counts_of", "label_matrix", "role_agreement"]

ROLES = tuple(ANSWERING)  # in graph order (robustft.method)
ROLE_NAMES = ANSWERING
MAX_MATRIX = 12


def counts_of(run: RunFiles) -> dict[str, int]:
    c = Counter(r["status"] for r in run.records)
    out = {s: c.get(s, 0) for s in FINAL_STATUSES}
    out["total"] = len(run.records)
    out["noisy"] = sum(1 for r in run.records if r.get("decision") == "noisy")
    out["unreadable"] = sum(1 for r in run.records if r["status"] == "dropped" and r.get("reason") == "unreadable")
    ft = run.fine_tuning_set()
    out["fine_tuning_set"] = len(ft)
    out["human"] = sum(1 for d in ft if d.get("source") == "human")
    return out


def role_agreement(run: RunFiles, gold: dict[str, str] | None) -> list[dict[str, Any]]:
    """Per role: how often its answer equals the given label, and gold when known.

    None for open-ended responses: two of them agree by meaning (embeddings, at detection), and
    counting equal texts here would call nearly every paraphrase a disagreement."""
    if run.task == "open":
        return []
    rows = []
    for role in ROLES:
        # A reviewer that was not asked (the two answers agreed) gave no answer of its own.
        asked = [r for r in run.records if role in r["nodes"] and not r["nodes"][role].get("skipped")]
        answered = [(r, r["nodes"][role]["answer"]) for r in asked if r["nodes"][role].get("answer") is not None]
        ran = len(asked)
        if not ran:
            continue
        agree = sum(answers_match(a, r["original_label"], run.task, run.tolerance) for r, a in answered)
        row = {"role": role, "ran": ran, "answered": len(answered), "agrees_with_label": agree,
               "label_agreement": agree / len(answered) if answered else None}
        if gold is not None:
            g = [(r, a) for r, a in answered if r["id"] in gold]
            right = sum(answers_match(a, gold[r["id"]], run.task, run.tolerance) for r, a in g)
            row.update(with_gold=len(g), right=right, gold_accuracy=right / len(g) if g else None)
        rows.append(row)
    return rows


def _label_key(label: Any) -> str:
    return "(none)" if label is None else str(label)


def label_matrix(run: RunFiles) -> tuple[list[str], list[str], list[list[int]]]:
    """Rows: given labels; columns: labels in the fine-tuning set, then 'dropped' and 'failed'.

    Many distinct labels (free-text or numeric answers) are folded into 'other' beyond the most
    frequent ones."""
    ft = {d["id"]: d.get("label") for d in run.fine_tuning_set()}
    pairs = []
    for r in run.records:
        given = _label_key(r.get("original_label"))
        if r["id"] in ft:
            final = _label_key(ft[r["id"]])
        else:
            final = "failed" if r["status"] == "failed" else "dropped"
        pairs.append((given, final))
    rows_count = Counter(a for a, _ in pairs)
    cols_count = Counter(b for _, b in pairs if b not in ("dropped", "failed"))

    def top(counter: Counter) -> list[str]:
        names = [n for n, _ in counter.most_common()]
        if len(names) > MAX_MATRIX:
            names = names[:MAX_MATRIX - 1]
            return sorted(names) + ["other"]
        return sorted(names)

    rows = top(rows_count)
    cols = top(cols_count + Counter({n: 0 for n in rows_count})) if len(rows_count) <= MAX_MATRIX else top(cols_count)
    cols = [c for c in cols if c not in ("dropped", "failed")] + ["dropped", "failed"]
    idx_r = {n: i for i, n in enumerate(rows)}
    idx_c = {n: i for i, n in enumerate(cols)}
    m = [[0] * len(cols) for _ in rows]
    for a, b in pairs:
        i = idx_r.get(a, idx_r.get("other"))
        j = idx_c.get(b, idx_c.get("other"))
        if i is not None and j is not None:
            m[i][j] += 1
    return rows, cols, m
