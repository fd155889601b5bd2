"""`robustft report DIR [--gold FILE]`: what a run did, as a page a person can read offline.

Writes into the run directory:

- report.html: self-contained (CSS inline, figures embedded as base64 PNG; opens without network),
  each figure with a plain-language explanation, the counts, the gold-label figures when --gold is
  given (robustft.inspect.metrics), and a table of example relabels;
- plots/*.png: the same figures (outcomes, scores, labels, roles, and gold when given);
- report.json: the numbers behind it all.

and returns a short table for the terminal.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..answers import answers_match
from .metrics import describe_gold, load_gold, pct, run_gold_metrics
from ..files import write_json
from ..run.outputs import FINAL_STATUSES
from ..run.rundir import RunFiles, load_run

ROLES = ("base", "reasoning", "context", "reviewer")
ROLE_NAMES = {"base": "base expert", "reasoning": "reasoning expert", "context": "context relabeler",
              "reviewer": "reviewer"}
COLORS = {"clean": "#4e9a57", "relabeled": "#3d73b5", "dropped": "#e08a2c", "failed": "#c8413f",
          "right": "#4e9a57", "wrong": "#c8413f", "neutral": "#9aa3ad", "label": "#3d73b5", "gold": "#4e9a57"}
STATUS_TEXT = {"clean": "clean: the experts agreed with the given label; kept as it is",
               "relabeled": "relabeled: flagged noisy, given a new label confident enough to keep",
               "dropped": "dropped: flagged noisy, but the new label was too uncertain; left out",
               "failed": "failed: the model calls kept failing; left out"}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_MATRIX = 12


@dataclass
class Report:
    html_path: Path
    plots: dict[str, Path]
    data: dict[str, Any]
    text: str
    figures: dict[str, str] = field(default_factory=dict)  # name -> base64 PNG


# --- numbers -----------------------------------------------------------------------------------

def counts_of(run: RunFiles) -> dict[str, int]:
    c = Counter(r["status"] for r in run.records)
    out = {s: c.get(s, 0) for s in FINAL_STATUSES}
    out["total"] = len(run.records)
    out["noisy"] = sum(1 for r in run.records if r.get("decision") == "noisy")
    ft = run.fine_tuning_set()
    out["fine_tuning_set"] = len(ft)
    out["human"] = sum(1 for d in ft if d.get("source") == "human")
    return out


def role_agreement(run: RunFiles, gold: dict[str, str] | None) -> list[dict[str, Any]]:
    """Per role: how often its answer equals the given label, and gold when known."""
    rows = []
    for role in ROLES:
        # A reviewer that was not asked (the two answers agreed) gave no answer of its own.
        asked = [r for r in run.records if role in r["nodes"] and not r["nodes"][role].get("skipped")]
        answered = [(r, r["nodes"][role]["answer"]) for r in asked if r["nodes"][role].get("answer") is not None]
        ran = len(asked)
        if not ran:
            continue
        agree = sum(answers_match(a, r["original_label"], run.task, run.rel_tol) for r, a in answered)
        row = {"role": role, "ran": ran, "answered": len(answered), "agrees_with_label": agree,
               "label_agreement": agree / len(answered) if answered else None}
        if gold is not None:
            g = [(r, a) for r, a in answered if r["id"] in gold]
            right = sum(answers_match(a, gold[r["id"]], run.task, run.rel_tol) for r, a in g)
            row.update(with_gold=len(g), right=right, gold_accuracy=right / len(g) if g else None)
        rows.append(row)
    return rows


# --- figures -----------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.titleweight": "bold",
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


def fig_scores(run: RunFiles, gold: dict[str, str] | None):
    import numpy as np

    plt = _plt()
    cands = [r for r in run.records if r["status"] in ("relabeled", "dropped")]
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
                   [r["score"] for r in scored if r["id"] in gold and answers_match(
                       str(r.get("proposed_label")), gold[r["id"]], run.task, run.rel_tol)]),
                  ("new label wrong", COLORS["wrong"],
                   [r["score"] for r in scored if r["id"] in gold and not answers_match(
                       str(r.get("proposed_label")), gold[r["id"]], run.task, run.rel_tol)]),
                  ("no gold label", COLORS["neutral"], [r["score"] for r in scored if r["id"] not in gold])]
    else:
        groups = [("kept (relabeled)", COLORS["relabeled"], [r["score"] for r in scored if r["status"] == "relabeled"]),
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
                  if (run.config.get("denoise") or {}).get("score", "mean_nll") == "mean_nll"
                  else "selection score: negative log-probability of the answer tokens (lower = more certain)")
    ax.set_ylabel("relabels")
    ax.set_title(f"Selection scores of the {len(cands)} relabels")
    ax.legend(frameon=False, loc="upper right", bbox_to_anchor=(1, 0.86))
    return fig


def _label_key(label: Any) -> str:
    return "(none)" if label is None else str(label)


def label_matrix(run: RunFiles) -> tuple[list[str], list[str], list[list[int]]]:
    """Rows: given labels; columns: labels in the fine-tuning set, then 'dropped' and 'failed'.

    Many distinct labels (free-text or numeric answers) are folded into 'other' beyond the most
    frequent ones."""
    ft = {d["id"]: d.get("label") for d in run.fine_tuning_set()}
    pairs = []
    for r in run.records:
        given = _label_key(r.get("original_label"))
        if r["id"] in ft:
            final = _label_key(ft[r["id"]])
        else:
            final = "failed" if r["status"] == "failed" else "dropped"
        pairs.append((given, final))
    rows_count = Counter(a for a, _ in pairs)
    cols_count = Counter(b for _, b in pairs if b not in ("dropped", "failed"))

    def top(counter: Counter) -> list[str]:
        names = [n for n, _ in counter.most_common()]
        if len(names) > MAX_MATRIX:
            names = names[:MAX_MATRIX - 1]
            return sorted(names) + ["other"]
        return sorted(names)

    rows = top(rows_count)
    cols = top(cols_count + Counter({n: 0 for n in rows_count})) if len(rows_count) <= MAX_MATRIX else top(cols_count)
    cols = [c for c in cols if c not in ("dropped", "failed")] + ["dropped", "failed"]
    idx_r = {n: i for i, n in enumerate(rows)}
    idx_c = {n: i for i, n in enumerate(cols)}
    m = [[0] * len(cols) for _ in rows]
    for a, b in pairs:
        i = idx_r.get(a, idx_r.get("other"))
        j = idx_c.get(b, idx_c.get("other"))
        if i is not None and j is not None:
            m[i][j] += 1
    return rows, cols, m


def fig_labels(run: RunFiles):
    import numpy as np

    plt = _plt()
    rows, cols, m = label_matrix(run)
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


def _encode(fig, path: Path) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    path.write_bytes(data)
    return base64.b64encode(data).decode("ascii")


# --- HTML --------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#222;
  max-width:1000px;margin:0 auto;padding:28px 24px 60px;line-height:1.5;background:#fff}
h1{font-size:1.6em;margin:0 0 4px} h2{font-size:1.25em;margin:36px 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin:0 0 18px;font-size:.92em}
.lead{font-size:1.05em;background:#f5f7fa;border-left:4px solid #3d73b5;padding:12px 16px;margin:14px 0}
table{border-collapse:collapse;margin:10px 0;font-size:.93em}
th,td{border-bottom:1px solid #e4e4e4;padding:5px 10px;text-align:left;vertical-align:top}
th{background:#f5f7fa;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px}
figure{margin:18px 0 26px} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#444;font-size:.93em;margin-top:6px;max-width:820px}
.metrics td:first-child{white-space:nowrap;font-weight:600}
.big{font-size:1.15em;font-weight:700}
.ok{color:#2e7d32;font-weight:600}.bad{color:#c62828;font-weight:600}
code{background:#f2f2f2;padding:1px 4px;border-radius:3px;font-size:.92em;word-break:break-all}
td code{white-space:nowrap;word-break:normal}
.q{max-width:330px} .small{font-size:.88em;color:#555}
.steps{margin:6px 0 0 0;padding-left:22px} .steps li{margin:3px 0}
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _label_html(label: Any, options: list[str] | None) -> str:
    if label is None:
        return "<span class='small'>(none)</span>"
    if options and isinstance(label, str) and len(label) == 1 and label in LETTERS and LETTERS.index(label) < len(options):
        return f"<b>{_e(label)}</b> <span class='small'>{_e(options[LETTERS.index(label)])}</span>"
    return f"<b>{_e(label)}</b>"


def _short(text: Any, n: int) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= n else s[:n - 1] + "…"


def _model_line(run: RunFiles) -> str:
    cfg = run.config
    model = cfg.get("model") or {}
    name = model.get("name") or "(unknown model)"
    where = f" at {model['base_url']}" if model.get("base_url") else f" ({model.get('provider')})" if model.get("provider") else ""
    roles = cfg.get("roles") or {}
    other = [f"{role}: {o.get('name')}" for role, o in roles.items() if isinstance(o, dict) and o.get("name")]
    return name + where + (f"; per role {', '.join(other)}" if other else "")


def _common_prefix(texts: list[str], minimum: int = 20) -> str:
    """A lead-in every question shares (e.g. an instruction), cut at a word boundary; '' if short."""
    import os.path

    if len(texts) < 2:
        return ""
    prefix = os.path.commonprefix(texts)
    cut = max(prefix.rfind(" "), prefix.rfind("\n"))
    prefix = prefix[:cut + 1] if cut >= 0 else ""
    return prefix if len(prefix.strip()) >= minimum else ""


def _example_rows(run: RunFiles, gold: dict[str, str] | None, prefix: str = "", limit_kept: int = 6,
                  limit_dropped: int = 4):
    """Relabels that changed the label first (most certain first), then those that confirmed it."""
    def key(r: dict) -> tuple:
        same = answers_match(str(r.get("proposed_label")), str(r.get("original_label")), run.task, run.rel_tol)
        return (same, r.get("score") is None, r.get("score") or 0.0)

    kept = sorted((r for r in run.records if r["status"] == "relabeled"), key=key)[:limit_kept]
    dropped = sorted((r for r in run.records if r["status"] == "dropped"), key=key)[:limit_dropped]
    rows = []
    for r in kept + dropped:
        nodes = r["nodes"]
        score = "n/a" if r.get("score") is None else f"{r['score']:.3f}"
        same = answers_match(str(r.get("proposed_label")), str(r.get("original_label")), run.task, run.rel_tol)
        question = str(r.get("question") or "")[len(prefix):]
        cells = [f"<code>{_e(r['id'])}</code>", f"<div class='q'>{_e(_short(question, 140))}</div>",
                 _label_html(r.get("original_label"), r.get("options")),
                 _label_html(r.get("proposed_label"), r.get("options"))
                 + (" <span class='small'>(confirmed)</span>" if same else "")]
        cells += ["<span class='small'>not asked</span>" if (nodes.get(role) or {}).get("skipped")
                  else _e((nodes.get(role) or {}).get("answer", "–")) for role in ROLES]
        cells += [f"<span class='n'>{score}</span>",
                  "kept" if r["status"] == "relabeled" else "<span class='small'>dropped</span>"]
        if gold is not None:
            g = gold.get(r["id"])
            if g is None:
                cells.append("<span class='small'>n/a</span>")
            else:
                ok = answers_match(str(r.get("proposed_label")), g, run.task, run.rel_tol)
                cells.append(f"{_label_html(g, r.get('options'))} "
                             f"{'<span class=ok>✓</span>' if ok else '<span class=bad>✗</span>'}")
        rows.append(cells)
    return rows


def _metric_rows(m: dict[str, Any]) -> str:
    d, rl, ft, inp, f = m["detection"], m["relabel"], m["fine_tuning_set"], m["input"], m["wrong_labels"]
    rows = [
        ("Label accuracy: input", f"<span class=big>{pct(inp['label_accuracy'])}</span>",
         f"{inp['correct']} of the {inp['samples']} given labels are right; {inp['wrong']} are wrong."),
        ("Label accuracy: fine-tuning set", f"<span class=big>{pct(ft['label_accuracy'])}</span>",
         f"{ft['correct']} of the {ft['samples']} labels in denoised.jsonl are right"
         + (f" ({ft['human']} decided by a person)" if ft["human"] else "") + "."),
        ("Detection precision", pct(d["precision"]),
         f"Of the {d['flagged']} samples flagged as noisy, {d['true_positive']} really had a wrong label. "
         "Low precision means good samples were sent to relabeling."),
        ("Detection recall", pct(d["recall"]),
         f"Of the {d['wrong']} wrong labels, {d['true_positive']} were flagged. The "
         f"{d['false_negative']} missed ones went into the fine-tuning set unchanged."),
        ("Detection F1", pct(d["f1"]), "The balance of precision and recall (their harmonic mean)."),
        ("Relabel accuracy", pct(rl["accuracy"]),
         f"{rl['correct']} of the {rl['proposed']} proposed new labels are right: of those selection kept "
         f"{pct(rl['kept_accuracy'])} ({rl['kept_correct']}/{rl['kept']}), of those it dropped "
         f"{pct(rl['dropped_accuracy'])} ({rl['dropped_correct']}/{rl['dropped']}). "
         "Selection works when the kept ones are more accurate than the dropped ones."),
        ("Wrong labels", f"{f['fixed']} fixed",
         f"{f['removed']} removed, {f['kept_unchanged']} kept unchanged, {f['relabeled_wrong']} changed to another "
         f"wrong label, {f['failed']} failed. Right labels made wrong: {m['right_labels_broken']}."),
    ]
    if d["undecided"]:
        rows.append(("Undecided", str(d["undecided"]), "samples that failed before the checker decided; "
                     "counted as not flagged."))
    return "".join(f"<tr><td>{a}</td><td class=n>{b}</td><td>{c}</td></tr>" for a, b, c in rows)


def _steps_html(den: dict[str, Any], beta: Any, ablate: list[str]) -> str:
    if den.get("review", "always") == "always":
        review = "a <b>reviewer</b> weighs that answer and the reasoning expert's and gives the new label."
    else:
        review = ("when that answer and the reasoning expert's differ, a <b>reviewer</b> weighs both and gives "
                  "the new label.")
    switched = (f"<p><b>Parts switched off in this run (ablation):</b> {_e(', '.join(ablate))}.</p>"
                if ablate else "")
    return ("<h2>How robustft decides</h2><ol class=steps>"
            "<li><b>Two experts</b> answer every question: a base expert directly, a reasoning expert step by step.</li>"
            f"<li><b>The checker</b> ({_e(den.get('checker', 'paper'))} rule) calls a sample <i>clean</i> when the "
            "experts agree with its given label, otherwise <i>noisy</i>.</li>"
            f"<li><b>Relabeling</b>: each noisy sample is answered again, shown its {_e(den.get('k', 3))} most similar "
            f"clean samples as solved examples; {review}</li>"
            "<li><b>Selection</b> ranks all new labels by how uncertain the model was (the score) and keeps the "
            f"β = {_e(beta)} most certain fraction; the rest are dropped.</li></ol>" + switched)


def render_html(run: RunFiles, counts: dict[str, int], figures: dict[str, str], metrics: dict[str, Any] | None,
                gold: dict[str, str] | None, roles: list[dict[str, Any]]) -> str:
    s, sel = run.summary, run.selection
    den = run.config.get("denoise") or {}
    beta = sel.get("beta", den.get("beta"))
    total = counts["total"]
    ablate = den.get("ablate") or []
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")

    def share(n: int) -> str:
        return f"{100 * n / total:.1f}%" if total else "n/a"

    lead = (f"Of the <b>{total}</b> samples, the agents agreed with the given label for <b>{counts['clean']}</b>, "
            f"which are kept as they are. They disagreed on <b>{counts['noisy']}</b> (flagged noisy): "
            f"<b>{counts['relabeled']}</b> got a new label confident enough to keep, <b>{counts['dropped']}</b> "
            f"were left out because the new label was too uncertain"
            + (f", and <b>{counts['failed']}</b> failed" if counts["failed"] else "")
            + f". The fine-tuning set (<code>denoised.jsonl</code>) has <b>{counts['fine_tuning_set']}</b> samples"
            + (f", {counts['human']} of them decided by a person" if counts["human"] else "") + ".")
    if metrics:
        inp, ft, d = metrics["input"], metrics["fine_tuning_set"], metrics["detection"]
        lead += (f"<br>Checked against the gold labels: label accuracy went from <b>{pct(inp['label_accuracy'])}</b> "
                 f"in the input to <b>{pct(ft['label_accuracy'])}</b> in the fine-tuning set; the noise detector "
                 f"found <b>{d['true_positive']}</b> of the {d['wrong']} wrong labels (recall {pct(d['recall'])}) "
                 f"at precision {pct(d['precision'])}.")

    count_rows = "".join(
        f"<tr><td><span class=swatch style='background:{COLORS[st]}'></span>{_e(STATUS_TEXT[st])}</td>"
        f"<td class=n>{counts[st]}</td><td class=n>{share(counts[st])}</td></tr>" for st in FINAL_STATUSES)
    count_rows += ("<tr><td><b>fine-tuning set</b> (clean + relabeled"
                   + (", after human review" if counts["human"] else "") + ")</td>"
                   f"<td class=n><b>{counts['fine_tuning_set']}</b></td><td class=n>{share(counts['fine_tuning_set'])}</td></tr>")

    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
             f"<meta name=viewport content='width=device-width, initial-scale=1'>"
             f"<title>robustft report: {_e(run.dir.name)}</title><style>{CSS}</style></head><body>",
             f"<h1>robustft report: {_e(run.dir.name)}</h1>",
             f"<p class=sub>Run directory <code>{_e(run.dir.resolve())}</code> · data <code>{_e(s.get('data'))}</code> "
             f"· task {_e(run.task)} · model {_e(_model_line(run))} · report made {when}</p>",
             f"<div class=lead>{lead}</div>",
             _steps_html(den, beta, ablate),
             "<h2>Outcome</h2>",
             f"<table><tr><th>what happened</th><th>samples</th><th>share</th></tr>{count_rows}</table>"]
    if sel:
        thr = sel.get("threshold")
        parts.append(f"<p class=small>Selection: {sel.get('candidates')} relabels ranked, {sel.get('kept')} kept "
                     f"(β = {_e(beta)}; threshold {('%.3f' % thr) if thr is not None else 'n/a'}"
                     + (f"; {sel['unscored']} without a score" if sel.get("unscored") else "")
                     + (", selection switched off" if sel.get("enabled") is False else "") + "). "
                     f"Model calls: {_e((s.get('model_calls') or {}).get('total'))}; tokens: "
                     f"{_e((s.get('tokens') or {}).get('prompt'))} prompt + {_e((s.get('tokens') or {}).get('completion'))} "
                     f"completion; wall time {_e(s.get('wall_time_s'))} s.</p>")
    if metrics:
        g = metrics.get("gold", {})
        extra = (f" {g['unmatched']} of the run's samples have no gold row and are left out of these figures."
                 if g.get("unmatched") else "")
        parts += ["<h2>Checked against gold labels</h2>",
                  f"<p>Gold file <code>{_e(g.get('path'))}</code>, matched by {_e(g.get('matched_by'))} "
                  f"({g.get('matched')} samples).{extra} A sample counts as <i>positive</i> (noisy) when its given "
                  "label differs from the gold one.</p>",
                  f"<table class=metrics><tr><th>measure</th><th>value</th><th>what it means</th></tr>"
                  f"{_metric_rows(metrics)}</table>"]

    captions = {
        "outcomes": "Every input sample ends in one of four ways. Clean and relabeled samples form the fine-tuning "
                    "set; dropped and failed ones are left out.",
        "gold": "Top: the samples whose given label was wrong. Green ones were fixed (they are in the fine-tuning "
                "set with the right label now), light blue ones were left out; red ones still carry a wrong label. "
                "Bottom: the samples whose given label was already right. Ideally all green: leaving them out loses "
                "good data, and changing them makes them wrong.",
        "scores": "Each relabel gets a score: how uncertain the model was when it gave the new label (the mean "
                  "negative log-probability of its answer). Selection keeps the relabels left of the dashed line, "
                  "the most certain fraction β, and drops the rest."
                  + (" Colours show whether the new label is right according to gold: if selection helps, the "
                     "green bars sit mostly to the left of the line." if gold is not None else ""),
        "labels": "Rows are the labels as given in the input, columns the labels in the fine-tuning set. Numbers "
                  "on the diagonal (bold) are labels that stayed; off-diagonal numbers are relabels; the last two "
                  "columns count the samples left out.",
        "roles": "How often each agent's answer equals the given label"
                 + (", and how often it equals the gold label (is right). An agent that agrees with the given "
                    "label much more often than it is right is copying the noise." if gold is not None else ".")
                 + " The context relabeler and the reviewer only see the samples flagged as noisy, so their "
                   "agreement with the given label is low by design"
                 + ("; the reviewer is asked only when the reasoning and context answers differ."
                    if any((r["nodes"].get("reviewer") or {}).get("skipped") for r in run.records) else "."),
    }
    titles = {"outcomes": "How the samples ended", "gold": "Where the wrong and the right labels ended up",
              "scores": "Selection scores and the β threshold", "labels": "Given label versus final label",
              "roles": "Agreement per agent"}
    for name in ("outcomes", "gold", "scores", "labels", "roles"):
        if name in figures:
            parts.append(f"<h2>{titles[name]}</h2><figure><img alt='{_e(titles[name])}' "
                         f"src='data:image/png;base64,{figures[name]}'><figcaption>{captions[name]}</figcaption></figure>")
    if roles:
        head = "<tr><th>agent</th><th>asked</th><th>answered</th><th>agrees with given label</th>" + (
            "<th>right (gold)</th>" if gold is not None else "") + "</tr>"
        body = "".join(
            f"<tr><td>{_e(ROLE_NAMES[r['role']])}</td><td class=n>{r['ran']}</td><td class=n>{r['answered']}</td>"
            f"<td class=n>{pct(r['label_agreement'])}</td>"
            + (f"<td class=n>{pct(r.get('gold_accuracy'))}</td>" if gold is not None else "") + "</tr>" for r in roles)
        parts.append(f"<table>{head}{body}</table>")

    prefix = _common_prefix([str(r.get("question") or "") for r in run.records])
    examples = _example_rows(run, gold, prefix)
    if examples:
        head = ["id", "question", "given", "new label", "base", "reas&shy;oning", "con&shy;text", "re&shy;viewer",
                "score", "selec&shy;tion"] + (["gold"] if gold is not None else [])
        parts += ["<h2>Example relabels</h2>",
                  "<p>Samples flagged as noisy, with each agent's answer and the new label they settled on. "
                  "First the most certain relabels (lowest scores) that selection kept, then the most certain of "
                  "those it dropped; relabels that changed the label come before those that confirmed it. To see "
                  "every step of one sample, with the prompts and the models' replies, run "
                  f"<code>robustft trace {_e(run.dir)} ID</code>."
                  + (f" Every question starts with “{_e(_short(prefix, 120))}”; the table leaves that out."
                     if prefix else "") + "</p>",
                  "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
                  + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in examples) + "</table>"]
    parts.append("<h2>Files</h2><p class=small><code>denoised.jsonl</code>: the fine-tuning set · "
                 "<code>samples.jsonl</code>: every sample's path through the agents · <code>summary.json</code>: "
                 "counts, calls and the configuration · <code>plots/</code>: these figures as PNG · "
                 "<code>report.json</code>: the numbers on this page. Review contested samples by hand with "
                 f"<code>robustft review export {_e(run.dir)}</code>.</p></body></html>")
    return "\n".join(parts)


# --- entry -------------------------------------------------------------------------------------

def format_text(run: RunFiles, counts: dict[str, int], metrics: dict[str, Any] | None,
                html_path: Path, plots: dict[str, Path]) -> str:
    total = counts["total"] or 1
    sel = run.selection
    lines = [f"robustft report: {run.dir} ({counts['total']} samples, {run.task}"
             + (f", beta {sel.get('beta')}" if sel else "") + ")",
             f"  {'outcome':<14}{'samples':>8}{'share':>8}"]
    for st in FINAL_STATUSES:
        lines.append(f"  {st:<14}{counts[st]:>8}{100 * counts[st] / total:>7.1f}%")
    lines.append(f"  flagged noisy {counts['noisy']}; fine-tuning set {counts['fine_tuning_set']} samples"
                 + (f" ({counts['human']} decided by a person)" if counts["human"] else ""))
    if metrics:
        lines += describe_gold(metrics)
    lines.append(f"report: {html_path}")
    lines.append(f"plots:  {', '.join(str(p) for p in plots.values())}")
    return "\n".join(lines)


def build_report(run_dir: str | Path, gold_path: str | Path | None = None) -> Report:
    run = load_run(run_dir)
    gold = load_gold(gold_path, run) if gold_path is not None else None
    metrics = run_gold_metrics(run, gold) if gold else None
    labels = gold.labels if gold else None
    counts = counts_of(run)
    roles = role_agreement(run, labels)
    plot_dir = run.dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    figs = {"outcomes": fig_outcomes(counts)}
    if metrics:
        figs["gold"] = fig_gold(metrics)
    figs["scores"] = fig_scores(run, labels)
    figs["labels"] = fig_labels(run)
    figs["roles"] = fig_roles(roles, labels is not None)
    plots: dict[str, Path] = {}
    encoded: dict[str, str] = {}
    for name, fig in figs.items():
        plots[name] = plot_dir / f"{name}.png"
        encoded[name] = _encode(fig, plots[name])
    stale = plot_dir / "gold.png"
    if not metrics and stale.exists():
        stale.unlink()  # from an earlier report with --gold: it would no longer match report.html
    html_path = run.dir / "report.html"
    tmp = html_path.with_name(html_path.name + ".tmp")
    tmp.write_text(render_html(run, counts, encoded, metrics, labels, roles), encoding="utf-8")
    tmp.replace(html_path)
    data = {"run_dir": str(run.dir), "counts": counts, "selection": run.selection, "roles": roles,
            "gold_metrics": metrics, "plots": {k: str(v) for k, v in plots.items()}}
    write_json(run.dir / "report.json", data)
    return Report(html_path=html_path, plots=plots, data=data,
                  text=format_text(run, counts, metrics, html_path, plots), figures=encoded)


def report(run_dir: str | Path, gold: str | Path | None = None) -> str:
    """What `robustft report` prints."""
    return build_report(run_dir, gold).text


__all__ = ["Report", "build_report", "report", "counts_of", "role_agreement", "label_matrix"]
