"""The figures of `robustft report`, drawn with matplotlib (headless) from a run's numbers."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from ..answers import answers_match
from ..files import atomic_write
from ..run.outputs import FINAL_STATUSES
from ..run.rundir import RunFiles
from .counts import ROLE_NAMES

__all__ = ["COLORS", "fig_gold", "fig_labels", "fig_outcomes", "fig_roles", "fig_scores", "save_png"]

COLORS = {"clean": "#4e9a57", "relabeled": "#3d73b5", "confirmed": "#8fb3de", "dropped": "#e08a2c", "failed": "#c8413f",
          "right": "#4e9a57", "wrong": "#c8413f", "neutral": "#9aa3ad", "label": "#3d73b5", "gold": "#4e9a57"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # text.parse_math off: a label such as "$\\boxed{5}$" is shown as written, never parsed as mathtext
    plt.rcParams.update({"text.parse_math": False, "font.size": 10, "axes.titlesize": 11, "axes.titleweight": "bold",
                         "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 110,
                         "savefig.dpi": 110, "savefig.bbox": "tight"})
    return plt


def fig_outcomes(counts: dict[str, int]):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 2.9))
    names = list(FINAL_STATUSES)[::-1]
    values = [counts[s] for s in names]
    bars = ax.barh(names, values, color=[COLORS[s] for s in names])
    total = max(counts["total"], 1)
    for bar, v in zip(bars, values):
        ax.text(bar.get_width() + total * 0.01, bar.get_y() + bar.get_height() / 2,
                f"{v}  ({100 * v / total:.0f}%)", va="center")
    ax.set_xlim(0, max(values + [1]) * 1.25)
    ax.set_xlabel("samples")
    ax.set_title(f"How the {counts['total']} samples ended")
    return fig


def fig_scores(run: RunFiles, gold: dict[str, str] | None, same=None):
    """`same(answer, gold, id)`: the run's comparison with gold (`gold_compare`); default the task's."""
    import numpy as np

    def is_right(r: dict) -> bool:
        if same is not None:
            return same(r.get("proposed_label"), gold[r["id"]], r["id"])
        return answers_match(str(r.get("proposed_label")), gold[r["id"]], run.task, run.tolerance)

    plt = _plt()
    cands = [r for r in run.records if r["status"] in ("relabeled", "confirmed", "dropped")
             and r.get("reason") != "unreadable"]
    scored = [r for r in cands if r.get("score") is not None]
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    sel = run.selection
    if not scored:
        ax.text(0.5, 0.5, "no relabel has a score" if cands else "no sample was relabeled",
                ha="center", va="center", transform=ax.transAxes, fontsize=12, color="#555")
        ax.set_axis_off()
        ax.set_title("Selection scores of the relabels")
        return fig
    values = np.array([r["score"] for r in scored])
    lo, hi = float(values.min()), float(values.max())
    width = max(hi - lo, 1e-3) / min(30, max(8, len(values) // 3))
    threshold = sel.get("threshold") if sel.get("enabled", True) else None
    # A bin edge just above the threshold (the highest kept score): no bar mixes kept and dropped.
    anchor = threshold + 1e-9 * max(1.0, abs(threshold)) if threshold is not None else lo
    k_lo = int(np.floor((lo - anchor) / width))
    k_hi = max(int(np.ceil((hi - anchor) / width)), k_lo + 1)
    if anchor + k_hi * width <= hi:
        k_hi += 1
    bins = anchor + width * np.arange(k_lo, k_hi + 1)
    if gold is not None:
        groups = [("new label right", COLORS["right"],
                   [r["score"] for r in scored if r["id"] in gold and is_right(r)]),
                  ("new label wrong", COLORS["wrong"],
                   [r["score"] for r in scored if r["id"] in gold and not is_right(r)]),
                  ("no gold label", COLORS["neutral"], [r["score"] for r in scored if r["id"] not in gold])]
    else:
        groups = [("kept (relabeled or confirmed)", COLORS["relabeled"],
                   [r["score"] for r in scored if r["status"] in ("relabeled", "confirmed")]),
                  ("dropped", COLORS["dropped"], [r["score"] for r in scored if r["status"] == "dropped"])]
    groups = [g for g in groups if g[2]]
    ax.hist([g[2] for g in groups], bins=bins, stacked=True, color=[g[1] for g in groups],
            label=[g[0] for g in groups], edgecolor="white", linewidth=0.5)
    if threshold is not None:
        top = ax.get_ylim()[1] * 1.12
        ax.set_ylim(0, top)
        ax.axvline(threshold, color="#222", linestyle="--", linewidth=1.3)
        ax.text(threshold, top * 0.98, "← kept  ", va="top", ha="right", fontsize=9, fontweight="bold")
        ax.text(threshold, top * 0.98, "  dropped →", va="top", ha="left", fontsize=9, fontweight="bold")
        ax.text(threshold, top * 0.88, f"  threshold {threshold:.3f} (β = {sel.get('beta')})", va="top",
                ha="left", fontsize=8.5, color="#444")
    ax.set_xlabel("selection score: mean negative log-probability of the context answer (lower = more certain)"
                  if run.config.denoise.score == "mean_nll"
                  else "selection score: negative log-probability of the answer tokens (lower = more certain)")
    ax.set_ylabel("relabels")
    ax.set_title(f"Selection scores of the {len(cands)} relabels")
    ax.legend(frameon=False, loc="upper right", bbox_to_anchor=(1, 0.86))
    return fig


def fig_labels(matrix: tuple[list[str], list[str], list[list[int]]]):
    """The given -> final label matrix (`counts.label_matrix`) as a heat map."""
    import numpy as np

    plt = _plt()
    rows, cols, m = matrix
    arr = np.array(m, dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 0.62 * len(cols), 1.3 + 0.5 * len(rows)))
    ax.imshow(arr, cmap="Blues", aspect="auto", vmin=0, vmax=max(arr.max(), 1))
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = int(arr[i, j])
            if v:
                dark = arr[i, j] > arr.max() * 0.55
                weight = "bold" if (rows[i] == cols[j]) else "normal"
                ax.text(j, i, str(v), ha="center", va="center", color="white" if dark else "#222",
                        fontweight=weight, fontsize=9)
    ax.set_xticks(range(len(cols)), [c if len(c) <= 12 else c[:11] + "…" for c in cols])
    ax.set_yticks(range(len(rows)), [r if len(r) <= 16 else r[:15] + "…" for r in rows])
    ax.tick_params(length=0)
    if len(cols) > 6:
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right")
    for s in ax.spines.values():
        s.set_visible(False)
    ax.axvline(len(cols) - 2.5, color="#888", linewidth=1)
    ax.set_xlabel("final label (or what happened instead)")
    ax.set_ylabel("given label", labelpad=10)
    ax.set_title("Given label → final label")
    return fig


def fig_roles(roles: list[dict[str, Any]], with_gold: bool):
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    if not roles:
        ax.set_axis_off()
        return fig
    x = np.arange(len(roles))
    width = 0.38 if with_gold else 0.55
    agree = [100 * (r["label_agreement"] or 0) for r in roles]
    bars = [ax.bar(x - (width / 2 if with_gold else 0), agree, width, color=COLORS["label"],
                   label="agrees with the given label")]
    if with_gold:
        acc = [100 * (r.get("gold_accuracy") or 0) for r in roles]
        bars.append(ax.bar(x + width / 2, acc, width, color=COLORS["gold"], label="agrees with gold (is right)"))
    for group in bars:
        for b in group:
            ax.text(b.get_x() + b.get_width() / 2, b.get_height() + 1.5, f"{b.get_height():.0f}%",
                    ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, [f"{ROLE_NAMES[r['role']]}\n(answered {r['answered']})" for r in roles])
    ax.set_ylim(0, 118)
    ax.set_ylabel("% of the samples it answered")
    ax.set_title("How often each agent agrees")
    ax.legend(frameon=False, loc="upper right", ncol=2)
    return fig


def fig_gold(m: dict[str, Any]):
    plt = _plt()
    f, rt, inp = m["wrong_labels"], m["right_labels"], m["input"]
    kinds = [("right in the fine-tuning set", COLORS["right"]), ("left out (dropped)", "#8fb8de"),
             ("failed", COLORS["neutral"]), ("changed to a wrong label", "#eba09f"),
             ("wrong label kept (missed)", COLORS["wrong"])]
    bars = {1: [f["fixed"], f["removed"], f["failed"], f["relabeled_wrong"], f["kept_unchanged"]],
            0: [rt["kept_right"], rt["removed"], rt["failed"], rt["broken"], 0]}
    fig, ax = plt.subplots(figsize=(7.5, 2.7))
    for y, values in bars.items():
        left = 0
        for (name, color), v in zip(kinds, values):
            if v <= 0:
                continue
            ax.barh(y, v, left=left, color=color, edgecolor="white", height=0.6)
            if v >= max(inp["samples"] * 0.025, 1):
                ax.text(left + v / 2, y, str(v), ha="center", va="center", fontsize=9,
                        color="white" if color in (COLORS["right"], COLORS["wrong"]) else "#222")
            left += v
    ax.set_yticks([1, 0], [f"given label wrong ({inp['wrong']})", f"given label right ({inp['correct']})"])
    ax.set_ylim(-0.5, 1.5)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for _, c in kinds]
    ax.legend(handles, [n for n, _ in kinds], frameon=False, ncol=3, fontsize=8.5,
              loc="upper center", bbox_to_anchor=(0.45, -0.3))
    ax.set_xlabel("samples")
    ax.set_title("Where the wrong and the right labels ended up")
    return fig


def save_png(fig, path: Path) -> str:
    """Write `fig` to `path` as PNG and close it; returns the PNG as base64 (to embed in HTML)."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    with atomic_write(path, binary=True, fsync=False) as f:
        f.write(data)
    return base64.b64encode(data).decode("ascii")
