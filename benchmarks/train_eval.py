"""Does fine-tuning on robustft's output beat fine-tuning on the noisy labels? A small, honest check.

On ../shared/data/fpb, one small model is fine-tuned three times with `robustft train`. The
settings are the same each time and only the labels differ:

- the noisy-50 labels (`noisy50.csv`, half of them wrong),
- robustft's output: `robustft denoise` on noisy50.csv with simulated experts (`robustft.sim`, right
  80 % of the time), i.e. `denoised.jsonl`,
- the gold labels (`labeled.csv`): the ceiling.

Each adapter is scored on `test.csv` with `robustft eval` (local transformers, greedy). The script
also reports each training set's label accuracy against gold, the majority-class rate of the test
set, and the untrained model.

The model is built here, offline, and is no language model. It is `tests/tiny_model.py`'s
two-layer random Llama (hidden size 64) with its BPE tokenizer trained on the training questions.
Its output head is scaled up 16x: a random head with the usual 0.02 init, after the final RMSNorm,
cannot produce logits large enough for a confident answer. TRL does not train LoRA on the output
head, so a LoRA adapter alone could never fix that. LoRA (all linear layers) then learns the task
from scratch, which needs a higher learning rate and more epochs than the paper's 1e-4 and 2 (set
below). What it learns is word-level sentiment cues, not language understanding. The figures
test the pipeline and the direction of the effect, not the paper's numbers.

    python -m benchmarks.train_eval [--limit N] [--epochs 4] [--seeds 42] [--accuracy 0.8]

Writes benchmarks/results/train_eval.json and train_eval.md. About 5-8 minutes on 2 CPU cores
for the full data (1585 training rows, 303 test rows) and one seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from robustft.config import load_config
from robustft.data import load_dataset
from robustft.finetune.evaluate import evaluate
from robustft.run.runner import denoise
from robustft.sim import SimServer
from robustft.finetune.train import load_training_set, quiet_libraries, train

from ._runs import DATA as SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA / "fpb"
RESULTS = Path(__file__).parent / "results"
HEAD_SCALE = 16.0
TRAIN = {"lora_r": 16, "lora_alpha": 32, "learning_rate": 3e-3, "batch_size": 16, "gradient_accumulation_steps": 1,
         "max_length": 512, "logging_steps": 20, "save_steps": 100000, "warmup_ratio": 0.1, "device": "cpu"}
EVAL = {"max_tokens": 10, "batch_size": 64}


def build_bench_model(path: Path, questions: list[str]) -> Path:
    """The tiny random Llama with a tokenizer fitted to `questions` and its output head scaled."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.tiny_model import build_tiny_model  # test support: run from the repository root

    source = build_tiny_model(path.parent / "tiny-source", vocab_texts=questions)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source)
    with torch.no_grad():
        model.lm_head.weight.mul_(HEAD_SCALE)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def label_accuracy(config, path: Path, gold: dict[str, str]) -> tuple[float, int]:
    dataset = load_training_set(config.data, path)
    return sum(s.label == gold[s.id] for s in dataset.samples) / len(dataset.samples), len(dataset.samples)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="training rows (default: all 1585)")
    parser.add_argument("--test-limit", type=int, default=None, help="test rows (default: all 303)")
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="training seeds (default: 42)")
    parser.add_argument("--accuracy", type=float, default=0.8, help="how often the simulated experts are right")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    args = parser.parse_args(argv)
    if not DATA.exists():
        raise SystemExit(f"benchmark data not found at {DATA}")
    quiet_libraries()
    started = time.perf_counter()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="robustft-bench-train-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        base = load_config(None, {"data": {"limit": args.limit}, "train": {**TRAIN, "epochs": args.epochs},
                                  "eval": EVAL})
        gold_ds = load_dataset(base.data, DATA / "labeled.csv")
        gold = {s.id: s.label for s in gold_ds.samples}
        model = build_bench_model(workdir / "model", [s.question for s in gold_ds.samples])

        t = time.perf_counter()
        with SimServer(DATA / "labeled.csv", accuracy=args.accuracy, seed=50) as sim:
            config = load_config(None, {
                "data": {"path": str(DATA / "noisy50.csv"), "limit": args.limit},
                "model": {"provider": "openai", "name": "sim-expert", "base_url": sim.base_url},
                "denoise": {"concurrency": 32}, "out": str(workdir / "denoise")})
            summary = denoise(config, progress=False).summary
        denoise_s = time.perf_counter() - t
        print(f"denoise: {summary['total']} samples -> {summary['clean']} clean + {summary['relabeled']} relabeled "
              f"in {denoise_s:.0f} s", flush=True)

        sets = {"noisy50": DATA / "noisy50.csv", "robustft": workdir / "denoise" / "denoised.jsonl",
                "gold": DATA / "labeled.csv"}
        test = load_dataset(base.data.model_copy(update={"limit": args.test_limit}), DATA / "test.csv")
        majority_label, majority_n = Counter(s.label for s in test.samples).most_common(1)[0]
        untrained = evaluate(base, data=DATA / "test.csv", model=str(model), limit=args.test_limit, write=False,
                             progress=False).result
        rows = []
        for name, path in sets.items():
            label_acc, size = label_accuracy(base, path, gold)
            runs = []
            for seed in args.seeds:
                cfg = base.model_copy(update={"train": base.train.model_copy(update={"seed": seed})})
                t = time.perf_counter()
                trained = train(cfg, data=path, model=str(model), out=workdir / f"sft-{name}-{seed}", progress=False)
                train_s = time.perf_counter() - t
                evaluated = evaluate(cfg, data=DATA / "test.csv", model=str(model),
                                     adapter=workdir / f"sft-{name}-{seed}", limit=args.test_limit, write=False,
                                     progress=False)
                scored = evaluated.result
                predicted = Counter(str(p["prediction"]) for p in evaluated.predictions)
                runs.append({"seed": seed, "test_accuracy": round(scored["accuracy"], 4),
                             "correct": scored["correct"], "total": scored["total"],
                             "unanswered": scored["unanswered"], "steps": trained.summary["steps"],
                             "first_loss": trained.summary["first_loss"], "last_loss": trained.summary["last_loss"],
                             "train_s": round(train_s, 1),
                             "predicted": dict(sorted(predicted.items()))})
                print(f"{name} seed {seed}: test accuracy {scored['accuracy']:.4f} "
                      f"({scored['correct']}/{scored['total']}), trained in {train_s:.0f} s", flush=True)
            accs = [r["test_accuracy"] for r in runs]
            rows.append({"training_set": name, "size": size, "label_accuracy": round(label_acc, 4),
                         "test_accuracy_mean": round(statistics.mean(accs), 4),
                         "test_accuracy_spread": round(max(accs) - min(accs), 4), "runs": runs})
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "dataset": "fpb", "train_rows": len(gold_ds.samples), "test_rows": len(test.samples),
        "expert_accuracy": args.accuracy, "denoise": {k: summary[k] for k in
                                                      ("total", "clean", "noisy", "relabeled", "dropped", "failed")},
        "denoise_s": round(denoise_s, 1), "model": {"base": "tests/tiny_model.py tiny Llama (2 layers, hidden 64)",
                                                    "vocab_fitted_to": "training questions",
                                                    "output_head_scale": HEAD_SCALE},
        "train": {**TRAIN, "epochs": args.epochs, "seeds": args.seeds}, "eval": EVAL,
        "majority_class": {"label": majority_label, "test_accuracy": round(majority_n / len(test.samples), 4)},
        "untrained_test_accuracy": round(untrained["accuracy"], 4), "rows": rows,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_eval.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "train_eval.md").write_text(to_markdown(result), encoding="utf-8")
    print(to_markdown(result))
    return result


def to_markdown(r: dict) -> str:
    seeds = r["train"]["seeds"]
    lines = [
        f"FPB: one tiny model (random 2-layer Llama, built offline) fine-tuned with `robustft train` "
        f"(LoRA r={r['train']['lora_r']}, lr {r['train']['learning_rate']}, {r['train']['epochs']:g} epochs, "
        f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}) on three label sets of the same {r['train_rows']} "
        f"questions. Test accuracy from `robustft eval` on {r['test_rows']} test questions. The denoise step "
        f"used simulated experts, right {r['expert_accuracy']:.0%} of the time.",
        "",
        "| training labels | samples | label accuracy | test accuracy |",
        "|---|---|---|---|",
    ]
    names = {"noisy50": "noisy-50 (input)", "robustft": "robustft output", "gold": "gold (ceiling)"}
    for row in r["rows"]:
        spread = f" (spread {row['test_accuracy_spread']:.1%})" if len(row["runs"]) > 1 else ""
        lines.append(f"| {names[row['training_set']]} | {row['size']} | {row['label_accuracy']:.1%} | "
                     f"{row['test_accuracy_mean']:.1%}{spread} |")
    lines += ["", f"References: always answering the majority class ({r['majority_class']['label']}) scores "
                  f"{r['majority_class']['test_accuracy']:.1%}; the untrained model scores "
                  f"{r['untrained_test_accuracy']:.1%}. Total wall time {r['wall_s']:.0f} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
