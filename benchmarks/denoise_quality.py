"""Denoising quality and speed on the benchmark data, with simulated experts.

For each dataset and noise level in ../shared/data, run `robustft denoise` against `robustft.sim`
(an OpenAI-compatible server on 127.0.0.1 answering from the gold labels at a set accuracy) and
measure what the method promises: label accuracy of the input versus the fine-tuning set, its
size, noise detection precision and recall, model calls and throughput. The paper's reviewer
behaviour (`review: always`) runs beside the default on the 50 % sets, in the same run, so the
two are compared on the same machine and server.

    python -m benchmarks.denoise_quality [--accuracy 0.8] [--limit N] [--quick]

Writes benchmarks/results/denoise_quality.json and .md. The experts are simulated: these figures
say how well the pipeline turns expert answers into labels, not how good any real model is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from robustft.config import load_config
from robustft.data import load_dataset
from robustft.run.runner import denoise
from robustft.inspect.metrics import gold_metrics
from robustft.sim import SimServer

from ._runs import DATA

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def measure(dataset: str, noise: int, review: str, accuracy: float, limit: int | None, workdir: Path) -> dict:
    gold_path = DATA / dataset / "labeled.csv"
    noisy_path = DATA / dataset / f"noisy{noise}.csv"
    out = workdir / f"{dataset}-{noise}-{review}"
    with SimServer(gold_path, accuracy=accuracy, seed=noise) as sim:
        config = load_config(None, {
            "data": {"path": str(noisy_path), "limit": limit, "out_of_range_labels": "keep"},
            "model": {"provider": "openai", "name": "sim-expert", "base_url": sim.base_url},
            "denoise": {"review": review, "concurrency": 32}, "out": str(out)})
        started = time.perf_counter()
        result = denoise(config, progress=False)
        wall = time.perf_counter() - started
    gold_cfg = config.data.model_copy(update={"path": gold_path, "out_of_range_labels": "error"})
    gold = {s.id: s.label for s in load_dataset(gold_cfg).samples}
    m = gold_metrics(result.records, gold, result.summary["task"])
    s = result.summary
    return {
        "dataset": dataset, "noise": noise, "review": review, "samples": s["total"],
        "input_accuracy": round(m["input"]["label_accuracy"], 4),
        "output_accuracy": round(m["fine_tuning_set"]["label_accuracy"], 4),
        "output_size": m["fine_tuning_set"]["samples"],
        "detection_precision": round(m["detection"]["precision"], 4),
        "detection_recall": round(m["detection"]["recall"], 4),
        "relabel_accuracy": round(m["relabel"]["kept_accuracy"] or 0.0, 4),
        "model_calls": s["model_calls"]["total"], "wall_s": round(wall, 1),
        "samples_per_s": round(s["total"] / wall, 1),
    }


def to_markdown(rows: list[dict], accuracy: float) -> str:
    head = ("| data | noise | review | input acc | fine-tuning set acc | size | detect P | detect R | "
            "relabel acc | calls | samples/s |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [f"Simulated experts, {accuracy:.0%} accurate (robustft.sim); robustft denoise with default settings.",
             "", head]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['noise']}% | {r['review']} | {r['input_accuracy']:.1%} | "
                     f"{r['output_accuracy']:.1%} | {r['output_size']} | {r['detection_precision']:.2f} | "
                     f"{r['detection_recall']:.2f} | {r['relabel_accuracy']:.1%} | {r['model_calls']} | "
                     f"{r['samples_per_s']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accuracy", type=float, default=0.8)
    parser.add_argument("--limit", type=int, default=None, help="rows per dataset (default: all)")
    parser.add_argument("--quick", action="store_true", help="only the 50%% sets")
    args = parser.parse_args(argv)
    if not DATA.exists():
        raise SystemExit(f"benchmark data not found at {DATA}")
    plan = [(d, n, "on_disagreement") for d in ("arc", "fpb") for n in ((50,) if args.quick else (30, 50, 70))]
    plan += [(d, 50, "always") for d in ("arc", "fpb")]
    workdir = Path(tempfile.mkdtemp(prefix="robustft-bench-"))
    rows = []
    try:
        for dataset, noise, review in plan:
            row = measure(dataset, noise, review, args.accuracy, args.limit, workdir)
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "denoise_quality.json").write_text(json.dumps({"accuracy": args.accuracy, "rows": rows}, indent=2) + "\n")
    (RESULTS / "denoise_quality.md").write_text(to_markdown(rows, args.accuracy))
    print(to_markdown(rows, args.accuracy))
    return rows


if __name__ == "__main__":
    main()
