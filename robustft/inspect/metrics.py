"""How well a run did, measured against gold labels (the correct answers), when you have them.

The paper reports only downstream accuracy after fine-tuning. These numbers say directly whether
the cleaning can be trusted:

- **Noise detection** (the checker). A sample is *positive* when its given label is wrong (differs
  from gold) and *flagged* when the checker called it noisy. Precision = flagged and wrong /
  flagged; recall = flagged and wrong / wrong; F1 their harmonic mean. Every matched sample counts;
  one that failed before the checker decided counts as not flagged (it is reported as undecided).
- **Relabel accuracy**: of the labels the relabeling proposed (reviewer's answer, or the context /
  expert answer in ablations), the fraction equal to gold; also split into those selection kept
  (they are in the fine-tuning set) and those it dropped.
- **Label accuracy** of the input (every given label) versus the fine-tuning set (denoised.jsonl
  as it is now, human review included).
- **What happened to the wrong labels** (fixed, removed, kept unchanged, relabeled to another wrong
  answer, failed) and to the right ones (kept right, removed, failed, broken: replaced by a wrong one).

Gold is read with `robustft.data.gold.read_gold`, using the run's column names (falling back to the
defaults). Gold rows are matched to the run's samples by id; when the gold file has no id column
(its ids are row numbers) or none of its ids occur in the run, by row order, after checking that
the questions line up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..answers import answers_match, normalize_label
from ..data.gold import read_gold
from ..errors import InputError, UserError
from ..run.records import FineTuningRecord, SampleRecord
from ..run.rundir import RunFiles
from .gold_compare import GoldComparer, gold_comparer, parse_facts

_WS = re.compile(r"\s+")


@dataclass
class GoldLabels:
    path: Path
    labels: dict[str, str]            # run sample id -> gold label, normalised like the run's labels
    matched_by: str                   # "id" | "row"
    unmatched: list[str] = field(default_factory=list)   # run ids with no gold row
    facts: dict[str, list[str]] = field(default_factory=dict)  # open-ended: run id -> facts a right response states


def _norm_q(text: Any) -> str:
    return _WS.sub(" ", str(text or "")).strip().casefold()


def match_gold(path: str | Path, run: RunFiles) -> GoldLabels:
    """The gold label of each of the run's samples, read from `path` (CSV, JSONL, ... like data.path)."""
    path = Path(path)
    columns = run.config.data.model_copy(update={"path": None, "limit": None, "task": "auto"})
    try:
        gold = read_gold(path, columns)
    except InputError as e:
        raise UserError(f"gold file: {e}") from None
    has_ids = any(s.id != str(s.row) for s in gold.samples)
    by_gold_id = {s.id: s for s in gold.samples}
    matched_by = "id" if has_ids and any(r["id"] in by_gold_id for r in run.records) else "row"
    if matched_by == "id":
        pairs = [(r, by_gold_id.get(r["id"])) for r in run.records]
    else:
        by_row = {s.row: s for s in gold.samples}
        pairs = [(r, by_row.get(r.get("row") if isinstance(r.get("row"), int) else -1)) for r in run.records]
        lined_up = [(r, g) for r, g in pairs if g is not None]
        differ = [(r, g) for r, g in lined_up if _norm_q(r.get("question")) != _norm_q(g.question)]
        if lined_up and len(differ) * 10 > len(lined_up):
            r, g = differ[0]
            data = run.summary.get("data") or "the run's data"
            run_ids = "has ids of its own" if any(x["id"] != str(x.get("row")) for x in run.records) else \
                "has no id column (its ids are row numbers)"
            why = (f"the gold file's ids (e.g. {gold.samples[0].id!r}) match none of the run's ids (e.g. "
                   f"{run.records[0]['id']!r}; the data {data} {run_ids}), so rows were matched by order"
                   if has_ids else f"the gold file {path} has no id column, so rows are matched by order")
            raise UserError(
                f"{path}: the gold rows do not line up with the run ({len(differ)} of {len(lined_up)} questions "
                f"differ; {why}). First difference, row {r.get('row', -1) + 1}: run has "
                f"{str(r.get('question'))[:60]!r}, gold has {g.question[:60]!r}. Give a gold file with the same ids, "
                "or the same rows in the same order.")
    labels: dict[str, str] = {}
    facts: dict[str, list[str]] = {}
    unmatched = []
    for r, g in pairs:
        if g is None:
            unmatched.append(r["id"])
            continue
        listed = parse_facts(g.extra.get("facts"))
        if listed:
            facts[r["id"]] = listed
        try:
            labels[r["id"]] = normalize_label(g.label, run.task, r.get("options"))
        except ValueError as e:
            raise UserError(f"{path}, gold row {g.row + 1} (id {g.id}): {e}; the gold label must fit the run's "
                            "task (a letter of the options for multiple choice)") from None
    if not labels:
        raise UserError(f"{path}: no gold row matches the run's samples (matched by {matched_by}); give a gold file "
                        "with the same ids as the data, or the same rows in the same order")
    return GoldLabels(path=path, labels=labels, matched_by=matched_by, unmatched=unmatched, facts=facts)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def detection_scores(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = (2 * precision * recall / (precision + recall)) if precision and recall else (
        0.0 if precision is not None and recall is not None else None)
    return {"precision": precision, "recall": recall, "f1": f1}


def gold_metrics(records: Iterable[SampleRecord], gold: dict[str, str], task: str, *,
                 fine_tuning_set: Iterable[FineTuningRecord] | None = None, tolerance: float = 1e-2,
                 same: Callable[[Any, str, str], bool] | None = None) -> dict[str, Any]:
    """Detection, relabel and label-accuracy figures of a run's records against `gold` (id -> label).

    `fine_tuning_set` is denoised.jsonl's records (default: the records kept by the run). Samples
    without a gold label are left out of every figure. `same(answer, gold, id)` says whether an
    answer is the gold one (default: `answers_match`; `report --gold` passes the run's own
    comparison, `robustft.inspect.gold_compare`, by meaning for open-ended data).
    """
    def right(pred: Any, sid: str) -> bool:
        if pred is None:
            return False
        if same is not None:
            return same(pred, gold[sid], sid)
        return answers_match(str(pred), gold[sid], task, tolerance)

    recs = [r for r in records if r["id"] in gold]
    tp = fp = fn = tn = undecided = 0
    wrong_ids = set()
    for r in recs:
        wrong = not right(r.get("original_label"), r["id"])
        flagged = r.get("decision") == "noisy"
        if wrong:
            wrong_ids.add(r["id"])
        if r.get("decision") is None:
            undecided += 1
        tp += wrong and flagged
        fp += (not wrong) and flagged
        fn += wrong and not flagged
        tn += (not wrong) and not flagged

    proposed = [r for r in recs if r.get("status") in ("relabeled", "confirmed", "dropped")
                and r.get("proposed_label") is not None]
    kept = [r for r in proposed if r["status"] in ("relabeled", "confirmed")]
    dropped = [r for r in proposed if r["status"] == "dropped"]
    n_correct = sum(right(r["proposed_label"], r["id"]) for r in proposed)
    kept_correct = sum(right(r["proposed_label"], r["id"]) for r in kept)
    dropped_correct = sum(right(r["proposed_label"], r["id"]) for r in dropped)
    wrong_flagged = [r for r in proposed if r["id"] in wrong_ids]

    if fine_tuning_set is None:
        fine_tuning_set = [{"id": r["id"], "label": r.get("label"), "source": r["status"]}
                           for r in recs if r.get("status") in ("clean", "relabeled", "confirmed")]
    ft = [d for d in fine_tuning_set if d.get("id") in gold]
    ft_label = {d["id"]: d.get("label") for d in ft}
    ft_correct = sum(right(d.get("label"), d["id"]) for d in ft)
    input_correct = len(recs) - len(wrong_ids)

    fate = {"fixed": 0, "relabeled_wrong": 0, "kept_unchanged": 0, "removed": 0, "failed": 0}
    kept_right = {"kept_right": 0, "broken": 0, "removed": 0, "failed": 0}
    status_of = {r["id"]: r.get("status") for r in recs}
    for r in recs:
        sid = r["id"]
        in_ft = sid in ft_label
        if sid in wrong_ids:
            if in_ft:
                label = ft_label[sid]
                if right(label, sid):
                    fate["fixed"] += 1
                elif answers_match(str(label), str(r.get("original_label")), task, tolerance):
                    fate["kept_unchanged"] += 1
                else:
                    fate["relabeled_wrong"] += 1
            elif status_of[sid] == "failed":
                fate["failed"] += 1
            else:
                fate["removed"] += 1
        elif in_ft:
            kept_right["kept_right" if right(ft_label[sid], sid) else "broken"] += 1
        else:
            kept_right["failed" if status_of[sid] == "failed" else "removed"] += 1

    return {
        "samples": len(recs),
        "input": {"samples": len(recs), "wrong": len(wrong_ids), "correct": input_correct,
                  "label_accuracy": _ratio(input_correct, len(recs))},
        "detection": {"flagged": tp + fp, "wrong": tp + fn, "true_positive": tp, "false_positive": fp,
                      "false_negative": fn, "true_negative": tn, "undecided": undecided,
                      **detection_scores(tp, fp, fn)},
        "relabel": {"proposed": len(proposed), "correct": n_correct, "accuracy": _ratio(n_correct, len(proposed)),
                    "kept": len(kept), "kept_correct": kept_correct, "kept_accuracy": _ratio(kept_correct, len(kept)),
                    "dropped": len(dropped), "dropped_correct": dropped_correct,
                    "dropped_accuracy": _ratio(dropped_correct, len(dropped)),
                    "of_wrong_labels": len(wrong_flagged),
                    "of_wrong_labels_correct": sum(right(r["proposed_label"], r["id"]) for r in wrong_flagged)},
        "fine_tuning_set": {"samples": len(ft), "correct": ft_correct, "wrong": len(ft) - ft_correct,
                            "label_accuracy": _ratio(ft_correct, len(ft)),
                            "human": sum(1 for d in ft if d.get("source") == "human")},
        "wrong_labels": fate,
        "right_labels": kept_right,
        "right_labels_broken": kept_right["broken"],
    }


def run_gold_comparer(run: RunFiles, gold: GoldLabels) -> GoldComparer:
    """The run's own comparison with gold, prepared for every text the figures compare."""
    texts = [r.get(k) for r in run.records for k in ("original_label", "proposed_label", "label")]
    texts += [d.get("label") for d in run.fine_tuning_set()]
    return gold_comparer(run, gold.labels, gold.facts, texts)


def run_gold_metrics(run: RunFiles, gold: GoldLabels, comparer: GoldComparer | None = None) -> dict[str, Any]:
    """`gold_metrics` for a loaded run, with where the gold came from and how it was compared."""
    comparer = comparer or run_gold_comparer(run, gold)
    m = gold_metrics(run.records, gold.labels, run.task, fine_tuning_set=run.fine_tuning_set(), tolerance=run.tolerance,
                     same=comparer)
    m["comparison"] = comparer.describe()
    m["gold"] = {"path": str(gold.path), "matched_by": gold.matched_by, "matched": len(gold.labels),
                 "unmatched": len(gold.unmatched), "unmatched_examples": gold.unmatched[:5]}
    return m


def pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def describe_gold(m: dict[str, Any]) -> list[str]:
    """The gold figures as short terminal lines."""
    d, rl, ft, inp = m["detection"], m["relabel"], m["fine_tuning_set"], m["input"]
    g = m.get("gold", {})
    lines = []
    if g:
        extra = f", {g['unmatched']} run samples have no gold row and are left out" if g.get("unmatched") else ""
        lines.append(f"gold labels: {g['path']} (matched by {g['matched_by']}: {g['matched']} samples{extra})")
    if m.get("comparison"):
        lines.append(f"  compared with gold: {m['comparison']['rule']}")
    lines += [
        f"  noise detection   precision {pct(d['precision'])}  recall {pct(d['recall'])}  F1 {pct(d['f1'])}"
        f"   ({d['wrong']} wrong labels in the input; {d['flagged']} flagged, {d['true_positive']} of them wrong)",
        f"  relabel accuracy  {pct(rl['accuracy'])} of {rl['proposed']} proposed; kept {pct(rl['kept_accuracy'])} "
        f"of {rl['kept']}, dropped {pct(rl['dropped_accuracy'])} of {rl['dropped']}",
        f"  label accuracy    input {pct(inp['label_accuracy'])} ({inp['correct']}/{inp['samples']}) -> "
        f"fine-tuning set {pct(ft['label_accuracy'])} ({ft['correct']}/{ft['samples']})",
    ]
    f = m["wrong_labels"]
    lines.append(f"  wrong labels      {f['fixed']} fixed, {f['removed']} removed, {f['kept_unchanged']} kept unchanged, "
                 f"{f['relabeled_wrong']} changed to another wrong label, {f['failed']} failed; "
                 f"right labels broken: {m['right_labels_broken']}")
    return lines
