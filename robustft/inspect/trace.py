"""One sample's path through the graph, for a person (`robustft trace DIR ID`) or a program (`--json`).

Built from the sample's record in samples.jsonl, the run's summary.json (the selection threshold)
and review_log.jsonl (human decisions): each node that ran, in graph order, with its prompt, the
model's response, the extracted answer and score; the checker's decision and why; the retrieved
examples with their similarity; the reviewer's verdict; selection; human review; the final status.

A chat sample's earlier turns (system prompt, earlier user and assistant turns) are shown before
its question, since every prompt was sent after them. Long labels (open-ended responses) are shown
in full once, as the given response and the response to train on, and previewed elsewhere.
"""

from __future__ import annotations

import difflib
import json
import textwrap
from pathlib import Path
from typing import Any

from ..answers import letters, option_text
from ..errors import UserError
from ..run.rundir import SAMPLES, RunFiles, load_run
from ..run.records import SampleRecord
from ..secrets import redact_tree
from ..method import RECORDS
from ..terminal import json_visible, visible

NODE_ORDER = tuple(RECORDS)  # every run's records in graph order, whatever its config
TITLES = RECORDS


def _title(node: str) -> str:
    """A node's title; the trust checks of a relabel (relabel_judge, ...) are the given response's, on the relabel."""
    if node.startswith("relabel_") and node[len("relabel_"):] in TITLES:
        return f"{node}: {TITLES[node[len('relabel_'):]]}, on the proposed relabel"
    return TITLES.get(node, node)
PROMPT_HEAD, PROMPT_TAIL, RESPONSE_LINES = 4, 6, 24
PREVIEW_CHARS = 70  # a long label (an open-ended response) is previewed in lines that hold other things
TURN_LINES = 6


def find_record(run: RunFiles, sample_id: str) -> SampleRecord:
    rec = run.by_id.get(str(sample_id))
    if rec is not None:
        return rec
    hint = ""
    # "row N" counts data rows from 1, as editors and every message do (a record's `row` field is 0-based)
    by_row = next((r for r in run.records if r.get("row") == int(sample_id) - 1), None) \
        if str(sample_id).isdigit() else None
    close = difflib.get_close_matches(str(sample_id), list(run.by_id), n=3, cutoff=0.6)
    if by_row is not None:
        hint = f"; data row {sample_id} (counted from 1, as editors show it) has the id {by_row['id']!r}"
    elif close:
        hint = f"; did you mean {', '.join(close)}?"
    if not hint:
        first = [r["id"] for r in run.records[:3]]
        hint = f"; ids look like {', '.join(first)}" if first else "; the run has no samples"
    raise UserError(f"{run.dir / SAMPLES}: no sample with id {sample_id!r} among {len(run.records)}{hint}")


def _selection_step(run: RunFiles, rec: SampleRecord) -> dict[str, Any] | None:
    if rec["status"] not in ("relabeled", "confirmed", "dropped") or rec.get("reason") == "unreadable":
        return None
    sel = run.selection
    score, threshold, beta = rec.get("score"), sel.get("threshold"), sel.get("beta")
    kept = rec["status"] in ("relabeled", "confirmed")
    if sel.get("enabled") is False:
        why = "selection switched off (ablation): every relabel is kept"
    elif score is None:
        why = "no score (the model returned no token log-probabilities): ranked after all scored relabels"
    elif threshold is None:
        why = "no relabel was kept" if not kept else "kept"
    else:
        rel = "<=" if score <= threshold else ">"
        why = (f"score {score:.3f} {rel} threshold {threshold:.3f}: the beta={beta} fraction of the "
               f"{sel.get('candidates')} relabels with the lowest scores is kept")
    return {"node": "selection", "score": score, "threshold": threshold, "beta": beta,
            "kept": kept, "reason": why}


def build_trace(run: RunFiles, sample_id: str) -> dict[str, Any]:
    """The trace as plain data (what `--json` prints)."""
    rec = find_record(run, sample_id)
    nodes = rec.get("nodes") or {}
    steps: list[dict[str, Any]] = []
    order = list(NODE_ORDER) + [n for n in nodes if n not in NODE_ORDER]
    for name in order:
        if name == "checker":
            if rec.get("decision") is not None:
                steps.append({"node": "checker", "decision": rec["decision"], "reason": rec.get("decision_reason"),
                              **({"trust": rec.get("trust"), "trust_signals": rec["trust_signals"]}
                                 if rec.get("trust_signals") else {})})
            continue
        if name not in nodes:
            continue
        step = {"node": name, **nodes[name]}
        if name == "context" and "reviewer" not in nodes and rec.get("proposed_label") is not None:
            step["note"] = "reviewer switched off: the context answer is the proposed label"
        steps.append(step)
    if rec.get("decision") == "noisy" and "context" not in nodes and rec.get("proposed_label") is not None:
        steps.append({"node": "reasoning_relabel", "proposed_label": rec["proposed_label"], "score": rec.get("score"),
                      "note": "context relabeling switched off: the expert's answer is the proposed label"})
    selection = _selection_step(run, rec)
    if selection:
        steps.append(selection)
    review = [e for e in run.review_log() if str(e.get("id")) == rec["id"]]
    in_ft = next((d for d in run.fine_tuning_set() if d.get("id") == rec["id"]), None)
    return {"id": rec["id"], "row": rec.get("row"), "question": rec.get("question"), "options": rec.get("options"),
            "conversation": _earlier_turns(rec.get("conversation")), "task": rec.get("task") or run.task, "original_label": rec.get("original_label"), "steps": steps,
            "status": rec["status"], "reason": rec.get("reason"), "label": rec.get("label"), "proposed_label": rec.get("proposed_label"),
            "score": rec.get("score"), "error": rec.get("error"), "human_review": review,
            "in_fine_tuning_set": in_ft is not None, "fine_tuning_label": in_ft.get("label") if in_ft else None,
            "fine_tuning_source": in_ft.get("source") if in_ft else None, "run_dir": str(run.dir)}


def _earlier_turns(conversation: Any) -> list[dict[str, str]]:
    """The turns before the question (the conversation's last turn is the question itself); a
    damaged field shows as no turns rather than stopping the trace."""
    if not isinstance(conversation, list):
        return []
    turns = [{"role": str(t.get("role")), "content": str(t.get("content"))}
             for t in conversation if isinstance(t, dict)]
    return turns[:-1]


def is_long(label: Any) -> bool:
    return isinstance(label, str) and (len(label) > PREVIEW_CHARS + 10 or "\n" in label)


def _label_text(label: Any, options: list[str] | None, full: bool = False) -> str:
    if label is None:
        return "(none)"
    text = option_text(label, options)
    if text is not None:
        return f"{label} ({text})"
    if is_long(label) and not full:
        first = label.strip().splitlines()[0] if label.strip() else ""
        return f"\"{first[:PREVIEW_CHARS].rstrip()}...\" ({len(label.split())} words)"
    return str(label)


def _indent(text: str, prefix: str) -> str:
    return textwrap.indent(text, prefix, lambda line: True)


def shorten(text: str | None, head: int, tail: int, what: str) -> str:
    if text is None:
        return "(none)"
    lines = text.rstrip("\n").splitlines() or [""]
    if len(lines) <= head + tail + 1:
        return "\n".join(lines)
    hidden = len(lines) - head - tail
    return "\n".join(lines[:head] + [f"[... {hidden} more lines of the {what}; the full trace shows all of it ...]"]
                     + lines[-tail:])


def _fmt_score(score: Any) -> str:
    return "n/a" if score is None else f"{score:.3f}"


def format_trace(trace: dict[str, Any], full: bool = False) -> str:
    opts = trace.get("options")
    final = _final_text(trace)
    row = f" (row {trace['row'] + 1})" if isinstance(trace.get("row"), int) else ""
    out = [f"sample {trace['id']}{row} in {trace['run_dir']}", f"outcome: {final}", ""]
    turns = trace.get("conversation") or []
    if turns:
        out.append(f"conversation before the question ({len(turns)} turn{'s' if len(turns) > 1 else ''}; "
                   "every prompt was sent after them):")
        for turn in turns:
            body = turn["content"] if full else shorten(turn["content"], TURN_LINES - 1, 1, "turn")
            out.append(_indent(f"{turn['role']}: {body}", "    "))
        out.append("question (the last user turn):")
    else:
        out.append("question:")
    out.append(_indent(str(trace.get("question")), "    "))
    if opts:
        out.append("options:")
        out += [f"    {letter}. {o}" for letter, o in zip(letters(len(opts)), opts)]
    if is_long(trace["original_label"]):
        out += ["given response:", _indent(str(trace["original_label"]), "    ")]
    else:
        out.append(f"given label: {_label_text(trace['original_label'], opts)}")
    n = 0
    for step in trace["steps"]:
        node = step["node"]
        n += 1
        out.append("")
        if node == "checker":
            out.append(f"{n}. checker: {step['decision'].upper()}")
            out.append(f"   why: {step.get('reason')}")
            if step.get("trust_signals"):
                s = step["trust_signals"]
                shown = ", ".join(f"{k} {_fmt_score(s.get(k))}" for k in ("agreement", "reflection", "token_prob", "claims"))
                shown += "".join(f", {k.replace('_', ' ')} {_fmt_score(s[k])}"
                                 for k in ("claim_check", "response_check", "recheck", "off_topic") if s.get(k) is not None)
                out.append(f"   trust of the given response: {_fmt_score(step.get('trust'))} ({shown})")
                if s.get("weakest_claim"):
                    out.append(f"   weakest claim: {_label_text(s['weakest_claim'], None, full)}")
            continue
        if node == "selection":
            out.append(f"{n}. selection: {'KEPT' if step['kept'] else 'DROPPED'}")
            out.append(f"   why: {step['reason']}")
            continue
        if node == "reasoning_relabel":
            out.append(f"{n}. relabel: {_label_text(step['proposed_label'], opts, full)} "
                       f"(score {_fmt_score(step['score'])})")
            out.append(f"   {step['note']}")
            continue
        if step.get("skipped"):
            out.append(f"{n}. {node}: not asked: {step['skipped']}")
            out.append(f"   label: {_label_text(step.get('answer'), opts, full)}")
            continue
        out.append(f"{n}. {_title(node)}")
        if "prompt" not in step:  # the node's model kept failing: only the error was recorded
            out.append(f"   error: {step.get('error')}")
            continue
        if step.get("examples") is not None:
            ex = step["examples"]
            out.append(f"   retrieved examples ({len(ex)} most similar clean samples, cosine similarity):")
            for e in ex:
                q = e.get("question", "")
                q = q if full or len(q) <= 70 else q[:67] + "..."
                out.append(f"     {e.get('similarity', 0):.3f}  {e.get('id')}  answer {_label_text(e.get('answer'), None, full)}"
                           f"  {q}")
            if not ex:
                out.append("     (none: there were no clean samples to show)")
        prompt = step.get("prompt")
        body = prompt if full or prompt is None else shorten(prompt, PROMPT_HEAD, PROMPT_TAIL, "prompt")
        out.append("   prompt:")
        out.append(_indent(body.rstrip("\n") if body else "(none)", "   | "))
        resp = step.get("response")
        body = resp if full or resp is None else shorten(resp, RESPONSE_LINES - 6, 6, "response")
        out.append("   response:")
        out.append(_indent(body.rstrip("\n") if body else "(none)", "   | "))
        if step.get("rounds"):
            answers = ", ".join(str(r.get("answer")) for r in step["rounds"])
            out.append(f"   reflection rounds: {len(step['rounds'])} (answers {answers}; the last readable one counts)")
        extra = f", attempts {step.get('attempts')}" if (step.get("attempts") or 1) > 1 else ""
        label = "verdict (label wrong?)" if node == "judge" else ("verdict" if node == "reviewer" else "answer")
        out.append(f"   {label}: {_label_text(step.get('answer'), opts, full) if node != 'judge' else step.get('answer')}"
                   f"   score {_fmt_score(step.get('score'))}"
                   f"   tokens {step.get('prompt_tokens', 0)} in / {step.get('completion_tokens', 0)} out{extra}")
        if step.get("error"):
            out.append(f"   error: {step['error']}")
        if node == "context":
            out.append("   (this answer's score is the one selection ranks by)")
            if step.get("note"):
                out.append(f"   {step['note']}")
    for e in trace["human_review"]:
        n += 1
        out += ["", f"{n}. human review ({e.get('file', '')}): decision {e.get('decision')!r}",
                f"   {_change_text(e.get('before'), opts)} -> {_change_text(e.get('after'), opts)}"]
    out.append("")
    out.append(f"final status: {final}")
    if trace.get("label") is not None and is_long(trace["label"]) and trace["status"] == "relabeled":
        out += ["response to train on:", _indent(str(trace["label"]), "    ")]
    if trace["human_review"]:
        where = (f"in the fine-tuning set with label {_label_text(trace['fine_tuning_label'], opts)} "
                 f"(source {trace['fine_tuning_source']})" if trace["in_fine_tuning_set"]
                 else "not in the fine-tuning set")
        out.append(f"after human review: {where}")
    return "\n".join(out)


def _final_text(trace: dict[str, Any]) -> str:
    opts = trace.get("options")
    status = trace["status"]
    if status == "clean":
        final = f"CLEAN: kept with its given label {_label_text(trace['label'], opts)}"
    elif status == "relabeled":
        final = (f"RELABELED: {_label_text(trace['original_label'], opts)} -> {_label_text(trace['label'], opts)}"
                 f" (score {_fmt_score(trace['score'])})")
    elif status == "confirmed":
        final = (f"CONFIRMED: relabeled to its given label {_label_text(trace['label'], opts)}, kept unchanged"
                 f" (score {_fmt_score(trace['score'])})")
    elif status == "dropped" and trace.get("reason") == "unreadable":
        final = (f"DROPPED (unreadable): {trace.get('error') or 'no answer could be read'}; running again would "
                 "read the same stored replies, so it is not a failure: change the model, the prompts or "
                 "denoise.parse_retries to try again")
    elif status == "dropped":
        final = (f"DROPPED: the proposed label {_label_text(trace['proposed_label'], opts)} was too uncertain "
                 "(selection); the sample is not in the fine-tuning set")
    else:
        final = f"FAILED: {trace.get('error')}"
    return final


def _change_text(state: dict | None, opts) -> str:
    if not state:
        return "not in the fine-tuning set"
    return f"label {_label_text(state.get('label'), opts)} ({state.get('source')})"


def trace(run_dir: str | Path, sample_id: str, *, full: bool = False, as_json: bool = False) -> str:
    """What `robustft trace` prints."""
    # Runs written before keys were redacted may hold one in an error text: hide it here too.
    data = redact_tree(build_trace(load_run(run_dir), sample_id))
    if as_json:
        return json_visible(json.dumps(data, indent=2, ensure_ascii=False))
    # The data, the replies and the file names may hold terminal escape sequences: show, never obey.
    return visible(format_trace(data, full=full))
