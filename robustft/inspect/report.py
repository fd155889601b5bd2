"""`robustft report DIR [--gold FILE]`: what a run did, as a page a person can read offline.

Writes into the run directory:

- report.html: self-contained (CSS inline, figures embedded as base64 PNG; opens without network),
  each figure with a plain-language explanation, the counts, the gold-label figures when --gold is
  given (robustft.inspect.metrics), and a table of example relabels;
- plots/*.png: the same figures (outcomes, scores, labels, roles, and gold when given);
- report.json: the numbers behind it all.

and returns a short table for the terminal. The jobs are split: `counts` (the numbers),
`figures` (the plots), `report_html` with templates/report.html.jinja (the page), this module
(putting them together, and the terminal table).
"""

from __future__ import annotations

import contextlib

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agents.cost import describe as describe_cost
from ..files import write_json, write_text
from ..run.outputs import FINAL_STATUSES
from ..run.rundir import RunFiles, load_run
from .counts import counts_of, label_matrix, role_agreement
from .figures import fig_gold, fig_labels, fig_outcomes, fig_roles, fig_scores, save_png
from ..run.dryrun import comparison_line
from .metrics import describe_gold, match_gold, run_gold_comparer, run_gold_metrics
from .ranking import describe_ranking, gold_wrong, trust_ranking
from .report_html import render_html

__all__ = ["Report", "build_report", "report", "counts_of", "role_agreement", "label_matrix"]


@dataclass
class Report:
    html_path: Path
    plots: dict[str, Path]
    data: dict[str, Any]
    text: str
    figures: dict[str, str] = field(default_factory=dict)  # name -> base64 PNG


def format_text(run: RunFiles, counts: dict[str, int], metrics: dict[str, Any] | None,
                html_path: Path, plots: dict[str, Path], ranking: dict[str, Any] | None = None) -> str:
    total = counts["total"] or 1
    sel = run.selection
    lines = [f"robustft report: {run.dir} ({counts['total']} samples, {run.task}"
             + (f", beta {sel.get('beta')}" if sel else "") + ")",
             f"  {'outcome':<14}{'samples':>8}{'share':>8}"]
    for st in FINAL_STATUSES:
        lines.append(f"  {st:<14}{counts[st]:>8}{100 * counts[st] / total:>7.1f}%")
        if st == "dropped" and counts.get("unreadable"):
            lines.append(f"    {'unreadable':<12}{counts['unreadable']:>8}   (no answer in the replies, even re-asked)")
    lines.append(f"  flagged noisy {counts['noisy']}; fine-tuning set {counts['fine_tuning_set']} samples"
                 + (f" ({counts['human']} decided by a person)" if counts["human"] else ""))
    lines.append(f"  {comparison_line(run.task, run.config)}")
    if run.summary.get("cost"):
        lines.append(f"  cost: {describe_cost(run.summary['cost'])}")
    if metrics:
        lines += describe_gold(metrics)
    if ranking:
        lines += describe_ranking(ranking)
    lines.append(f"report: {html_path}")
    lines.append(f"plots:  {', '.join(str(p) for p in plots.values())}")
    return "\n".join(lines)


def build_report(run_dir: str | Path, gold_path: str | Path | None = None) -> Report:
    run = load_run(run_dir)
    gold = match_gold(gold_path, run) if gold_path is not None else None
    same = run_gold_comparer(run, gold) if gold else None  # the run's own comparison (by meaning when open)
    metrics = run_gold_metrics(run, gold, same) if gold else None
    labels = gold.labels if gold else None
    # open-ended runs with trust scores: how well the score ranks the wrong given responses first
    ranking = (trust_ranking(run.records, gold_wrong(run.records, gold.labels, run.task, run.tolerance, same))
               if gold else None)
    counts = counts_of(run)
    roles = role_agreement(run, labels)
    plot_dir = run.dir / "plots"
    made = not plot_dir.exists()
    plot_dir.mkdir(exist_ok=True)
    try:
        figs = {"outcomes": fig_outcomes(counts)}
        if metrics:
            figs["gold"] = fig_gold(metrics)
        figs["scores"] = fig_scores(run, labels, same)
        figs["labels"] = fig_labels(label_matrix(run))
        if roles:
            figs["roles"] = fig_roles(roles, labels is not None)
        plots: dict[str, Path] = {}
        encoded: dict[str, str] = {}
        for name, fig in figs.items():
            plots[name] = plot_dir / f"{name}.png"
            encoded[name] = save_png(fig, plots[name])
        for name in ("gold", "roles"):  # from an earlier report (with --gold): it would no longer match report.html
            stale = plot_dir / f"{name}.png"
            if name not in figs and stale.exists():
                stale.unlink()
        html_path = run.dir / "report.html"
        write_text(html_path, render_html(run, counts, encoded, metrics, labels, roles, ranking, same=same))
        data = {"run_dir": str(run.dir), "counts": counts, "selection": run.selection, "roles": roles,
                "gold_metrics": metrics, "trust_ranking": ranking,
                "plots": {k: str(v) for k, v in plots.items()}}
        write_json(run.dir / "report.json", data)
    except BaseException:
        if made:  # a full disk: no empty plots/ left behind (each file is written whole or not at all)
            with contextlib.suppress(OSError):
                plot_dir.rmdir()
        raise
    return Report(html_path=html_path, plots=plots, data=data,
                  text=format_text(run, counts, metrics, html_path, plots, ranking), figures=encoded)


def report(run_dir: str | Path, gold: str | Path | None = None) -> str:
    """What `robustft report` prints."""
    return build_report(run_dir, gold).text
