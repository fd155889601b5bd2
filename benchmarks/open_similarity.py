"""How alike two open-ended responses' embeddings are when they agree and when they do not: the
measurement behind the default of `denoise.open_similarity`.

The checker calls an expert's response in agreement with the given one when the cosine similarity
of their embeddings (all-MiniLM-L6-v2, the default `denoise.embedding_model`) is at least the
threshold. Two sources of pairs, each with what the pair should be:

- the simulator's open-ended data (`robustft.sim make-open-data` from ARC): a right expert reply
  (the gold response paraphrased word by word, as `robustft.sim` writes it) against the gold
  response and against another right reply (agree); a reply with the key fact changed to a
  distractor, and another question's reply, against the gold response (disagree);
- 20 hand-written questions (`benchmarks/data/open_pairs.jsonl`), each with a response, a freely
  reworded paraphrase (agree), a version with its key fact changed (disagree) and, as an unrelated
  response, the next question's response (disagree).

For each threshold: the share of agreeing pairs at or above it and of disagreeing pairs below it.
The default is the highest threshold at which at least 95 % of the agreeing pairs of *both* sets
agree: a right response must almost never be flagged for its wording (that would send most of a
clean dataset to relabeling), and within that bound the threshold catches as many disagreeing
responses as it can. The simulator's paraphrases reword word by word and stay far closer to the
original than a person's rewording does, so the hand-written set is what bounds the threshold.

    python -m benchmarks.open_similarity [--limit 150]

Writes benchmarks/results/open_similarity.json and .md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from robustft.retrieval import LocalEmbedder
from robustft.sim import facts
from robustft.sim.gold import load_gold
from robustft.sim.model import SimModel, _rng
from robustft.sim.open_data import make_open_data

from ._runs import DATA, write_results

PAIRS = Path(__file__).parent / "data" / "open_pairs.jsonl"
THRESHOLDS = [round(t, 3) for t in np.arange(0.50, 0.951, 0.025)]
AGREE_AT_LEAST = 0.95


def sim_pairs(limit: int, workdir: Path) -> dict[str, list[tuple[str, str]]]:
    folder = workdir / "open"
    make_open_data(DATA / "arc" / "labeled.csv", folder, noise=0.3, limit=limit, seed=0)
    items = load_gold(folder / "gold.csv")
    sim = SimModel(items, accuracy=0.8)
    pairs: dict[str, list[tuple[str, str]]] = {"right vs gold": [], "right vs right": [],
                                               "key changed vs gold": [], "other question vs gold": []}
    for i, item in enumerate(items):
        rng = _rng("open-similarity", i)
        first, second = sim._open_response(item, True, rng), sim._open_response(item, True, rng)
        new = rng.choice(list(item.distractors))
        changed = facts.paraphrase(facts.change_fact(item.answer, item.key or "", new), (new,), rng)
        other = items[(i + 1) % len(items)]
        swapped = facts.paraphrase(other.answer, (other.key or "",), rng)
        pairs["right vs gold"].append((first, item.answer))
        pairs["right vs right"].append((first, second))
        pairs["key changed vs gold"].append((changed, item.answer))
        pairs["other question vs gold"].append((swapped, item.answer))
    return pairs


def written_pairs() -> dict[str, list[tuple[str, str]]]:
    rows = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {"paraphrase": [(r["paraphrase"], r["response"]) for r in rows],
            "key changed": [(r["changed"], r["response"]) for r in rows],
            "other question": [(rows[(i + 1) % len(rows)]["response"], r["response"]) for i, r in enumerate(rows)]}


def similarities(embedder: LocalEmbedder, groups: dict[str, list[tuple[str, str]]]) -> dict[str, np.ndarray]:
    texts = sorted({t for pairs in groups.values() for pair in pairs for t in pair})
    vectors = embedder.embed_sync(texts).astype(np.float16).astype(np.float32)  # as the response store keeps them
    row = {t: i for i, t in enumerate(texts)}
    return {name: np.array([float(vectors[row[a]] @ vectors[row[b]]) for a, b in pairs])
            for name, pairs in groups.items()}


def summary(values: np.ndarray) -> dict[str, float]:
    return {"n": int(len(values)), "min": round(float(values.min()), 3), "p5": round(float(np.percentile(values, 5)), 3),
            "median": round(float(np.median(values)), 3), "p95": round(float(np.percentile(values, 95)), 3),
            "max": round(float(values.max()), 3)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=150, help="ARC questions made into open-ended rows")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    embedder = LocalEmbedder()
    with tempfile.TemporaryDirectory() as tmp:
        sim = similarities(embedder, sim_pairs(args.limit, Path(tmp)))
    written = similarities(embedder, written_pairs())
    embedder.close()
    agree = np.concatenate([sim["right vs gold"], sim["right vs right"]])
    changed, other = sim["key changed vs gold"], sim["other question vs gold"]
    table = []
    for t in THRESHOLDS:
        row = {"threshold": t, "sim_agree": float(np.mean(agree >= t)), "sim_key_changed_below": float(np.mean(changed < t)),
               "sim_other_below": float(np.mean(other < t)),
               "written_paraphrase": float(np.mean(written["paraphrase"] >= t)),
               "written_key_changed_below": float(np.mean(written["key changed"] < t)),
               "written_other_below": float(np.mean(written["other question"] < t))}
        row["sim_balanced"] = (row["sim_agree"] + row["sim_key_changed_below"]) / 2
        table.append(row)
    safe = [r for r in table if r["sim_agree"] >= AGREE_AT_LEAST and r["written_paraphrase"] >= AGREE_AT_LEAST]
    best = max(safe, key=lambda r: r["threshold"])
    payload = {"embedding_model": embedder.model_name, "limit": args.limit,
               "similarity": {**{f"sim: {k}": summary(v) for k, v in sim.items()},
                              **{f"written: {k}": summary(v) for k, v in written.items()}},
               "thresholds": table, "chosen": best["threshold"], "wall_s": round(time.perf_counter() - started, 1)}
    write_results("open_similarity", payload, to_markdown(payload))
    return payload


def to_markdown(p: dict) -> str:
    lines = [f"Cosine similarity of response embeddings ({p['embedding_model']}, stored as float16 like a run does).",
             "", "| pairs | n | min | 5 % | median | 95 % | max |", "|---|---|---|---|---|---|---|"]
    for name, s in p["similarity"].items():
        lines.append(f"| {name} | {s['n']} | {s['min']:.3f} | {s['p5']:.3f} | {s['median']:.3f} | {s['p95']:.3f} | "
                     f"{s['max']:.3f} |")
    lines += ["", "Share of pairs on the right side of each threshold (agree: at or above; disagree: below).", "",
              "| threshold | sim agree | sim key changed | sim other question | written paraphrase | "
              "written key changed | written other question |", "|---|---|---|---|---|---|---|"]
    for r in p["thresholds"]:
        mark = " **(default)**" if r["threshold"] == p["chosen"] else ""
        lines.append(f"| {r['threshold']:.3f}{mark} | {r['sim_agree']:.0%} | {r['sim_key_changed_below']:.0%} | "
                     f"{r['sim_other_below']:.0%} | {r['written_paraphrase']:.0%} | {r['written_key_changed_below']:.0%} | "
                     f"{r['written_other_below']:.0%} |")
    lines += ["", f"Default: {p['chosen']}, the highest threshold at which at least {AGREE_AT_LEAST:.0%} of the "
              "agreeing pairs of both sets agree. Another question's response is never a close call. A changed "
              "key fact in otherwise similar wording is: its similarity overlaps a paraphrase's, so the similarity "
              "rule catches only some of those (the checker asks two experts, which helps); use `checker: judge` "
              "where such noise matters."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
