"""Open-ended responses cleaned by robustft against simulated experts, at 30 / 50 / 70 % noise.

The data is made by `robustft.sim make-open-data` from ARC (gold responses built around the right
option's text; noise is another question's response, `swap`, or the response with its key fact
changed to another option's text, `key_changed`, half each). A response is *right* when it
states the row's key fact and no distractor (`robustft.sim.facts`), the simulator's own notion.
`robustft.sim` plays every expert (right 80 % of the time: a word-level paraphrase of the gold
response; else a plausible wrong one) and the judge; embeddings are the default local
all-MiniLM-L6-v2, so the similarity rule runs as it would for a user.

For each noise level, one `robustft denoise` with the default settings (paper rule, response
similarity >= `denoise.open_similarity`) and one with `checker: judge`, sharing one response
store (the judge run pays only for the judge's calls and the relabels that differ). Reported:
detection precision and recall (per kind of noise too), the share of right responses in the input
and in the fine-tuning set, its size, and how the selection score relates to response length.

Then the 50 % set as a chat file (`noisy.messages.jsonl`, with a system prompt added to every
conversation) through the command line: `robustft denoise`, then `robustft export RUN_DIR`, which
writes a `messages` file back; checked: only corrected assistant turns changed.

    python -m benchmarks.open_quality [--limit 200] [--accuracy 0.8]

Writes benchmarks/results/open_quality.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from robustft.backends.store import ResponseStore
from robustft.cli import main as cli
from robustft.config import load_config
from robustft.data import read_jsonl, write_jsonl
from robustft.entropy import response_score
from robustft.run.runner import DenoiseRun
from robustft.sim import SimServer
from robustft.sim.facts import is_right
from robustft.sim.gold import load_gold
from robustft.sim.open_data import make_open_data

from ._runs import DATA, write_results
from .selection_scores import RecordingPool, auroc

NOISE_LEVELS = (30, 50, 70)
SYSTEM = "You are a patient science teacher. Answer in a short paragraph."


def _share(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j < len(order) and values[order[j]] == values[order[i]]:
                j += 1
            for k in range(i, j):
                out[order[k]] = (i + j - 1) / 2
            i = j
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return round(cov / var, 3) if var else None


def counted(records: list[dict], gold: dict[str, Any]) -> tuple[Any, set[str], set[str], list[dict], dict[str, Any]]:
    """What both open-ended benchmarks (this one and open_trust) count against the simulator's gold:
    `right(id, text)`, the ids whose given response is wrong, the flagged ids, the fine-tuning set's
    records, and the figures both report."""
    def right(sid: str, text: str | None) -> bool:
        g = gold[sid]
        return text is not None and is_right(text, g.key, g.distractors)

    wrong = {r["id"] for r in records if not right(r["id"], r["original_label"])}
    flagged = {r["id"] for r in records if r.get("decision") == "noisy"}
    ft = [r for r in records if r["status"] in ("clean", "relabeled", "confirmed")]
    figures = {"samples": len(records), "input_right": _share(len(records) - len(wrong), len(records)),
               "flagged": len(flagged), "precision": _share(len(wrong & flagged), len(flagged)),
               "recall": _share(len(wrong & flagged), len(wrong)), "fine_tuning_set": len(ft),
               "fine_tuning_right": _share(sum(right(r["id"], r["label"]) for r in ft), len(ft)),
               "failed": sum(r["status"] == "failed" for r in records)}
    return right, wrong, flagged, ft, figures


def quality(records: list[dict], gold: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    right, wrong, flagged, _, figures = counted(records, gold)
    relabeled = [r for r in records if r["status"] == "relabeled"]
    by_kind = {}
    for kind in ("swap", "key_changed"):
        ids = {sid for sid in wrong if kinds.get(sid) == kind}
        by_kind[kind] = {"wrong": len(ids), "recall": _share(len(ids & flagged), len(ids))}
    return {**figures, "by_kind": by_kind, "relabeled": len(relabeled),
            "relabeled_right": _share(sum(right(r["id"], r["label"]) for r in relabeled), len(relabeled))}


def length_and_scores(records: list[dict], pool: RecordingPool, gold: dict[str, Any]) -> dict[str, Any]:
    """For every relabel (kept or dropped): its context reply's length in tokens, its mean_nll and
    answer_nll, and whether the context response is right."""
    rows = []
    for r in records:
        if r["status"] not in ("relabeled", "dropped"):
            continue
        context = r["nodes"].get("context") or {}
        gen = pool.replies.get(context.get("prompt") or "")
        if gen is None or not gen.token_logprobs:
            continue
        g = gold[r["id"]]
        rows.append({"tokens": len(gen.token_logprobs), "mean_nll": response_score("mean_nll", gen, "open"),
                     "answer_nll": response_score("answer_nll", gen, "open"),
                     "right": context.get("answer") is not None and is_right(context["answer"], g.key, g.distractors),
                     "kept": r["status"] == "relabeled"})
    out: dict[str, Any] = {"relabels": len(rows)}
    for score in ("mean_nll", "answer_nll"):
        out[score] = {"spearman_with_length": _spearman([x["tokens"] for x in rows], [x[score] for x in rows]),
                      "auroc": auroc([x[score] for x in rows if x["right"]], [x[score] for x in rows if not x["right"]])}
    kept, dropped = [x["tokens"] for x in rows if x["kept"]], [x["tokens"] for x in rows if not x["kept"]]
    out["mean_tokens_kept"] = round(sum(kept) / len(kept), 1) if kept else None
    out["mean_tokens_dropped"] = round(sum(dropped) / len(dropped), 1) if dropped else None
    return out


def run_level(folder: Path, noise: int, accuracy: float, workdir: Path) -> list[dict]:
    gold = {g.id: g for g in load_gold(folder / "gold.csv")}
    kinds = {row["id"]: row["kind"] for row in _csv(folder / "noise.csv")}
    rows = []
    store = ResponseStore(workdir / f"open{noise}-responses.sqlite")
    try:
        with SimServer(folder / "gold.csv", accuracy=accuracy, seed=noise) as sim:
            for checker in ("paper", "judge"):
                pool = RecordingPool()
                config = load_config(None, {
                    "data": {"path": str(folder / "noisy.csv"), "task": "open"},
                    "model": {"provider": "openai", "name": "sim-expert", "base_url": sim.base_url},
                    "denoise": {"checker": checker, "concurrency": 32}, "out": str(workdir / f"open{noise}-{checker}")})
                started = time.perf_counter()
                done = asyncio.run(DenoiseRun(config, pool=pool, store=store, progress=False,
                                              log=lambda msg: None).run())
                wall = time.perf_counter() - started
                records = done.records
                row = {"noise": noise, "checker": checker, **quality(records, gold, kinds),
                       "model_calls": done.summary["model_calls"]["total"], "wall_s": round(wall, 1)}
                if checker == "paper":
                    row["length"] = length_and_scores(records, pool, gold)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        store.close()
    return rows


def _csv(path: Path) -> list[dict]:
    import csv

    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def run_chat(folder: Path, accuracy: float, workdir: Path) -> dict[str, Any]:
    """The 50 % set as a chat file with a system prompt, through the CLI, exported as messages."""
    source = workdir / "noisy-chat.messages.jsonl"
    records = read_jsonl(folder / "noisy.messages.jsonl")
    write_jsonl(source, [{**r, "messages": [{"role": "system", "content": SYSTEM}, *r["messages"]]} for r in records])
    gold = {g.id: g for g in load_gold(folder / "gold.csv")}
    out, exported = workdir / "chat-run", workdir / "chat-export.messages.jsonl"
    with SimServer(folder / "gold.csv", accuracy=accuracy, seed=50) as sim:
        started = time.perf_counter()
        code = cli(["denoise", "--data", str(source), "--out", str(out), "--model", "sim-expert",
                    "--base-url", sim.base_url, "--quiet"])
        wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"robustft denoise exited {code}")
    if cli(["export", str(out), "--out", str(exported)]) != 0:
        raise RuntimeError("robustft export failed")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    before = {r["id"]: r for r in records}
    after = read_jsonl(exported)
    only_answer_changed = all(
        a["messages"][:-1] == [{"role": "system", "content": SYSTEM}, *before[a["id"]]["messages"][:-1]]
        and set(a) == set(before[a["id"]]) for a in after)
    changed = [a for a in after if a["messages"][-1]["content"] != before[a["id"]]["messages"][-1]["content"]]
    right = sum(is_right(a["messages"][-1]["content"], gold[a["id"]].key, gold[a["id"]].distractors) for a in after)
    input_right = sum(is_right(r["messages"][-1]["content"], gold[r["id"]].key, gold[r["id"]].distractors)
                      for r in records)
    return {"samples": len(records), "task": summary["task"], "input_right": _share(input_right, len(records)),
            "exported": len(after), "exported_right": _share(right, len(after)), "corrected_turns": len(changed),
            "only_the_last_assistant_turn_changed": only_answer_changed, "wall_s": round(wall, 1),
            "model_calls": summary["model_calls"]["total"]}


def to_markdown(p: dict) -> str:
    lines = [f"Simulated experts and judge (robustft.sim, right {p['accuracy']:.0%} of the time), {p['limit']} ARC "
             "questions made open-ended (`make-open-data`, half the noise swapped responses, half key facts "
             "changed), embeddings all-MiniLM-L6-v2, default settings but the checker. *Right*: states the key "
             "fact and no distractor.", "",
             "| noise | checker | detect P | detect R | R swap | R key changed | input right | fine-tuning set "
             "right | size | relabeled (right) | calls | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in p["levels"]:
        k = r["by_kind"]
        lines.append(f"| {r['noise']}% | {r['checker']} | {r['precision']:.2f} | {r['recall']:.2f} | "
                     f"{k['swap']['recall']:.2f} | {k['key_changed']['recall']:.2f} | {r['input_right']:.1%} | "
                     f"{r['fine_tuning_right']:.1%} | {r['fine_tuning_set']} | {r['relabeled']} "
                     f"({r['relabeled_right']:.0%}) | {r['model_calls']} | {r['wall_s']} |")
    lines += ["", "Selection score and response length (relabels of the `paper` runs: the context reply's tokens):", "",
              "| noise | relabels | Spearman(length, mean_nll) | Spearman(length, answer_nll) | AUROC mean_nll | "
              "AUROC answer_nll | mean tokens kept / dropped |", "|---|---|---|---|---|---|---|"]
    for r in p["levels"]:
        if "length" not in r:
            continue
        s = r["length"]
        lines.append(f"| {r['noise']}% | {s['relabels']} | {s['mean_nll']['spearman_with_length']} | "
                     f"{s['answer_nll']['spearman_with_length']} | {_f(s['mean_nll']['auroc'])} | "
                     f"{_f(s['answer_nll']['auroc'])} | {s['mean_tokens_kept']} / {s['mean_tokens_dropped']} |")
    c = p["chat"]
    lines += ["", f"Chat file (`messages`, a system prompt in every conversation), 50 % noise, through the command "
              f"line: task inferred `{c['task']}`; input {c['input_right']:.1%} right; `robustft export RUN_DIR` "
              f"wrote {c['exported']} conversations, {c['corrected_turns']} with a corrected assistant turn, "
              f"{c['exported_right']:.1%} right; only the last assistant turn changed: "
              f"{'yes' if c['only_the_last_assistant_turn_changed'] else 'NO'}; {c['model_calls']} calls, "
              f"{c['wall_s']} s.",
              "", "The simulator's logprobs give every token of a reply the same expected surprise, whatever the "
              "reply's length, so these figures show that length does not drive selection here; they cannot show "
              "how a real model's per-token surprise changes with length (README, Open-ended responses)."]
    return "\n".join(lines)


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=200, help="ARC questions made open-ended")
    parser.add_argument("--accuracy", type=float, default=0.8)
    args = parser.parse_args(argv)
    levels = []
    with tempfile.TemporaryDirectory(prefix="robustft-open-") as tmp:
        work = Path(tmp)
        folders = {}
        for noise in NOISE_LEVELS:
            folders[noise] = work / f"data{noise}"
            make_open_data(DATA / "arc" / "labeled.csv", folders[noise], noise=noise / 100, limit=args.limit, seed=0)
            levels += run_level(folders[noise], noise, args.accuracy, work)
        chat = run_chat(folders[50], args.accuracy, work)
    payload = {"accuracy": args.accuracy, "limit": args.limit, "levels": levels, "chat": chat}
    write_results("open_quality", payload, to_markdown(payload))
    return payload


if __name__ == "__main__":
    main()
