"""One sample's state as it moves through the graph.

Nodes return partial updates; `nodes` merges per-node records (`merge_records`, applied by
`graph.build._apply`: LangGraph's state is the batch, and it never sees a sample's keys), so each
node adds its own entry (its prompt, response, extracted answer, score, token counts) without
touching the others'.

A sample passes through the graph in at most two invocations, either side of the barrier:
detection (START -> base -> reasoning -> checker) ends with status `clean`, `failed`, or `noisy`
(waiting for the clean index of the whole dataset); relabeling re-enters at `context` with the
retrieved `examples` in the state and ends `candidate` (a relabel for selection), `unreadable` (no
answer could be read from the replies, even after the re-asks: the record says dropped, reason
unreadable, since running again would read the same stored replies) or `failed` (a model or
embedding call kept failing: running again retries it).
"""

from __future__ import annotations

from typing import Literal, Union

# typing_extensions' TypedDict: pydantic reads these shapes back from samples.jsonl (run/records.py),
# and on Python 3.11 it validates only this one.
from typing_extensions import TypedDict

Status = Literal["pending", "clean", "noisy", "candidate", "unreadable", "failed"]
# An answer or a label as samples.jsonl may hold it: text as robustft writes it; a number or null
# from a file edited by hand reads too.
Scalar = Union[str, int, float, None]
# How pydantic reads the record shapes back (run/records.py): the types as declared ("0.5" is not a
# score: the inspection commands format numbers), any other field allowed and kept.
READ_BACK = {"extra": "allow", "strict": True}


class Turn(TypedDict):
    """One message of a chat sample's conversation."""

    __pydantic_config__ = READ_BACK

    role: str
    content: str


class Round(TypedDict, total=False):
    """One round of the reasoning expert (its first answer, then each reflection)."""

    __pydantic_config__ = READ_BACK

    prompt: str | None
    response: str | None
    answer: Scalar
    score: float | None


class ShownExample(TypedDict, total=False):
    """A clean example the context relabeler was shown, as its node record keeps it."""

    __pydantic_config__ = READ_BACK

    id: Scalar
    question: str | None
    answer: Scalar
    similarity: float | None


class NodeRecord(TypedDict, total=False):
    """What one node did for one sample: the `nodes` entry of its state and of samples.jsonl.

    A node that asked a model (`AgentRuntime.ask`) writes every field from `prompt` to `error`, in
    this order; a node whose model kept failing only `error` (`node_failed`); a node not asked
    (the reviewer when the answers agree) no `role`, and `skipped` (`node_skipped`). Keys are written
    in this order, so the records of samples.jsonl keep their bytes.
    """

    __pydantic_config__ = READ_BACK

    prompt: str | None          # the last message sent (a chat sample's earlier turns are in its record once)
    role: str | None            # whose model answered (and whose prices): a node's name need not be a role
    response: str | None
    answer: Scalar              # read from the response; None when no answer could be read
    score: float | None         # the reply's selection score (denoise.score)
    attempts: int | None        # calls made, re-asks included
    prompt_tokens: int | None
    completion_tokens: int | None
    error: str | None
    skipped: str | None         # why the node was not asked
    examples: list[ShownExample] | None   # the context relabeler: the examples shown
    rounds: list[Round] | None            # the reasoning expert with reflection rounds: each round


class TrustSignals(TypedDict, total=False):
    """Why an open-ended response got its trust score (`agents.trust`); a signal that could not be
    had is None."""

    __pydantic_config__ = READ_BACK

    agreement: float | None
    reflection: float | None
    token_prob: float | None
    claims: float | None
    claims_split: int
    claim_support: float      # the weakest claim's support by the experts' responses
    claim_check: float        # the claim check's verdict probability, when it went to a claim
    response_check: float     # ... when it went to the whole response (no claim stood out)
    claim_verdict: float      # the claim checks' verdict: 1 every checked claim right, 0 one wrong
    response_verdict: float   # the whole-response check's verdict: 1 right, 0 wrong
    weakest_claim: str
    weakest_claim_similarity: float
    claims_checked: int
    recheck: float            # the recheck's verdict probability of right (denoise.trust_recheck)
    recheck_verdict: float    # the recheck's verdict: 1 right, 0 wrong
    relevance: float          # the response's cosine with the question
    off_topic: float          # off the question's topic: how far the closest expert response lies below
                              # open_similarity - 0.1, in steps of 0.1 (agents.trust.off_topic)


def node_asked(prompt: str, role: str) -> NodeRecord:
    """The record of a node about to ask `role`'s model; `AgentRuntime.ask` fills it in."""
    return NodeRecord(prompt=prompt, role=role, response=None, answer=None, score=None, attempts=0,
                      prompt_tokens=0, completion_tokens=0, error=None)


def node_skipped(answer: Scalar, why: str) -> NodeRecord:
    """The record of a node that was not asked (no call, no role): its answer stands as given."""
    return NodeRecord(prompt=None, response=None, answer=answer, score=None, attempts=0, prompt_tokens=0,
                      completion_tokens=0, error=None, skipped=why)


def node_failed(error: str) -> NodeRecord:
    """The record of a node whose model kept failing."""
    return NodeRecord(error=error)


def merge_records(left: dict[str, NodeRecord] | None, right: dict[str, NodeRecord] | None) -> dict[str, NodeRecord]:
    """A sample's node records after a node's update (each node adds or replaces its own)."""
    return {**(left or {}), **(right or {})}


class Example(TypedDict):
    """A clean sample shown to the context relabeler, as retrieved at the barrier."""

    id: str
    question: str
    answer: str
    options: list[str] | None
    similarity: float
    conversation: list[Turn] | None  # chat samples: shown as text (`prompts.shown_question`)


class SampleState(TypedDict, total=False):
    # Set from the input row when the sample enters the graph; never changed.
    id: str
    row: int
    question: str
    options: list[str] | None
    label: str
    # Chat samples: the turns before the answer ({"role", "content"}), ending with the last user
    # turn, whose content is `question`; every prompt is sent after the earlier turns. None for tables.
    conversation: list[Turn] | None
    # Set by the runner at the barrier: the nearest clean samples, most similar first.
    examples: list[Example] | None
    # Written by the nodes; an update's records merge into these (`merge_records`).
    nodes: dict[str, NodeRecord]
    decision: Literal["clean", "noisy"] | None
    decision_reason: str | None
    status: Status
    proposed_label: str | None   # the relabel that selection will keep or drop
    score: float | None          # the selection score of `proposed_label`
    trust: float | None          # open-ended: the given response's trust score (agents/trust.py)
    trust_signals: TrustSignals | None
    relabel_trust: float | None  # denoise.trust_selection: the proposed response's trust score
    relabel_trust_signals: TrustSignals | None
    error: str | None


def initial_state(sample) -> SampleState:
    return SampleState(id=sample.id, row=sample.row, question=sample.question, options=sample.options,
                       label=sample.label, conversation=getattr(sample, "conversation", None), examples=None,
                       nodes={}, decision=None, decision_reason=None, status="pending", proposed_label=None,
                       score=None, error=None)
