"""One sample's state as it moves through the graph.

Nodes return partial updates; `nodes` merges per-node records, so each node adds its own entry
(its prompt, response, extracted answer, score, token counts) without touching the others'.

A sample passes through the graph in at most two invocations, either side of the barrier:
detection (START -> base -> reasoning -> checker) ends with status `clean`, `failed`, or `noisy`
(waiting for the clean index of the whole dataset); relabeling re-enters at `context` with the
retrieved `examples` in the state and ends `candidate` (a relabel for selection), `unreadable` (no
answer could be read from the replies, even after the re-asks: the record says dropped, reason
unreadable, since running again would read the same stored replies) or `failed` (a model or
embedding call kept failing: running again retries it).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

Status = Literal["pending", "clean", "noisy", "candidate", "unreadable", "failed"]


def merge_records(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


class Example(TypedDict):
    """A clean sample shown to the context relabeler, as retrieved at the barrier."""

    id: str
    question: str
    answer: str
    options: list[str] | None
    similarity: float
    conversation: list[dict[str, str]] | None  # chat samples: shown as text (`prompts.shown_question`)


class SampleState(TypedDict, total=False):
    # Set from the input row when the sample enters the graph; never changed.
    id: str
    row: int
    question: str
    options: list[str] | None
    label: str
    # Chat samples: the turns before the answer ({"role", "content"}), ending with the last user
    # turn, whose content is `question`; every prompt is sent after the earlier turns. None for tables.
    conversation: list[dict[str, str]] | None
    # Set by the runner at the barrier: the nearest clean samples, most similar first.
    examples: list[Example] | None
    # Written by the nodes.
    nodes: Annotated[dict[str, dict[str, Any]], merge_records]
    decision: Literal["clean", "noisy"] | None
    decision_reason: str | None
    status: Status
    proposed_label: str | None   # the relabel that selection will keep or drop
    score: float | None          # the selection score of `proposed_label`
    trust: float | None          # open-ended: the given response's trust score (agents/trust.py)
    trust_signals: dict[str, Any] | None
    relabel_trust: float | None  # denoise.trust_selection: the proposed response's trust score
    relabel_trust_signals: dict[str, Any] | None
    error: str | None


def initial_state(sample) -> SampleState:
    return SampleState(id=sample.id, row=sample.row, question=sample.question, options=sample.options,
                       label=sample.label, conversation=getattr(sample, "conversation", None), examples=None,
                       nodes={}, decision=None, decision_reason=None, status="pending", proposed_label=None,
                       score=None, error=None)
