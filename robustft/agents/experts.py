"""The base expert (a direct answer) and the reasoning expert (step by step, then reflection)."""

from __future__ import annotations

from ..errors import ModelCallError
from .state import Round, SampleState
from .runtime import AgentRuntime, failure


def make_base_expert(rt: AgentRuntime):
    async def base_expert(state: SampleState) -> dict:
        """Reads question, options. Writes nodes.base; status=failed when the model keeps failing."""
        try:
            record = await rt.ask("base", "base", state)
        except ModelCallError as exc:
            return failure("base", exc)
        return {"nodes": {"base": record}}

    return base_expert


def make_reasoning_expert(rt: AgentRuntime):
    rounds = rt.config.denoise.reflection_rounds

    async def reasoning_expert(state: SampleState) -> dict:
        """Reads question, options. Writes nodes.reasoning (with each round); status=failed on failure.

        Round 0 asks for reasoning and reflection in one call (the paper's prompt); each further
        round shows the previous attempt and asks the model to reflect on it and revise.
        """
        history = []
        try:
            record = await rt.ask("reasoning", "reasoning", state)
            history.append(record)
            for _ in range(rounds):
                previous = history[-1]["response"]
                history.append(await rt.ask("reasoning", "reflection", state, previous=previous))
        except ModelCallError as exc:
            return failure("reasoning", exc)
        # The last round that produced an answer speaks for the expert.
        final = next((r for r in reversed(history) if r["answer"] is not None), history[-1])
        merged = dict(final)
        merged["attempts"] = sum(r["attempts"] for r in history)
        merged["prompt_tokens"] = sum(r["prompt_tokens"] for r in history)
        merged["completion_tokens"] = sum(r["completion_tokens"] for r in history)
        if rounds:
            merged["rounds"] = [Round(prompt=r["prompt"], response=r["response"], answer=r["answer"], score=r["score"])
                                for r in history]
        return {"nodes": {"reasoning": merged}}

    return reasoning_expert
