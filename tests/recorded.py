"""A small constructed run whose detection and relabel figures are known by hand.

Twelve questions (tests/fakes.py), gold "ABCD"[i % 4]; the given labels of q1, q2, q5, q6 are wrong.

    sample  given gold  base reasoning  checker   context  score  outcome
    q1      A     B     B    B          noisy     B        0.05   relabeled B (fixed)
    q2      A     C     C    C          noisy     D        0.20   relabeled D (still wrong)
    q3      D     D     A    D          noisy     D        0.90   dropped (a right label lost)
    q5      C     B     B    B          noisy     B        1.50   dropped (a wrong label removed)
    q6      A     C     A    A          clean                     kept wrong (missed)
    others  gold  gold  gold gold       clean                     kept right

Detection: TP 3 (q1 q2 q5), FP 1 (q3), FN 1 (q6), TN 7 -> precision 0.75, recall 0.75, F1 0.75.
Relabels: 3 of 4 right (q2 wrong); kept 1 of 2, dropped 2 of 2. Input accuracy 8/12; fine-tuning
set (8 clean + q1 + q2) 8/10 right.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from robustft.run.runner import denoise

from fakes import QUESTIONS, answering, config_for, fake_pool, make_dataset

GOLD = {sid: gold for sid, (_, _, gold) in QUESTIONS.items()}
NOISY = {"q1": "A", "q2": "A", "q5": "C", "q6": "A"}
SCORES = {"q1": 0.05, "q2": 0.2, "q3": 0.9, "q5": 1.5}


def _pick(overrides: dict[str, str]):
    return lambda sid: overrides.get(sid, GOLD[sid])


REPLIES = {
    "base": answering(_pick({"q3": "A", "q6": "A"})),
    "reasoning": answering(_pick({"q6": "A"})),
    "context": answering(_pick({"q2": "D"}), logprob=lambda sid: -SCORES.get(sid, 0.1)),
    "reviewer": answering(_pick({"q2": "D"})),
}


def make_run(tmp_path: Path, replies: dict | None = None, **denoise_cfg):
    """Run the graph on scripted fakes into tmp_path/run; returns (result, fakes)."""
    config = config_for(tmp_path, **denoise_cfg)
    pool, fakes = fake_pool(config, replies or REPLIES)
    result = denoise(config, pool=pool, dataset=make_dataset(NOISY), progress=False, preflight=False,
                     log=lambda msg: None)
    return result, fakes


def write_gold(path: Path, *, with_ids: bool = True, labels: dict[str, str] | None = None) -> Path:
    labels = labels or GOLD
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow((["id"] if with_ids else []) + ["question", "answer", "options"])
        for sid, (question, options, _) in QUESTIONS.items():
            w.writerow(([sid] if with_ids else []) + [question, labels[sid], json.dumps(options)])
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
