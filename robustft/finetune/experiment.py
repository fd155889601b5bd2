"""`robustft run CONFIG`: one experiment of the paper's Table 1 on one dataset.

    run_experiment(load_config(CONFIG)) -> ExperimentResult

From one YAML config (see examples/paper/): denoise the noisy training set with the experts
(`model`), fine-tune `train.model` with LoRA on the result, and evaluate it on
`experiment.test_data`; plus the two baselines that need no other method: the model as it is
(`base`) and LoRA fine-tuning on the noisy labels (`noisy`). Output directory (`out`):

    OUT/denoise/         the denoise run (denoised.jsonl, samples.jsonl, summary.json, ...)
    OUT/base/eval/       the untuned model's test predictions and result
    OUT/sft-noisy/       adapter trained on the noisy labels, and eval/
    OUT/sft-robustft/    adapter trained on denoised.jsonl, and eval/
    OUT/results.json     every test accuracy, the denoise counts, the resolved config
    OUT/results.md       the same as a table

Each step resumes (denoise from its checkpoints, training from its last checkpoint) or is skipped
when it has finished with the same inputs, so running the same command again after a stop goes on
where it was. The fine-tuned and base models are evaluated locally with transformers (greedy, the
question prompt), all three the same way.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..config import ModelConfig, RobustFTConfig, resolve_config_paths
from ..errors import ConfigError
from ..files import write_json, write_text
from ..run.outputs import kept_count
from ..run.rundir import DENOISED

__all__ = ["ExperimentResult", "METHOD_NAMES", "run_experiment", "format_table"]

METHOD_NAMES = {"base": "model as it is (no fine-tuning)", "noisy": "SFT on the noisy labels",
                "robustft": "SFT on the RobustFT output"}
METHOD_DIRS = {"base": "base", "noisy": "sft-noisy", "robustft": "sft-robustft"}
RESULTS_FILE = "results.json"
TABLE_FILE = "results.md"


@dataclass
class ExperimentResult:
    out_dir: Path
    results: dict[str, Any]
    table: str


def _local_model(config: RobustFTConfig) -> ModelConfig:
    """The model to fine-tune, as a local transformers model for evaluation."""
    t = config.train
    return ModelConfig(provider="transformers", name=t.model, device="cpu" if t.device == "cpu" else "auto",
                       dtype=t.dtype)


def _eval_done(eval_dir: Path, *, data: Path, model: str, adapter: str | None, config: RobustFTConfig) -> dict | None:
    from .evaluate import RESULT_FILE

    path = eval_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    same = (previous.get("data") == str(data) and previous.get("model") == model
            and previous.get("adapter") == adapter and previous.get("eval") == config.eval.model_dump(mode="json")
            and previous.get("limit") == config.experiment.test_limit
            and previous.get("instruction") == config.data.instruction)
    return previous if same else None


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| method | training set | test accuracy |", "| --- | --- | --- |"]
    for r in rows:
        trained = "-" if r["train_samples"] is None else f"{r['train_samples']} samples"
        lines.append(f"| {r['name']} | {trained} | {r['accuracy']:.4f} ({r['correct']}/{r['total']}) |")
    return "\n".join(lines)


def run_experiment(config: RobustFTConfig, *, config_path: str | Path | None = None, out: str | Path | None = None,
                   progress: bool = True, log: Callable[[str], None] | None = None) -> ExperimentResult:
    """Run the experiment `config` describes. Its relative paths are read as `load_config` reads
    them; a configuration built in code gives `config_path`, the file they are relative to."""
    from .evaluate import evaluate
    from ..run.runner import denoise
    from .train import train

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    config = resolve_config_paths(config, config_path)
    out_dir = Path(out) if out is not None else config.out
    if out_dir is None:
        raise ConfigError("no output directory: set `out`, the experiment directory")
    if config.data.path is None:
        raise ConfigError("no training data: set data.path (the noisy training set) in the config")
    test_data = config.experiment.test_data
    if test_data is None:
        raise ConfigError("no test data: set experiment.test_data (a labeled CSV/JSONL) in the config")
    if not config.train.model:
        raise ConfigError("no model to fine-tune: set train.model (a local model directory or hub name)")
    methods = list(dict.fromkeys(config.experiment.methods))
    if not methods:
        raise ConfigError("experiment.methods is empty; list some of: base, noisy, robustft")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    steps = len(methods) + sum(m != "base" for m in methods) + ("robustft" in methods)
    step = 0

    def stage(text: str) -> None:
        nonlocal step
        step += 1
        log(f"[{step}/{steps}] {text}")

    eval_config = config.model_copy(update={"model": _local_model(config)})
    denoise_summary = None
    if "robustft" in methods:
        stage(f"denoise {config.data.path} with {config.model.name} -> {out_dir / 'denoise'}")
        result = denoise(config.model_copy(update={"out": out_dir / "denoise"}), progress=progress)
        denoise_summary = {k: result.summary.get(k, 0)
                           for k in ("total", "clean", "noisy", "relabeled", "confirmed", "dropped", "failed")}
        d = denoise_summary
        log(f"      {d['total']} samples: {d['clean']} clean, {d['relabeled']} relabeled (label changed), "
            f"{d['confirmed']} confirmed, {d['dropped']} dropped, {d['failed']} failed -> {kept_count(d)} in "
            "denoised.jsonl")

    rows = []
    for method in methods:
        folder = out_dir / METHOD_DIRS[method]
        adapter = None
        train_samples = None
        if method != "base":
            data = config.data.path if method == "noisy" else out_dir / "denoise" / DENOISED
            stage(f"fine-tune {config.train.model} on {data} -> {folder}")
            trained = train(config, data=data, model=config.train.model, out=folder, progress=progress)
            if trained.skipped:
                log(f"      already trained: {folder}")
            elif trained.summary.get("train_loss") is not None:
                log(f"      {trained.summary['steps']} steps on {trained.summary['samples']} samples, mean loss "
                    f"{trained.summary['train_loss']:.4f}")
            adapter = str(folder)
            train_samples = trained.summary["samples"]
        eval_dir = folder / "eval"
        stage(f"evaluate {METHOD_NAMES[method]} on {test_data}")
        done = _eval_done(eval_dir, data=test_data, model=str(config.train.model), adapter=adapter, config=config)
        if done is not None and (method == "base" or trained.skipped):
            log(f"      already evaluated: {eval_dir}")
            scored = done
        else:
            scored = evaluate(eval_config, data=test_data, adapter=adapter, out=eval_dir,
                              limit=config.experiment.test_limit, progress=progress).result
        log(f"      accuracy {scored['accuracy']:.4f} ({scored['correct']}/{scored['total']})")
        rows.append({"method": method, "name": METHOD_NAMES[method], "accuracy": scored["accuracy"],
                     "correct": scored["correct"], "total": scored["total"], "unanswered": scored["unanswered"],
                     "failed": scored["failed"], "train_samples": train_samples, "adapter": adapter,
                     "eval_dir": str(eval_dir)})

    table = format_table(rows)
    results = {"methods": rows, "denoise": denoise_summary, "train_data": str(config.data.path),
               "test_data": str(test_data), "model": config.train.model, "denoise_model": config.model.name,
               "wall_time_s": round(time.monotonic() - started, 2), "robustft_version": __version__,
               "config": config.public_dict()}
    write_json(out_dir / RESULTS_FILE, results)
    write_text(out_dir / TABLE_FILE, f"Test accuracy on {test_data}\n\n{table}\n")
    return ExperimentResult(out_dir=out_dir, results=results, table=table)
