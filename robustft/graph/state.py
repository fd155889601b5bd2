"""One sample's state as it moves through the graph.

Nodes return partial updates; `nodes` merges per-node records, so each node adds its own entry
(its prompt, response, extracted answer, score, token counts) without touching the others'.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

Status = Literal["pending", "clean", "candidate", "failed"]


def merge_records(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


class SampleState(TypedDict, total=False):
    # Set from the input row when the sample enters the graph; never changed.
    id: str
    row: int
    question: str
    options: list[str] | None
    label: str
    # Written by the nodes.
    nodes: Annotated[dict[str, dict[str, Any]], merge_records]
    decision: Literal["clean", "noisy"] | None
    decision_reason: str | None
    status: Status
    proposed_label: str | None   # the relabel that selection will keep or drop
    score: float | None          # the selection score of `proposed_label`
    error: str | None


def initial_state(sample) -> SampleState:
    return SampleState(id=sample.id, row=sample.row, question=sample.question, options=sample.options,
                       label=sample.label, nodes={}, decision=None, decision_reason=None, status="pending",
                       proposed_label=None, score=None, error=None)
