"""report.html: the page `robustft report` writes, from templates/report.html.jinja (and its CSS,
templates/report.css). This module gathers what the page shows; the template says how."""

from __future__ import annotations

import datetime as _dt
import os.path
from functools import lru_cache
from typing import Any

from ..agents.cost import describe as describe_cost
from ..answers import answers_match, option_text
from ..run.outputs import FINAL_STATUSES
from ..run.rundir import RunFiles
from .counts import ROLE_NAMES, ROLES
from .figures import COLORS
from .metrics import pct

__all__ = ["render_html"]

STATUS_TEXT = {"clean": "clean: the experts agreed with the given label; kept as it is",
               "relabeled": "relabeled: flagged noisy, given a new label confident enough to keep",
               "confirmed": "confirmed: flagged noisy, but relabeled to its given label; kept unchanged",
               "dropped": "dropped: flagged noisy, and either the new label was too uncertain (selection) or no "
                          "answer could be read from the replies (unreadable); left out",
               "failed": "failed: a model or embedding call kept failing; left out (running again retries it)"}
FIGURE_ORDER = ("outcomes", "gold", "scores", "labels", "roles")


@lru_cache(maxsize=1)
def _template():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(os.path.join(os.path.dirname(__file__), "templates")),
                      autoescape=select_autoescape(["jinja", "html"], default=True),
                      trim_blocks=True, lstrip_blocks=True,
                      finalize=lambda value: "" if value is None else value)
    return env.get_template("report.html.jinja")


def _short(text: Any, n: int) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= n else s[:n - 1] + "…"


def _model_line(run: RunFiles) -> str:
    model = run.config.model
    name = model.name or "(unknown model)"
    where = f" at {model.base_url}" if model.base_url else f" ({model.provider})" if model.provider else ""
    other = [f"{role}: {o.name}" for role, o in run.config.roles.items() if o.name]
    return name + where + (f"; per role {', '.join(other)}" if other else "")


def _common_prefix(texts: list[str], minimum: int = 20) -> str:
    """A lead-in every question shares (e.g. an instruction), cut at a word boundary; '' if short."""
    if len(texts) < 2:
        return ""
    prefix = os.path.commonprefix(texts)
    cut = max(prefix.rfind(" "), prefix.rfind("\n"))
    prefix = prefix[:cut + 1] if cut >= 0 else ""
    return prefix if len(prefix.strip()) >= minimum else ""


def _examples(run: RunFiles, gold: dict[str, str] | None, prefix: str = "", same=None, limit_kept: int = 6,
              limit_dropped: int = 4) -> list[dict[str, Any]]:
    """Relabels that changed the label first (most certain first), then those that confirmed it."""
    def confirmed(r: dict) -> bool:
        if r["status"] in ("relabeled", "confirmed"):
            return r["status"] == "confirmed"
        return answers_match(str(r.get("proposed_label")), str(r.get("original_label")), run.task, run.tolerance)

    def key(r: dict) -> tuple:
        return (confirmed(r), r.get("score") is None, r.get("score") or 0.0)

    kept = sorted((r for r in run.records if r["status"] in ("relabeled", "confirmed")), key=key)[:limit_kept]
    dropped = sorted((r for r in run.records if r["status"] == "dropped" and r.get("reason") != "unreadable"),
                     key=key)[:limit_dropped]
    rows = []
    for r in kept + dropped:
        nodes = r["nodes"]
        g = gold.get(r["id"]) if gold is not None else None
        rows.append({
            "id": r["id"], "question": _short(str(r.get("question") or "")[len(prefix):], 140),
            "question_full": str(r.get("question") or ""),
            "options": r.get("options"), "given": r.get("original_label"), "proposed": r.get("proposed_label"),
            "confirmed": confirmed(r),
            # False: the role was not asked (the reviewer, when the two answers agreed)
            "answers": [False if (nodes.get(role) or {}).get("skipped") else (nodes.get(role) or {}).get("answer", "–")
                        for role in ROLES],
            "score": "n/a" if r.get("score") is None else f"{r['score']:.3f}",
            "kept": r["status"] in ("relabeled", "confirmed"),
            "gold": g,
            "gold_right": g is not None and (same(r.get("proposed_label"), g, r["id"]) if same is not None else
                                             answers_match(str(r.get("proposed_label")), g, run.task, run.tolerance)),
        })
    return rows


def render_html(run: RunFiles, counts: dict[str, int], figures: dict[str, str], metrics: dict[str, Any] | None,
                gold: dict[str, str] | None, roles: list[dict[str, Any]], ranking: dict[str, Any] | None = None,
                same=None) -> str:
    total = counts["total"]
    prefix = _common_prefix([str(r.get("question") or "") for r in run.records])

    def share(n: int) -> str:
        return f"{100 * n / total:.1f}%" if total else "n/a"

    return _template().render(
        name=run.dir.name, run_dir=run.dir.resolve(), run_dir_given=run.dir, data=run.summary.get("data"),
        task=run.task, model_line=_model_line(run), when=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        summary=run.summary, selection=run.selection, denoise=run.config.denoise,
        cost_line=describe_cost(run.summary["cost"]) if run.summary.get("cost") else None,
        beta=run.selection.get("beta", run.config.denoise.beta),
        counts=counts, share=share, statuses=FINAL_STATUSES, status_text=STATUS_TEXT, colors=COLORS,
        metrics=metrics, pct=pct, gold=gold, ranking=ranking,
        figures={name: figures[name] for name in FIGURE_ORDER if name in figures},
        reviewer_skipped=any((r["nodes"].get("reviewer") or {}).get("skipped") for r in run.records),
        roles=roles, role_names=ROLE_NAMES,
        examples=_examples(run, gold, prefix, same), prefix=prefix, prefix_shown=_short(prefix, 120),
        option_text=option_text)
