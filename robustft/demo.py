"""`robustft demo`: the whole method, offline, on a bundled dataset whose right answers are known.

The experts are simulated (`robustft.sim`): an OpenAI-compatible server on a free loopback port that
answers from the gold file at a chosen accuracy. Everything else (the graph, Chroma, the real
MiniLM embeddings, selection, the outputs) is what a real run uses.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from .config import load_config
from .data import load_dataset
from .errors import UserError
from .run.runner import denoise
from .inspect.metrics import gold_metrics

DEMO_DIR = Path(__file__).parent / "demo_data"
DEMO_DATA = DEMO_DIR / "demo.csv"
DEMO_GOLD = DEMO_DIR / "demo_gold.csv"
MARKER = ".robustft-demo"


def _fresh_dir(out: Path) -> None:
    """The demo starts over each time, but only ever deletes a directory it made itself."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise UserError(f"{out} exists and is not a demo run directory; give `out` a new or empty directory")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `robustft demo`; safe to delete\n", encoding="utf-8")


def _shell_word(value: object) -> str:
    """`value` as one word of a POSIX shell command line, quoted only when it needs it."""
    return shlex.quote(str(value))


def robustft_command() -> str:
    """How to run robustft from the shell the demo was started in: `robustft` when that name finds
    this program on PATH, else its path (`.venv/bin/robustft` after `make demo`), else `python -m`."""
    found = shutil.which("robustft")
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if program is not None and program.name == "robustft" and program.exists():
        if found and Path(found).resolve() == program.resolve():
            return "robustft"
        relative = os.path.relpath(program.resolve())
        return _shell_word(relative if not relative.startswith("..") else program.resolve())
    if found:
        return "robustft"
    return f"{_shell_word(sys.executable)} -m robustft"


def _a_relabeled_id(records: list[dict]) -> str:
    return next((r["id"] for r in records if r["status"] == "relabeled"), records[0]["id"])


def run_demo(out: Path, *, accuracy: float = 0.8, progress: bool = True, seed: int = 0) -> str:
    from .sim import SimServer

    _fresh_dir(out)
    with SimServer(DEMO_GOLD, accuracy=accuracy, seed=seed) as server:
        base_url = server.base_url
        config = load_config(None, {"data.path": str(DEMO_DATA), "out": str(out), "model.provider": "openai",
                                    "model.name": "sim-expert", "model.base_url": base_url,
                                    "denoise.concurrency": 16})
        result = denoise(config, progress=progress)
    gold = {s.id: s.label for s in load_dataset(config.data.model_copy(update={"path": DEMO_GOLD})).samples}
    records = result.records
    s = result.summary
    m = gold_metrics(records, gold, result.summary["task"])
    n_wrong, caught = m["input"]["wrong"], m["detection"]["true_positive"]
    input_acc, kept_acc = m["input"]["label_accuracy"], m["fine_tuning_set"]["label_accuracy"]
    kept = m["fine_tuning_set"]["samples"]
    q = _shell_word
    rf = robustft_command()
    return "\n".join([
        "",
        f"robustft demo: {s['total']} multiple-choice questions written for this project, {n_wrong} of them "
        f"with a deliberately wrong label.",
        f"The experts were SIMULATED: robustft.sim served an OpenAI-compatible API at {base_url} and answered "
        f"from the known answers, right {accuracy:.0%} of the time. No real model was called.",
        "",
        f"What the run found: {s['noisy']} samples flagged as noisy ({caught} of the {n_wrong} wrong labels "
        f"among them), {s['clean']} kept as clean, {s['relabeled']} relabeled to a new label and kept, "
        f"{s.get('confirmed', 0)} relabeled to their given label (confirmed, kept unchanged), {s['dropped']} "
        f"relabels dropped by entropy selection, {s['failed']} failed.",
        f"Label accuracy: {input_acc:.1%} in the input, {kept_acc:.1%} in the fine-tuning set ({kept} samples).",
        "",
        f"Outputs in {out}/:  denoised.jsonl (the fine-tuning set), samples.jsonl (each sample's path through "
        "the agents), summary.json (counts, calls, config).",
        f"Look closer:  {rf} trace {q(out)} {q(_a_relabeled_id(records))}   (one sample's path through the agents)",
        f"              {rf} report {q(out)} --gold {q(DEMO_GOLD)}   (an HTML report with plots)",
        f"              {rf} export {q(out)}   (the fine-tuning set as a CSV like the input)",
        "",
        "To do the same with a real model, serve it (for example `vllm serve meta-llama/Llama-3.1-8B-Instruct`) "
        "and run:",
        f"  {rf} denoise --data {q(DEMO_DATA)} --model meta-llama/Llama-3.1-8B-Instruct "
        "--base-url http://127.0.0.1:8000/v1 --out runs/real",
    ])
