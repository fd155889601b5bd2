"""The reviewer: sees the reasoning expert's and the context relabeler's answers, gives the label.

For open-ended responses it chooses between the two responses or merges them into one; the two
agree (and the reviewer is not asked, with `denoise.review: on_disagreement`) when their
embeddings are at least `denoise.open_similarity` alike.
"""

from __future__ import annotations

from ..errors import ModelCallError
from .state import SampleState, node_skipped
from ..method import relabels_scored
from .relabeler import propose
from .runtime import AgentRuntime, failure
from .similarity import agreement
from .trust import score_trust


def make_reviewer(rt: AgentRuntime):
    always = rt.config.denoise.review == "always"
    what = "responses" if rt.task == "open" else "answers"
    # With the reasoning expert switched off (ablation) the base answer stands in: say so.
    first_source = ("Answered directly" if "reasoning" in rt.config.denoise.ablate
                    else "After step-by-step reasoning")
    trust_selection = relabels_scored(rt.config, rt.task)

    async def scored(state: SampleState, update: dict) -> dict:
        """With denoise.trust_selection: the proposed response's own trust, 1 - trust as its score."""
        if not trust_selection or update.get("status") != "candidate":
            return update
        proposed = update["proposed_label"]
        nodes = state.get("nodes", {})
        answers = {name: (nodes.get(name) or {}).get("answer") for name in ("base", "reasoning")}
        try:
            found = [await agreement(rt, a, proposed) for a in answers.values()]
        except ModelCallError as exc:
            return {"status": "failed", "error": f"embedding the responses to compare them failed: {exc}"}
        result = await score_trust(rt, {**state, "label": proposed}, answers, [f.similarity for f in found], None,
                                   prefix="relabel_")
        if result.get("status") == "failed":
            return result
        trust = result.get("trust")
        return {**update, "nodes": {**update.get("nodes", {}), **result.get("nodes", {})},
                "score": None if trust is None else round(1.0 - trust, 6),
                "relabel_trust": trust, "relabel_trust_signals": result.get("trust_signals")}

    async def reviewer(state: SampleState) -> dict:
        """Reads nodes.reasoning, nodes.context. Writes nodes.reviewer, proposed_label, score, status.

        With `denoise.review: on_disagreement` (the default) the reviewer is only asked when the two
        answers differ; when they agree that answer is the label and the record says it was skipped.

        The selection score stays the context answer's (the paper ranks by it); when the reviewer
        gives no readable answer the context answer, then the reasoning answer, stands in. With
        `denoise.trust_selection` (open-ended, checker trust) it is 1 - the proposed response's
        own trust score (agents/trust.py; nodes relabel_judge, relabel_claim, relabel_recheck).
        """
        nodes = state.get("nodes", {})
        context = nodes.get("context", {})
        reasoning_answer = (nodes.get("reasoning") or nodes.get("base") or {}).get("answer")
        context_answer = context.get("answer")
        if reasoning_answer is None and context_answer is None:
            return {"status": "unreadable",
                    "error": "no relabel: neither the reasoning nor the context answer could be read"}
        found = None
        if not always:
            try:
                found = await agreement(rt, context_answer, reasoning_answer)
            except ModelCallError as exc:
                return {"status": "failed", "error": f"embedding the responses to compare them failed: {exc}"}
        if found is not None and found.agree:
            # Two agents agree: a third call could only add noise to a settled label.
            how = f" ({found.describe()})" if found.similarity is not None else ""
            record = node_skipped(context_answer,
                                  f"the reasoning and context {what} agree{how} (denoise.review: on_disagreement)")
            return await scored(state, {"nodes": {"reviewer": record},
                                        **propose(context_answer, context.get("score"), "context answer")})
        try:
            record = await rt.ask("reviewer", "reviewer", state, first_source=first_source,
                                  reasoning_answer=reasoning_answer or "(no answer)",
                                  context_answer=context_answer or "(no answer)")
        except ModelCallError as exc:
            return failure("reviewer", exc)
        label = record["answer"] or context_answer or reasoning_answer
        return await scored(state, {"nodes": {"reviewer": record}, **propose(label, context.get("score"), "reviewer answer")})

    return reviewer
