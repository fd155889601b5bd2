"""Trust scores of open-ended responses against gold: ranking quality per kind of noise, and the
fine-tuning set the `trust` checker makes, at 30 / 50 / 70 % noise.

Data: `robustft.sim make-open-data --kinds swap,key_changed,confabulation,consistent` on ARC
questions (the noisy rows dealt out to the four kinds in turn). The simulated experts (`robustft.sim`,
right `--accuracy` of the time) play every role; on a confabulation question their replies vary
between samples, on a consistent-error question they repeat the given response's mistake (the
simulator's rules: `robustft.sim` docstring). Embeddings are the default local all-MiniLM-L6-v2.

Sets kept apart so that nothing is tuned on the figures reported: the *calibration* sets *dev*,
*dev2* and *dev3* (the first, sixth and seventh `--limit` usable ARC questions; data seeds 0, 5, 6;
server seed = noise level + 0, 500, 600), on which the trust score's weights are fitted
(`--calibrate`: logistic regression of right/wrong on the signals' log-odds, written to
benchmarks/results/trust_calibration.json and frozen in `robustft/agents/trust.py`); two more
development sets, *dev4* and *dev5* (seeds 7 and 8, other questions again), where, with the
calibration sets, design choices were checked before being kept and `denoise.trust_threshold` was
chosen, and *dev6* to *dev9* (seeds 11 to 14: the questions of dev, dev2, dev4 and dev5 with other
noise and server draws), added to check the off-topic term's constants on more data; then sets used for no choice, each of other questions with other seeds: *held-out* (the
second `--limit` questions, data seed 1, server seed = 100 + noise level), *final* (seed 2, 200 +
noise), *test* (seed 3, 300 + noise), *unseen* (seed 4, 400 + noise), and *fresh* / *fresh2*
(seeds 9 and 10, 900 / 1000 + noise), made from ARC's test split, questions no other set has. The
targets table reads these six only.

Per set and noise level, one `robustft denoise` with `checker: trust` (default threshold), and in
the same response store one that also ranks the relabels by their own trust at selection
(`trust_selection`), one with the default `paper` checker and one with `judge`, for the
fine-tuning set each makes. Reported:

- ranking: AUROC and precision at 10 / 20 % of the trust score and of each of its signals alone
  (read from the same calls), and of the given response's length alone, overall and AUROC per kind
  of noise; beside each, the calls and tokens per sample that signal needs;
- cleaning: detection recall per kind, the share of right responses in the input and in the
  fine-tuning set, the share of rows kept, calls and tokens per sample.

    python -m benchmarks.open_trust [--limit 150] [--accuracy 0.85] [--sets dev,...,fresh2] [--trust-threshold T] [--calibrate]

Writes benchmarks/results/open_trust.json and .md (with --calibrate: trust_calibration.json only).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from robustft.backends.store import ResponseStore
from robustft.config import load_config
from robustft.agents.trust import SIGNALS, features, fit_weights
from robustft.inspect.ranking import trust_ranking
from robustft.run.runner import DenoiseRun
from robustft.sim import SimServer
from robustft.sim.facts import is_right
from robustft.sim.gold import load_gold
from robustft.sim.open_data import NOISE_KINDS, make_open_data

from ._runs import DATA, write_results
from .open_quality import _share, counted

NOISE_LEVELS = (30, 50, 70)
# Each set: its data seed, the questions it takes (skip x --limit onwards) and its server seed base.
# dev*: where choices are made; the others are used for none.
SETS = {"dev": {"seed": 0, "skip": 0, "server": 0}, "heldout": {"seed": 1, "skip": 1, "server": 100},
        "final": {"seed": 2, "skip": 2, "server": 200}, "test": {"seed": 3, "skip": 3, "server": 300},
        "unseen": {"seed": 4, "skip": 4, "server": 400},
        "dev2": {"seed": 5, "skip": 5, "server": 500}, "dev3": {"seed": 6, "skip": 6, "server": 600},
        "dev4": {"seed": 7, "skip": 7, "server": 700}, "dev5": {"seed": 8, "skip": 8, "server": 800},
        # more development draws: the questions of dev, dev2, dev4, dev5 with other noise and server seeds
        "dev6": {"seed": 11, "skip": 0, "server": 1100}, "dev7": {"seed": 12, "skip": 5, "server": 1200},
        "dev8": {"seed": 13, "skip": 7, "server": 1300}, "dev9": {"seed": 14, "skip": 8, "server": 1400},
        # questions no other set has: ARC's test split
        "fresh": {"seed": 9, "skip": 0, "server": 900, "source": "test.csv"},
        "fresh2": {"seed": 10, "skip": 1, "server": 1000, "source": "test.csv"}}
CALIBRATION = ("dev", "dev2", "dev3")  # where the weights are fitted (--calibrate)
# Sets whose figures were used for no choice (the targets table reads these only).
REPORTED = ("heldout", "final", "test", "unseen", "fresh", "fresh2")
CHECKERS = ("trust", "trust_selection", "paper", "judge")
# Each variant's denoise settings: trust_selection also ranks the relabels by their own trust.
VARIANTS = {"trust": {"checker": "trust", "trust_selection": False},
            "trust_selection": {"checker": "trust", "trust_selection": True},
            "paper": {"checker": "paper", "trust": False}, "judge": {"checker": "judge", "trust": False}}
# The calls each signal needs (node names in summary.json's model_calls).
SIGNAL_CALLS = {"trust": ("base", "reasoning", "judge", "claim", "recheck"), "agreement": ("base", "reasoning"),
                "recheck": ("recheck",), "verdicts": ("base", "reasoning", "judge", "claim", "recheck"),
                "reflection": ("base", "reasoning", "judge"), "token_prob": ("base", "reasoning", "judge"),
                "claims": ("base", "reasoning", "claim"), "length": ()}


def _per_sample(records: list[dict], nodes: tuple[str, ...]) -> dict[str, float]:
    calls = tokens = 0
    for r in records:
        for name, node in (r.get("nodes") or {}).items():
            if name in nodes:
                calls += int(node.get("attempts") or 0)
                tokens += int(node.get("prompt_tokens") or 0) + int(node.get("completion_tokens") or 0)
    n = max(1, len(records))
    return {"calls": round(calls / n, 2), "tokens": round(tokens / n, 1)}


def cleaning(records: list[dict], gold: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    _, wrong, flagged, ft, figures = counted(records, gold)
    recall = {}
    for kind in NOISE_KINDS:
        ids = {sid for sid in wrong if kinds.get(sid) == kind}
        recall[kind] = _share(len(ids & flagged), len(ids))
    return {**figures, "recall_by_kind": recall, "kept": _share(len(ft), len(records))}


def run_level(folder: Path, noise: int, accuracy: float, server_seed: int, workdir: Path,
              checkers: tuple[str, ...], threshold: float | None = None) -> dict[str, Any]:
    gold = {g.id: g for g in load_gold(folder / "gold.csv")}
    with (folder / "noise.csv").open(newline="", encoding="utf-8") as fh:
        kinds = {row["id"]: row["kind"] for row in csv.DictReader(fh)}
    out: dict[str, Any] = {"noise": noise, "rows": len(gold), "kinds": {k: sum(v == k for v in kinds.values())
                                                                        for k in NOISE_KINDS}, "checkers": {}}
    path = workdir / f"{folder.name}-responses.sqlite"
    out["store_reused"] = path.exists()  # --keep: an earlier run's responses answer calls (wall times drop)
    store = ResponseStore(path)
    try:
        with SimServer(folder / "gold.csv", accuracy=accuracy, seed=server_seed) as sim:
            for checker in checkers:
                # a run directory left by --keep would be resumed, its samples kept as they were scored then:
                # start afresh (the response store still answers the calls it has)
                shutil.rmtree(workdir / f"{folder.name}-{checker}", ignore_errors=True)
                config = load_config(None, {
                    "data": {"path": str(folder / "noisy.csv"), "task": "open"},
                    "model": {"provider": "openai", "name": "sim-expert", "base_url": sim.base_url},
                    "denoise": {**VARIANTS[checker], "concurrency": 32,
                                **({"trust_threshold": threshold} if threshold is not None and VARIANTS[checker].get("trust", True) else {})},
                    "out": str(workdir / f"{folder.name}-{checker}")})
                started = time.perf_counter()
                done = asyncio.run(DenoiseRun(config, store=store, progress=False, log=lambda msg: None).run())
                records = done.records
                row: dict[str, Any] = {**cleaning(records, gold, kinds),
                                       **_per_sample(records, tuple(done.summary["model_calls"])),
                                       "wall_s": round(time.perf_counter() - started, 1)}
                detection = ("base", "reasoning", "judge", "claim", "recheck")
                row["detection"] = _per_sample(records, detection)
                if checker == "trust":
                    out["calibration_rows"] = [(features({**r["trust_signals"]}), r["id"] not in _wrong(records, gold))
                                               for r in records if r.get("trust_signals")]
                    wrong = {r["id"] for r in records
                             if not is_right(r["original_label"], gold[r["id"]].key, gold[r["id"]].distractors)}
                    ranking = trust_ranking(records, wrong, kinds=kinds)
                    for name, figures in (ranking or {}).get("scores", {}).items():
                        figures["cost"] = _per_sample(records, SIGNAL_CALLS.get(name, ()))
                    out["ranking"] = ranking
                    out["thresholds"] = _thresholds(records, wrong)
                    # for the figures pooled over sets (`pooled`): what the ranking reads, ids made unique per set
                    out["pool_rows"] = [{"id": f"{folder.name}:{r['id']}", "trust": r.get("trust"),
                                         "trust_signals": r.get("trust_signals"), "original_label": r["original_label"],
                                         "wrong": r["id"] in wrong, "kind": kinds.get(r["id"])} for r in records]
                out["checkers"][checker] = row
                print(json.dumps({"set": folder.name, "checker": checker, **{k: row[k] for k in (
                    "kept", "fine_tuning_right", "recall_by_kind", "calls", "wall_s")}}), flush=True)
    finally:
        store.close()
    if "ranking" in out:
        print(json.dumps({name: (f["auroc"], f.get("auroc_by_kind")) for name, f in out["ranking"]["scores"].items()}),
              flush=True)
    return out


def pooled_rankings(results: dict[str, list[dict]]) -> dict[str, Any]:
    """Per noise level, the ranking figures over the rows of every given set together (each set's
    `pool_rows`, removed from the results): at 150 rows a set's AUROC for one kind of noise turns on
    a pair or two; pooled, the sets used for no choice give it from about 900 rows."""
    rows_by_level: dict[int, list[dict]] = {}
    for levels in results.values():
        for level in levels:
            rows_by_level.setdefault(level["noise"], []).extend(level.pop("pool_rows", []))
    pooled = {}
    for noise, rows in sorted(rows_by_level.items()):
        wrong = {r["id"] for r in rows if r["wrong"]}
        kinds = {r["id"]: r["kind"] for r in rows if r["kind"]}
        ranking = trust_ranking(rows, wrong, kinds=kinds)
        if ranking:
            pooled[str(noise)] = {"sets": sorted(results), "ranking": ranking}
    return pooled


def _wrong(records: list[dict], gold: dict[str, Any]) -> set[str]:
    return {r["id"] for r in records if not is_right(r["original_label"], gold[r["id"]].key, gold[r["id"]].distractors)}


def _thresholds(records: list[dict], wrong: set[str]) -> list[dict[str, Any]]:
    """For a few trust thresholds: the share of rows whose given response passes, and how many of
    those are right (what `checker: trust` keeps as clean, before relabeling)."""
    rows = []
    for threshold in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9):
        passed = [r["id"] for r in records if r.get("trust") is not None and r["trust"] >= threshold]
        rows.append({"threshold": threshold, "passed": _share(len(passed), len(records)),
                     "passed_right": _share(sum(sid not in wrong for sid in passed), len(passed))})
    return rows


def _f(x: Any, pct: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:.1%}" if pct else f"{x:.3f}" if isinstance(x, float) else str(x)


SINGLES = SIGNALS
EQUAL_CALLS = "verdicts"  # self-reflection alone at the trust score's judge calls


def target_rows(p: dict) -> list[dict[str, Any]]:
    """The issue's targets per held-out set and noise level, for the default `checker: trust`
    (trust_selection): fine-tuning set >= 95 % right keeping >= 60 % of rows; recall of changed key
    facts >= 0.9; the trust score's AUROC above every single signal's for every kind (a tie at
    1.000, where nothing can be above, is counted apart)."""
    rows = []
    for name in p["sets"]:
        if name not in REPORTED:
            continue
        for level in p["results"][name]:
            c = level["checkers"].get("trust_selection") or level["checkers"].get("trust")
            scores = (level.get("ranking") or {}).get("scores", {})
            found: dict[str, Any] = {}
            for against, names in (("", SINGLES), ("equal_calls_", (EQUAL_CALLS,))):
                beats, ties, loses = [], [], []
                for kind in NOISE_KINDS:
                    mine = scores.get("trust", {}).get("auroc_by_kind", {}).get(kind)
                    best = max(((scores[s].get("auroc_by_kind", {}).get(kind) or 0.0), s) for s in names if s in scores)
                    if mine is None:
                        continue
                    (beats if mine > best[0] else ties if mine == best[0] == 1.0 else loses).append(
                        f"{kind} {mine:.3f} vs {best[0]:.3f}" + (f" ({best[1]})" if not against else ""))
                found.update({f"{against}beats": beats, f"{against}ties": ties, f"{against}loses": loses})
            rows.append({"set": name, "noise": level["noise"], "right": c["fine_tuning_right"], "kept": c["kept"],
                         "key_recall": c["recall_by_kind"]["key_changed"], "calls": c["calls"], "tokens": c["tokens"],
                         **found})
    return rows


def _targets(p: dict) -> list[str]:
    rows = target_rows(p)
    if not rows:
        return []
    lines = ["### The issue's targets on the sets not used for any choice (default `checker: trust`)", "",
             "| set | noise | fine-tuning set right (>= 95 %) | rows kept (>= 60 %) | recall key changed (>= 0.9) "
             "| AUROC above every single signal, per kind | above self-reflection at equal calls (verdicts) "
             "| calls | tokens |", "|---|---|---|---|---|---|---|---|---|"]

    def verdict(t: dict[str, Any], prefix: str) -> str:
        ties, loses = t[f"{prefix}ties"], t[f"{prefix}loses"]
        return ("all 4 kinds" if not loses and not ties else
                "; ".join(([f"tie at 1.000: {', '.join(x.split()[0] for x in ties)}"] if ties else [])
                          + ([f"below: {', '.join(loses)}"] if loses else [])))
    for t in rows:
        auc = f"{verdict(t, '')} | {verdict(t, 'equal_calls_')}"
        lines.append(f"| {t['set']} | {t['noise']} % | {_f(t['right'], True)}{'' if t['right'] >= 0.95 else ' (missed)'} "
                     f"| {_f(t['kept'], True)}{'' if t['kept'] >= 0.6 else ' (missed)'} "
                     f"| {_f(t['key_recall'])}{'' if t['key_recall'] >= 0.9 else ' (missed)'} | {auc} "
                     f"| {t['calls']} | {t['tokens']} |")
    return lines + [""]


def _pooled_verdict(pooled: dict[str, Any]) -> str:
    """Per level, whether the trust score is above every single signal and above `verdicts` on every kind."""
    said = []
    for noise, entry in pooled.items():
        scores = entry["ranking"]["scores"]
        parts = []
        for against, names in (("every single signal", SINGLES), ("self-reflection at equal calls", (EQUAL_CALLS,))):
            short = []
            for kind in NOISE_KINDS:
                mine = scores["trust"].get("auroc_by_kind", {}).get(kind)
                best = max((scores[n].get("auroc_by_kind", {}).get(kind) or 0.0) for n in names if n in scores)
                if mine is not None and mine <= best and not mine == best == 1.0:
                    short.append(f"{kind} {mine:.4f} vs {best:.4f}")
            parts.append(f"above {against} on every kind" if not short else
                         f"not above {against} on " + ", ".join(short))
        said.append(f"{noise} % noise: " + " and ".join(parts))
    return "; ".join(said) + "."


def _pooled(p: dict) -> list[str]:
    pooled = p.get("pooled") or {}
    if not pooled:
        return []
    sets = next(iter(pooled.values()))["sets"]
    lines = [f"### Pooled per noise level: the rows of {', '.join(sets)} together ({len(sets)} x {p['limit']} rows)", "",
             "AUROC of the trust score, of each single signal and of self-reflection at equal calls (`verdicts`), "
             "overall and per kind. " + _pooled_verdict(pooled), "",
             "| noise | score | AUROC | " + " | ".join(NOISE_KINDS) + " |", "|---|---|---|" + "---|" * len(NOISE_KINDS)]
    for noise, entry in pooled.items():
        scores = entry["ranking"]["scores"]
        for name in ("trust", *SINGLES, EQUAL_CALLS):
            if name in scores:
                f = scores[name]
                lines.append(f"| {noise} % | {name} | {_f(f['auroc'])} | "
                             + " | ".join(_f(f.get("auroc_by_kind", {}).get(k)) for k in NOISE_KINDS) + " |")
    return lines + [""]


def to_markdown(p: dict) -> str:
    lines = [f"Simulated experts (robustft.sim, right {p['accuracy']:.0%} of the time; on hard questions as the "
             f"simulator's docstring says), {p['limit']} ARC questions per set made open-ended with the four kinds "
             "of noise dealt out in turn, embeddings all-MiniLM-L6-v2. *Right*: states the key fact and no "
             "distractor. *Fine-tuning set right*: of the rows the run keeps (clean, relabeled or confirmed), the "
             "share whose final response is right (a relabeled row by its new response); *rows kept*: those rows "
             "over all rows (dropped and failed rows are not kept). Calls and tokens are per sample (all samples); "
             "a signal's cost is the calls it needs.",
             "", "The **dev**, **dev2** and **dev3** sets are the calibration split: the trust score's weights were "
             "fitted on them by logistic regression (`--calibrate`, trust_calibration.json). **dev4** and **dev5** "
             "(other questions and seeds) are development sets too; on all five the recheck was kept and "
             "`trust_threshold` (0.9) chosen; **dev6** to **dev9** (the same questions, other draws) joined them to "
             "choose the off-topic term's constants. The **heldout**, **final**, **test** and **unseen** "
             "sets (other questions, other data and server seeds) were used for no choice; neither were **fresh** and "
             "**fresh2**, made from ARC's test split (questions no other set has) and run only for this report. "
             "*verdicts* is self-reflection alone at the trust score's number of judge calls: the mean of every "
             "verdict's probability of right (the reflection, the claim or whole-response check, the recheck).", ""]
    lines += _targets(p) + _pooled(p)
    for name in p["sets"]:
        for level in p["results"][name]:
            r = level.get("ranking") or {}
            lines += [f"### {name}, {level['noise']} % noise ({level['rows']} rows: " + ", ".join(
                f"{v} {k}" for k, v in level["kinds"].items()) + ")", "",
                "| score | AUROC | P@10% | P@20% | AUROC " + " | AUROC ".join(NOISE_KINDS) + " | calls | tokens |",
                "|---|---|---|---|" + "---|" * len(NOISE_KINDS) + "---|---|"]
            for score, f in r.get("scores", {}).items():
                label = score + (f" ({f['direction']})" if "direction" in f else "")
                lines.append(f"| {label} | {_f(f['auroc'])} | {_f(f['precision_at_10'])} | {_f(f['precision_at_20'])} | "
                             + " | ".join(_f(f.get("auroc_by_kind", {}).get(k)) for k in NOISE_KINDS)
                             + f" | {f['cost']['calls']} | {f['cost']['tokens']} |")
            lines += ["", f"Wrong share (P@k of a random pick): {_f(r.get('base_rate'))}. Given responses passing a "
                      "trust threshold (share of rows, right among them): " + "; ".join(
                          f"{t['threshold']:g}: {_f(t['passed'], True)}, {_f(t['passed_right'], True)}"
                          for t in level.get("thresholds", [])) + ".", "",
                      "| checker | detect P | detect R | R " + " | R ".join(NOISE_KINDS)
                      + " | input right | fine-tuning set right | rows kept | calls | tokens | detection calls | wall s |",
                      "|---|---|---|" + "---|" * len(NOISE_KINDS) + "---|---|---|---|---|---|---|"]
            for checker, c in level["checkers"].items():
                lines.append(f"| {checker} | {_f(c['precision'])} | {_f(c['recall'])} | "
                             + " | ".join(_f(c["recall_by_kind"][k]) for k in NOISE_KINDS)
                             + f" | {_f(c['input_right'], True)} | {_f(c['fine_tuning_right'], True)} | "
                             f"{_f(c['kept'], True)} | {c['calls']} | {c['tokens']} | {c['detection']['calls']} | "
                             f"{c['wall_s']} |")
            lines.append("")
    reused = [f"{name} {level['noise']} %" for name in p["sets"] for level in p["results"][name]
              if level.get("store_reused")]
    lines.append("Wall times were measured on a 2-core machine shared with other jobs: compare them only loosely."
                 + (f" The response store of an earlier run of this benchmark answered calls for {', '.join(reused)}: "
                    "their wall times are not those of fresh calls (calls and tokens are counted the same)."
                    if reused else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=150, help="ARC questions per set (150: what the weights were fitted on)")
    parser.add_argument("--accuracy", type=float, default=0.85)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--noise", default=",".join(map(str, NOISE_LEVELS)))
    parser.add_argument("--checkers", default=",".join(CHECKERS))
    parser.add_argument("--no-write", action="store_true", help="print, do not write benchmarks/results")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit the trust score's weights on the calibration sets (dev, dev2, dev3; checker trust only), print and write them "
                             "to benchmarks/results/trust_calibration.json; nothing else is written")
    parser.add_argument("--trust-threshold", type=float, default=None, metavar="T",
                        help="denoise.trust_threshold for the trust runs (default: the setting's default)")
    parser.add_argument("--keep", default=None, metavar="DIR", help="keep the data and run folders in DIR")
    args = parser.parse_args(argv)
    if args.calibrate:
        args.sets, args.checkers = ",".join(CALIBRATION), "trust"
    sets = [s for s in args.sets.split(",") if s]
    levels = [int(x) for x in args.noise.split(",") if x]
    checkers = tuple(c for c in args.checkers.split(",") if c)
    results: dict[str, list] = {}
    with tempfile.TemporaryDirectory(prefix="robustft-trust-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in sets:
            spec = SETS[name]
            results[name] = []
            for noise in levels:
                folder = work / f"{name}{noise}"
                make_open_data(DATA / "arc" / spec.get("source", "labeled.csv"), folder, noise=noise / 100, limit=args.limit,
                               seed=spec["seed"], skip=spec["skip"] * args.limit, kinds=NOISE_KINDS)
                results[name].append(run_level(folder, noise, args.accuracy, spec["server"] + noise, work, checkers,
                                               args.trust_threshold))
    calibration_rows = [row for name in sets for level in results[name] for row in level.pop("calibration_rows", [])]
    pooled = pooled_rankings({name: results[name] for name in sets if name in REPORTED})
    for name in sets:
        for level in results[name]:
            level.pop("pool_rows", None)
    if args.calibrate:
        fitted = {"sets": list(CALIBRATION), "levels": levels, "limit": args.limit, "accuracy": args.accuracy,
                  **fit_weights(calibration_rows)}
        print(json.dumps(fitted), flush=True)
        if not args.no_write:
            (Path(__file__).resolve().parent / "results" / "trust_calibration.json").write_text(
                json.dumps(fitted, indent=2) + "\n", encoding="utf-8")
        return fitted
    payload = {"accuracy": args.accuracy, "limit": args.limit, "sets": sets, "results": results, "pooled": pooled}
    if not args.no_write:
        write_results("open_trust", payload, to_markdown(payload))
    else:
        print(to_markdown(payload))
    return payload


if __name__ == "__main__":
    main()
