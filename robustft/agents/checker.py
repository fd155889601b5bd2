"""The consistency checker: is the given label clean (the experts agree with it) or noisy?

Rules (`denoise.checker`):
- paper: clean when every expert's answer equals the label (base and reasoning, as in the paper).
- majority: clean when at least half of the expert answers equal the label.
- judge: an LLM sees the label and both answers and says whether the label is wrong.
- trust (open-ended data): clean when the given response's trust score (`agents.trust`) is at
  least `denoise.trust_threshold`.
With the `checker` ablation every sample is sent to relabeling.

On open-ended data with `denoise.trust` (the default) every rule also writes the given response's
trust score (`trust`, `trust_signals`), which review and report rank by.

"Equals" is the task's own comparison (`agents.similarity`): for open-ended responses, an expert's
response agrees with the given one when their embeddings' cosine similarity reaches
`denoise.open_similarity`.
"""

from __future__ import annotations

import asyncio

from ..answers import parse_verdict
from ..errors import ConfigError, ModelCallError
from .state import SampleState
from .runtime import AgentRuntime, failure
from .similarity import agreement
from .trust import score_trust

# possessive quantifiers: spaces and emphasis are read once, so "Answer:" and a megabyte of spaces is linear
def expert_answers(state: SampleState) -> dict[str, str | None]:
    return {name: rec.get("answer") for name, rec in state.get("nodes", {}).items() if name in ("base", "reasoning")}


def check_rule(config, task: str) -> None:
    """Raise ConfigError when the configured rule cannot judge this task (before any call)."""
    if config.denoise.checker == "trust" and task != "open" and "checker" not in config.denoise.ablate:
        raise ConfigError(f"checker: trust scores open-ended responses, and this data's task is {task}: choose "
                          "checker paper, majority or judge, or set data.task: open")


def make_checker(rt: AgentRuntime):
    rule = rt.config.denoise.checker
    disabled = "checker" in rt.config.denoise.ablate
    open_ended = rt.task == "open"
    threshold = rt.config.denoise.open_similarity
    trust_on = open_ended and rt.config.denoise.trust
    trust_threshold = rt.config.denoise.trust_threshold
    check_rule(rt.config, rt.task)

    async def checker(state: SampleState) -> dict:
        """Reads label, nodes.base, nodes.reasoning. Writes decision, decision_reason, status clean or
        noisy (and nodes.judge); open-ended with denoise.trust: trust, trust_signals (and nodes.claim)."""
        label = state["label"]
        answers = expert_answers(state)
        if disabled:
            return _decided(False, "checker switched off (ablation): every sample is relabeled")
        try:
            found = await asyncio.gather(*(agreement(rt, ans, label) for ans in answers.values()))
        except ModelCallError as exc:
            return {"status": "failed", "error": f"embedding the responses to compare them failed: {exc}"}
        agree = [a.agree for a in found]
        if open_ended:
            shown = ", ".join(f"{name} {a.describe() or 'no response'}" for name, a in zip(answers, found))
            shown = f"{shown} to the given response (agrees at >= {threshold:g})"
            label_text, verb = "the given response", "agree with"
        else:
            shown = ", ".join(f"{name} answer {ans if ans is not None else '(none)'}" for name, ans in answers.items())
            label_text, verb = f"the label {label}", "equal"
        extra: dict = {}
        if rule == "judge":
            try:
                record = await rt.ask("judge", "judge", state, parse=parse_verdict, label=label,
                                      base_answer=answers.get("base") or "(none)",
                                      reasoning_answer=answers.get("reasoning") or "(none)")
            except ModelCallError as exc:
                return failure("judge", exc)
            extra["nodes"] = {"judge": record}
        if trust_on:
            scored = await score_trust(rt, state, answers, [a.similarity for a in found],
                                       extra.get("nodes", {}).get("judge"))
            if scored.get("status") == "failed":
                return scored
            nodes = {**extra.get("nodes", {}), **scored.pop("nodes", {})}
            extra = {**scored, **({"nodes": nodes} if nodes else {})}
        paper = all(agree) and bool(agree)
        if rule == "paper":
            clean = paper
            why = f"{shown}; {'all' if clean else 'not all'} {verb} {label_text}"
        elif rule == "majority":
            clean = sum(agree) * 2 >= len(agree) and bool(agree)
            why = f"{shown}; {sum(agree)} of {len(agree)} {verb} {label_text}"
        elif rule == "trust":
            trust = extra.get("trust")
            if trust is None:  # no signal could be had: the paper's rule decides
                clean = paper
                why = f"no trust signal; paper rule: {shown}"
            else:
                clean = trust >= trust_threshold
                why = f"trust {trust:.3f} {'>=' if clean else '<'} {trust_threshold:g} ({shown})"
        else:
            verdict = extra["nodes"]["judge"]["answer"]
            if verdict is None:  # an unreadable verdict falls back to the paper's rule
                clean = paper
                why = f"judge gave no verdict; paper rule: {shown} vs {label_text}"
            else:
                clean = verdict == "N"
                why = f"judge says {label_text} is {'right' if clean else 'wrong'} ({shown})"
        return {**extra, **_decided(clean, why)}

    return checker


def _decided(clean: bool, why: str) -> dict:
    return {"decision": "clean" if clean else "noisy", "decision_reason": why, "status": "clean" if clean else "noisy"}
