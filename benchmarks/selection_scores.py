"""Which selection score separates right relabels from wrong ones, with simulated experts.

For each dataset, one `robustft denoise` run over its noisy set against `robustft.sim` with token
logprobs and the top 5 alternatives per token (`model.top_logprobs: 5`). Every reply is recorded,
so each relabel (a sample flagged noisy that reached selection, kept or dropped) is scored three
ways from the same context-relabeler reply:

- `mean_nll`: mean negative log-probability of all generated tokens (the paper's);
- `answer_nll`: the same over the answer tokens only;
- `entropy`: mean per-token predictive entropy from the top-5 alternatives.

A relabel is right when its proposed label equals the gold label. The AUROC of a score is the
chance that a right relabel scores lower (more certain) than a wrong one (0.5: no better than
chance, 1.0: every right one below every wrong one). Also: the label accuracy of the relabels that
β = 0.5 selection would keep with each score.

    python -m benchmarks.selection_scores [--noise 50] [--limit N] [--accuracy 0.8]
    python -m benchmarks.selection_scores --base-url URL --model NAME   # a real server instead

Writes benchmarks/results/selection_scores.json and .md. See the .md for what the simulator's
logprobs are, and so what these figures can and cannot say.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from robustft.backends.base import Generation, Messages
from robustft.backends.registry import ModelPool
from robustft.config import ModelConfig, load_config
from robustft.data import load_dataset
from robustft.entropy import SCORES, response_score, select_lowest
from robustft.inspect.ranking import auroc as ranking_auroc
from robustft.run.runner import denoise
from robustft.sim import SimServer

from ._runs import DATA

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (a worktree one level deeper finds it one more level up)
RESULTS = Path(__file__).parent / "results"
TOP_LOGPROBS = 5


class Recorder:
    """Wraps a backend; keeps the last reply to each prompt text."""

    def __init__(self, inner: Any, replies: dict[str, Generation]):
        self.inner, self.name, self.replies = inner, inner.name, replies

    async def generate(self, messages: Messages) -> Generation:
        gen = await self.inner.generate(messages)
        self.replies[messages[-1]["content"]] = gen
        return gen

    async def aclose(self) -> None:
        await self.inner.aclose()


class RecordingPool(ModelPool):
    def __init__(self) -> None:
        super().__init__()
        self.replies: dict[str, Generation] = {}

    def get(self, config: ModelConfig) -> Any:
        key = config.model_dump_json()
        if key not in self._models:
            self.add(config, Recorder(super().get(config), self.replies))
        return self._models[key]


def auroc(right: list[float], wrong: list[float]) -> float | None:
    """P(a right relabel scores below a wrong one), ties counting half: the report's own AUROC
    (`robustft.inspect.ranking.auroc`) with the right relabels as the class that should rank low."""
    scores = {f"r{i}": s for i, s in enumerate(right)} | {f"w{i}": s for i, s in enumerate(wrong)}
    return ranking_auroc(scores, {f"r{i}" for i in range(len(right))})


def measure(dataset: str, noise: int, accuracy: float, limit: int | None, workdir: Path,
            server: tuple[str, str] | None = None) -> dict[str, Any]:
    """`server`: (base URL, model name) of a real server; None runs robustft.sim."""
    gold_path, noisy_path = DATA / dataset / "labeled.csv", DATA / dataset / f"noisy{noise}.csv"
    pool = RecordingPool()
    with contextlib.ExitStack() as stack:
        if server is None:
            sim = stack.enter_context(SimServer(gold_path, accuracy=accuracy, seed=noise))
            server = (sim.base_url, "sim-expert")
        config = load_config(None, {
            "data": {"path": str(noisy_path), "limit": limit, "out_of_range_labels": "keep"},
            "model": {"provider": "openai", "name": server[1], "base_url": server[0], "top_logprobs": TOP_LOGPROBS},
            "denoise": {"score": "entropy", "concurrency": 32}, "out": str(workdir / f"{dataset}-{noise}")})
        started = time.perf_counter()
        result = denoise(config, pool=pool, progress=False)
        wall = time.perf_counter() - started
    gold_cfg = config.data.model_copy(update={"path": gold_path, "out_of_range_labels": "error"})
    gold = {s.id: s.label for s in load_dataset(gold_cfg).samples}
    relabels = []
    for record in result.records:
        if record["status"] not in ("relabeled", "dropped"):
            continue
        context = record["nodes"].get("context") or {}
        gen = pool.replies.get(context.get("prompt") or "")
        if gen is None:
            continue
        relabels.append({"id": record["id"], "right": record["proposed_label"] == gold[record["id"]],
                         "context_right": context.get("answer") == gold[record["id"]],
                         **{method: response_score(method, gen) for method in SCORES}})
    row: dict[str, Any] = {"dataset": dataset, "noise": noise, "model": server[1], "server": server[0],
                           "samples": result.summary["total"],
                           "relabels": len(relabels), "right": sum(r["right"] for r in relabels),
                           "wall_s": round(wall, 1), "scores": {}}
    for method in SCORES:
        scored = [r for r in relabels if r[method] is not None]
        kept, _ = select_lowest({r["id"]: r[method] for r in relabels}, 0.5)
        kept_set = set(kept)
        kept_right = sum(r["right"] for r in relabels if r["id"] in kept_set)
        row["scores"][method] = {
            "auroc": _round(auroc([r[method] for r in scored if r["right"]], [r[method] for r in scored if not r["right"]])),
            "auroc_context_answer": _round(auroc([r[method] for r in scored if r["context_right"]],
                                                 [r[method] for r in scored if not r["context_right"]])),
            "scored": len(scored), "kept_accuracy": _round(kept_right / len(kept) if kept else None)}
    row["all_relabels_accuracy"] = _round(row["right"] / len(relabels) if relabels else None)
    return row


def _round(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(x, 4)


def to_markdown(rows: list[dict], accuracy: float, sim: bool = True) -> str:
    lines = ["# Selection scores: which separates right relabels from wrong ones", "",
             (f"Simulated experts (robustft.sim, right {accuracy:.0%} of the time, calibration 0.8)" if sim
              else f"Model {rows[0]['model']!r} at {rows[0]['server']}") + ", top "
             f"{TOP_LOGPROBS} logprobs per token. AUROC: the chance a right relabel scores lower than a wrong one. "
             "Kept accuracy: label accuracy of the relabels β = 0.5 selection keeps with that score.", "",
             "| data | relabels (right) | score | AUROC | AUROC vs the context answer | kept accuracy (all) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        for method in SCORES:
            s = row["scores"][method]
            lines.append(f"| {row['dataset'].upper()} noisy{row['noise']} | {row['relabels']} ({row['right']}) | "
                         f"{method} | {s['auroc']} | {s['auroc_context_answer']} | {s['kept_accuracy']} "
                         f"({row['all_relabels_accuracy']}) |")
    lines += ["", "## What these figures can say", "",
              "They measure the simulator, not a language model. robustft.sim draws one confidence level per reply "
              "(with probability 0.8 from the half of the range that matches whether the reply is right, else "
              "from the whole range) and gives every token a log-probability scattered around that level. Its "
              "top alternatives are made from the sampled token's probability alone: the rest of the mass is "
              "split as 1/2, 1/4, 1/8, ... over filler tokens. So in the simulator the per-token entropy is a "
              "fixed function of the sampled token's log-probability, and `entropy` carries the same signal as "
              "`mean_nll`, bent by that function (it flattens out for very unsure tokens); `answer_nll` reads "
              "only the one or two answer tokens, so it sees fewer draws of the same level and is noisier.",
              "",
              "With a real model the three differ in kind: `mean_nll` measures how surprising the sampled tokens "
              "were, `entropy` how spread the model's belief was whatever it sampled (it does not depend on "
              "sampling luck), and `answer_nll` ignores the reasoning. Which separates right from wrong relabels "
              "best on real models is not measured here; `python -m benchmarks.selection_scores --base-url URL "
              "--model NAME` runs the same measurement against a real server.",
              "", "The 'vs the context answer' column uses the context relabeler's own answer as the thing to be "
                  "right, which is what the score is computed from; the main column uses the proposed label "
                  "(the reviewer's, when it was asked)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noise", type=int, default=50, choices=[30, 50, 70])
    parser.add_argument("--accuracy", type=float, default=0.8)
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each dataset")
    parser.add_argument("--base-url", help="a real OpenAI-compatible server instead of robustft.sim")
    parser.add_argument("--model", default="sim-expert", help="the model name it serves")
    args = parser.parse_args(argv)
    server = (args.base_url, args.model) if args.base_url else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="robustft-scores-") as tmp:
        for dataset in ("arc", "fpb"):
            rows.append(measure(dataset, args.noise, args.accuracy, args.limit, Path(tmp), server))
            print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "selection_scores.json").write_text(json.dumps({"accuracy": args.accuracy, "top_logprobs": TOP_LOGPROBS,
                                                               "rows": rows}, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "selection_scores.md").write_text(to_markdown(rows, args.accuracy, server is None), encoding="utf-8")
    print(to_markdown(rows, args.accuracy, server is None))
    return rows


if __name__ == "__main__":
    main()
