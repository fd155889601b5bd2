"""The context relabeler: answer a noisy sample again, shown the k most similar clean samples.

The examples come from the clean index, which exists only after detection has finished for the
whole dataset; the runner retrieves them for all noisy samples at the barrier and each sample
carries its own in its state (`examples`). An example from a chat sample with earlier turns is
shown as its conversation written out (`prompts.shown_question`); for open-ended responses each
example's response is shown, and the relabeler writes a new response.
"""

from __future__ import annotations

from ..answers import format_options
from ..errors import ModelCallError
from ..prompts import shown_question
from ..tokens import count_tokens
from .state import Example, SampleState, ShownExample
from .runtime import AgentRuntime, failure


def make_context_relabeler(rt: AgentRuntime):
    no_reviewer = "reviewer" in rt.config.denoise.ablate

    async def context_relabeler(state: SampleState) -> dict:
        """Reads question, options, examples. Writes nodes.context, and with the reviewer switched
        off also proposed_label, score and status=candidate."""
        examples = fit_budget(rt, state, state.get("examples") or [])
        try:
            record = await rt.ask("context", "context", state, examples=_shown(examples))
        except ModelCallError as exc:
            return failure("context", exc)
        record["examples"] = [ShownExample(id=ex["id"], question=ex["question"], answer=ex["answer"],
                                           similarity=ex["similarity"]) for ex in examples]
        update: dict = {"nodes": {"context": record}}
        if no_reviewer:
            update.update(propose(record["answer"], record["score"], "context answer (reviewer switched off)"))
        return update

    return context_relabeler


def _shown(examples: list[Example]) -> list[dict]:
    return [{"question": shown_question(ex["question"], ex.get("conversation")),
             "options_block": format_options(ex["options"]) if ex["options"] else "",
             "answer": ex["answer"]} for ex in examples]


def fit_budget(rt: AgentRuntime, state: SampleState, examples: list[Example]) -> list[Example]:
    """The most similar examples whose prompt fits `denoise.context_token_budget` (all when unset).

    Long inputs (abstracts, reports) times k examples can overflow a small model's context window;
    dropping the least similar example first keeps the most useful evidence.
    """
    budget = rt.config.denoise.context_token_budget
    if budget is None:
        return examples
    kept = list(examples)
    while kept and count_tokens(rt.render("context", state, examples=_shown(kept))) > budget:
        kept.pop()
    return kept


def make_reasoning_relabeler(rt: AgentRuntime):
    """Stands in for the context relabeler when it is switched off (ablation)."""

    async def reasoning_relabeler(state: SampleState) -> dict:
        """Reads nodes.reasoning (or nodes.base). Writes proposed_label, score, status=candidate."""
        nodes = state.get("nodes", {})
        source = nodes.get("reasoning") or nodes.get("base") or {}
        return propose(source.get("answer"), source.get("score"), "expert answer (context relabeling switched off)")

    return reasoning_relabeler


def propose(label: str | None, score: float | None, where: str) -> dict:
    if label is None:
        # unreadable, not failed: the replies are stored, so running again would read the same ones
        return {"status": "unreadable", "error": f"no relabel: the {where} could not be read"}
    return {"proposed_label": label, "score": score, "status": "candidate"}
