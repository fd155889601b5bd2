"""Ablations: the method with one part switched off, as in the paper's Table 3, run side by side.

Each switch is `denoise.ablate: [...]` in the config; `robustft ablate` runs a set of variants of
one dataset and prints one table. What each switch does (robustft/graph/build.py, the runner):

    full          base -> reasoning -> checker -> (noisy) context -> reviewer, then selection
    no-reasoning  (`reasoning`) no reasoning expert: the checker compares the base answer alone with
                  the label, and the reviewer is shown the base answer in the reasoning answer's place
    no-checker    (`checker`) the checker node flags every sample noisy, so every sample is relabeled;
                  the context examples are then drawn from all samples with their given labels
    no-context    (`context`) no context relabeler and no reviewer (it weighs the context answer):
                  a noisy sample's proposed label is the reasoning expert's answer, scored by that
                  answer's uncertainty; no clean index is built
    no-reviewer   (`reviewer`) the context relabeler's answer is the proposed label
    no-selection  (`selection`) every relabel is kept, whatever its score

Variants can be combined with '+', e.g. `no-reviewer+no-selection`. Every variant is a complete
run in DIR/<variant>/ (resumable like any `robustft denoise` run). All variants share one response
store, DIR/responses.sqlite (robustft.backends.store): a prompt that an earlier variant already sent
(every base and reasoning prompt, most context prompts) is answered from the store, so it is paid
once, and the variants see the same draws, so their differences come from the switch, not from
sampling noise. The table goes to the terminal, DIR/ablation.json and DIR/ablation.md.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..config import RobustFTConfig
from ..errors import ConfigError
from ..files import write_json, write_text
from .metrics import GoldLabels, match_gold, pct, run_gold_metrics
from ..run.outputs import kept_count
from ..run.rundir import STORE, load_run

SWITCHES = {"reasoning": "no-reasoning", "checker": "no-checker", "context": "no-context",
            "reviewer": "no-reviewer", "selection": "no-selection"}
VARIANTS: dict[str, list[str]] = {"full": [], **{name: [switch] for switch, name in SWITCHES.items()}}


def parse_variants(text: str | list[str] | None) -> dict[str, list[str]]:
    """'full,no-checker,no-reviewer+no-selection' -> {name: ablate list}."""
    if text is None:
        return dict(VARIANTS)
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise ConfigError("`variants` is empty; name at least one of: " + ", ".join(VARIANTS))
    out: dict[str, list[str]] = {}
    for name in names:
        ablate: list[str] = []
        for part in name.split("+"):
            part = part.strip()
            if part not in VARIANTS:
                raise ConfigError(f"`variants`: unknown variant {part!r}; use {', '.join(VARIANTS)} "
                                  "(combine switches with '+', e.g. no-reviewer+no-selection)")
            ablate += [a for a in VARIANTS[part] if a not in ablate]
        if name in out:
            raise ConfigError(f"`variants`: {name!r} is listed twice")
        out[name] = ablate
    return out


@dataclass
class VariantResult:
    name: str
    ablate: list[str]
    out_dir: Path
    summary: dict[str, Any]
    calls_paid: int
    calls_reused: int
    metrics: dict[str, Any] | None = None

    def row(self) -> dict[str, Any]:
        s = self.summary
        row = {"variant": self.name, "ablate": self.ablate, "dir": str(self.out_dir), "total": s["total"],
               "flagged": s["noisy"], "clean": s["clean"], "relabeled": s["relabeled"],
               "confirmed": s.get("confirmed", 0), "dropped": s["dropped"],
               "failed": s["failed"], "fine_tuning_set": kept_count(s),
               "calls": s["model_calls"]["total"], "calls_paid": self.calls_paid, "calls_reused": self.calls_reused}
        if self.metrics:
            m = self.metrics
            row.update(precision=m["detection"]["precision"], recall=m["detection"]["recall"],
                       f1=m["detection"]["f1"], relabel_accuracy=m["relabel"]["accuracy"],
                       kept_relabel_accuracy=m["relabel"]["kept_accuracy"],
                       input_accuracy=m["input"]["label_accuracy"], ft_accuracy=m["fine_tuning_set"]["label_accuracy"])
        return row


@dataclass
class AblationResult:
    out_dir: Path
    variants: list[VariantResult]
    gold: str | None

    def rows(self) -> list[dict[str, Any]]:
        return [v.row() for v in self.variants]


def variant_config(config: RobustFTConfig, out_dir: Path, name: str, ablate: list[str]) -> RobustFTConfig:
    cfg = config.model_copy(deep=True)
    cfg.denoise.ablate = list(ablate)  # validated on assignment
    cfg.out = out_dir / name
    return cfg


def run_ablation(config: RobustFTConfig, variants: dict[str, list[str]], out_dir: str | Path, *,
                 gold: str | Path | None = None, pool=None, dataset=None, progress: bool = True,
                 preflight: bool = True, log: Callable[[str], None] | None = None) -> AblationResult:
    """Run each variant of `config` into out_dir/<name>/, sharing out_dir/responses.sqlite.

    `pool` (a ModelPool) and `dataset` may be given (tests inject scripted models this way); by
    default each run reads `config.data`. Any `denoise.ablate` in `config` is replaced by each
    variant's own.
    """
    from ..backends.store import ResponseStore
    from ..run.runner import DenoiseRun

    out = Path(out_dir)
    if dataset is None and config.data.path is None:
        raise ConfigError("no data: set data.path to a file, a folder or a hub name")
    if gold is not None and not Path(gold).exists():
        raise ConfigError(f"{gold}: gold file not found; give the file with the correct labels as `gold`")
    say = log or (lambda msg: print(msg, file=sys.stderr))
    out.mkdir(parents=True, exist_ok=True)
    store = ResponseStore(out / STORE)
    configs = {name: variant_config(config, out, name, ablate) for name, ablate in variants.items()}

    async def run_all() -> list[tuple[str, Any, dict]]:
        done = []
        for name, cfg in configs.items():
            say(f"--- variant {name}" + (f" (ablate: {', '.join(cfg.denoise.ablate)})" if cfg.denoise.ablate else ""))
            result = await DenoiseRun(cfg, pool=pool, dataset=dataset, store=store, progress=progress,
                                      preflight=preflight, log=say).run()
            this_run = result.summary["this_run"]
            done.append((name, result, {"paid": this_run["calls_paid"] + this_run.get("preflight_calls", 0),
                                        "reused": this_run["calls_from_store"]}))
        return done

    try:
        finished = asyncio.run(run_all())
    finally:
        store.close()
    results = []
    gold_cache: dict[str, GoldLabels] = {}
    for name, res, stats in finished:
        metrics = None
        if gold is not None:
            run = load_run(res.out_dir)
            key = json.dumps([r["id"] for r in run.records])
            if key not in gold_cache:
                gold_cache[key] = match_gold(gold, run)
            metrics = run_gold_metrics(run, gold_cache[key])
        results.append(VariantResult(name, variants[name], res.out_dir, res.summary,
                                     stats["paid"], stats["reused"], metrics))
    ablation = AblationResult(out, results, str(gold) if gold else None)
    write_ablation(ablation)
    return ablation


def _cell(value: Any) -> str:
    if isinstance(value, float) or value is None:
        return pct(value)
    return str(value)


def table_columns(with_gold: bool) -> list[tuple[str, str]]:
    cols = [("variant", "variant"), ("flagged", "flagged"), ("relabeled", "relabeled"), ("dropped", "dropped"),
            ("failed", "failed"), ("fine_tuning_set", "FT set")]
    if with_gold:
        cols += [("precision", "precision"), ("recall", "recall"), ("f1", "F1"), ("relabel_accuracy", "relabel acc"),
                 ("input_accuracy", "input acc"), ("ft_accuracy", "FT acc")]
    cols += [("calls", "calls"), ("calls_paid", "paid")]
    return cols


def format_table(result: AblationResult, markdown: bool = False) -> str:
    cols = table_columns(result.gold is not None)
    rows = [[_cell(r.get(k)) for k, _ in cols] for r in result.rows()]
    heads = [h for _, h in cols]
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(" --- " for _ in heads) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([fmt(heads), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


LEGEND = ("flagged: samples the checker called noisy; FT set: samples in the fine-tuning set (denoised.jsonl); "
          "precision/recall/F1: of the noise detection, where positive = the given label is wrong; relabel acc: "
          "proposed labels equal to gold; input/FT acc: label accuracy of the input and of the fine-tuning set; "
          "calls: model calls the run made; paid: calls that reached the model (not answered from the shared response "
          "store), including the connection check at the start of each run that needed one.")


def write_ablation(result: AblationResult) -> None:
    payload = {"gold": result.gold, "store": str(result.out_dir / STORE), "variants": result.rows(),
               "metrics": {v.name: v.metrics for v in result.variants if v.metrics}}
    write_json(result.out_dir / "ablation.json", payload)
    md = ["# Ablation", "", f"Data: {result.variants[0].summary.get('data') if result.variants else ''}",
          *( [f"Gold labels: {result.gold}"] if result.gold else []), "", format_table(result, markdown=True), "",
          LEGEND, ""]
    write_text(result.out_dir / "ablation.md", "\n".join(md))
