"""Whether two answers agree: by the task's string rule, or by meaning for open-ended responses.

Short answers (letters, numbers, short text) agree when `answers.answers_match` says so. Two
open-ended responses agree when the cosine similarity of their embeddings (the run's embedder,
`AgentRuntime.similarity`) is at least `denoise.open_similarity`; how its default was chosen is
in the README ("Open-ended responses").
"""

from __future__ import annotations

from dataclasses import dataclass

from ..answers import answers_match
from .runtime import AgentRuntime


@dataclass(frozen=True)
class Agreement:
    agree: bool
    similarity: float | None = None  # open-ended responses: the cosine similarity that decided

    def describe(self) -> str:
        return "" if self.similarity is None else f"similarity {self.similarity:.3f}"


async def agreement(rt: AgentRuntime, answer: str | None, reference: str | None) -> Agreement:
    """Whether `answer` agrees with `reference`; no answer agrees with nothing.

    Raises ModelCallError when an embedding server keeps failing (open-ended responses only).
    """
    if answer is None or reference is None:
        return Agreement(False)
    if rt.task != "open":
        return Agreement(answers_match(answer, reference, rt.task, rt.config.data.numeric_tolerance))
    similarity = await rt.similarity(answer, reference)
    return Agreement(similarity >= rt.config.denoise.open_similarity, similarity)
