"""How well a score ranks the wrong given responses first, against gold: AUROC and precision at k.

A sample is *positive* when its given response (label) is wrong by gold. The score ranks samples
from most suspicious (lowest trust) to least. Two figures, as TLM, SelfCheckGPT and semantic
entropy report them:

- **AUROC**: the probability that a wrong response scores below a right one (ties count half);
  0.5 is chance, 1 a perfect ranking.
- **Precision at k %**: of the k % of samples with the lowest scores (what a person reviewing k %
  of the rows would see), the share that is wrong; beside it the share of all samples that is
  wrong, which is what a random k % would show.

Samples without a score are left out of both and counted.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

from ..agents.trust import SIGNALS, VERDICT_PROBABILITIES
from ..run.records import SampleRecord

__all__ = ["FRACTIONS", "auroc", "precision_at", "rank_quality", "trust_ranking"]

FRACTIONS = (0.1, 0.2)


def auroc(scores: Mapping[str, float], wrong: set[str]) -> float | None:
    """P(a wrong sample scores below a right one), ties half (Mann-Whitney U); None without both."""
    pos = [s for k, s in scores.items() if k in wrong]
    neg = [s for k, s in scores.items() if k not in wrong]
    if not pos or not neg:
        return None
    ranked = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    rank_sum_pos, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum_pos += (i + j + 1) / 2 * sum(1 for k in range(i, j) if ranked[k][1])
        i = j
    u = rank_sum_pos - len(pos) * (len(pos) + 1) / 2  # pairs where a wrong one ranks above a right one
    return round(1.0 - u / (len(pos) * len(neg)), 4)


def precision_at(scores: Mapping[str, float], wrong: set[str], fraction: float) -> float | None:
    """Share of wrong samples among the ceil(fraction x n) lowest scores (ties broken by id)."""
    if not scores:
        return None
    k = max(1, math.ceil(fraction * len(scores)))
    lowest = sorted(scores, key=lambda sid: (scores[sid], str(sid)))[:k]
    return round(sum(sid in wrong for sid in lowest) / k, 4)


def rank_quality(scores: Mapping[str, float], wrong: set[str]) -> dict[str, Any]:
    return {"scored": len(scores), "auroc": auroc(scores, wrong),
            **{f"precision_at_{round(100 * f)}": precision_at(scores, wrong, f) for f in FRACTIONS}}


def trust_ranking(records: Iterable[SampleRecord], wrong: set[str], *,
                  kinds: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The ranking figures of the trust score and of each of its signals (records from
    samples.jsonl; `wrong`: ids whose given response is wrong by gold). With `kinds` (id -> kind of
    noise), AUROC per kind too: that kind's wrong samples against all right ones. None when no
    record has a trust score."""
    records = [r for r in records if r.get("trust_signals") is not None]
    if not records:
        return None
    ids = {r["id"] for r in records}
    wrong = wrong & ids
    columns: dict[str, dict[str, float]] = {"trust": {}}
    for r in records:
        if r.get("trust") is not None:
            columns["trust"][r["id"]] = float(r["trust"])
        signals = r.get("trust_signals") or {}
        for name, value in signals.items():
            if name in SIGNALS and isinstance(value, (int, float)):
                columns.setdefault(name, {})[r["id"]] = float(value)
        verdicts = [signals.get(name) for name in VERDICT_PROBABILITIES]
        verdicts = [float(v) for v in verdicts if isinstance(v, (int, float))]
        if verdicts:
            columns.setdefault("verdicts", {})[r["id"]] = sum(verdicts) / len(verdicts)
        words = len(str(r.get("original_label") or "").split())
        columns.setdefault("length", {})[r["id"]] = float(words)
    out: dict[str, Any] = {"samples": len(records), "wrong": len(wrong),
                           "base_rate": round(len(wrong) / len(records), 4), "scores": {}}
    for name, scores in columns.items():
        figures = rank_quality(scores, wrong)
        if name == "length" and figures["auroc"] is not None and figures["auroc"] < 0.5:
            # length has no direction of its own: the better one is shown (longer = more suspicious)
            flipped = {k: -v for k, v in scores.items()}
            figures = {**rank_quality(flipped, wrong), "direction": "longer first"}
        elif name == "length":
            figures["direction"] = "shorter first"
        if kinds:
            right = {sid for sid in scores if sid not in wrong}
            per_kind = {}
            for kind in sorted(set(kinds.values())):
                members = {sid for sid in wrong if kinds.get(sid) == kind}
                subset = {sid: s for sid, s in scores.items() if sid in members or sid in right}
                if name == "length" and figures.get("direction") == "longer first":
                    subset = {k: -v for k, v in subset.items()}
                per_kind[kind] = auroc(subset, members)
            figures["auroc_by_kind"] = per_kind
        out["scores"][name] = figures
    return out


def gold_wrong(records: Iterable[SampleRecord], gold: Mapping[str, str], task: str, tolerance: float,
               same: Callable[[Any, str, str], bool] | None = None) -> set[str]:
    """Ids whose given label is wrong by gold, compared as `report --gold`'s figures compare them:
    `same(answer, gold, id)` when given (the report's own comparison), else `answers_match`."""
    from ..answers import answers_match

    def right(r: SampleRecord) -> bool:
        given = r.get("original_label")
        if given is None:
            return False
        if same is not None:
            return same(given, gold[r["id"]], r["id"])
        return answers_match(str(given), gold[r["id"]], task, tolerance)

    return {r["id"] for r in records if r["id"] in gold and not right(r)}


def describe_ranking(ranking: dict[str, Any]) -> list[str]:
    """The ranking figures as short terminal lines."""
    lines = [f"  trust ranking     {ranking['wrong']} of {ranking['samples']} given responses wrong "
             f"({100 * ranking['base_rate']:.1f}%: what a random pick finds)"]
    for name, f in ranking["scores"].items():
        shown = name + (f" ({f['direction']})" if "direction" in f else "")

        def pc(x: float | None) -> str:
            return "n/a" if x is None else f"{100 * x:.0f}%"
        auc = "n/a" if f["auroc"] is None else f"{f['auroc']:.3f}"
        lines.append(f"    {shown:<24} AUROC {auc}  wrong among the least trusted 10% {pc(f['precision_at_10'])}, "
                     f"20% {pc(f['precision_at_20'])}")
    return lines
