"""One sample's record in samples.jsonl: its shape, written from a graph state, read back, rebuilt.

`SampleRecord` is the shape, declared once, in the order its fields are written (the nodes'
entries are `agents.state.NodeRecord`). The same declaration serves the three uses:

- write: `sample_record(state, task, fingerprint)`, the record of a state as it leaves the graph
  (status clean, noisy, candidate, failed, or dropped with reason unreadable);
- read: `RECORD`, a record read back from a file checked against `SampleRecord` (pydantic
  validates the TypedDicts; `rundir.load_run`);
- rebuild: `state_of(record)`, the graph state the record was made from (to relabel a sample
  detected earlier; `outputs.final_record` after it gives the final record again).

Which state key each field carries is one table, `CARRIED`, read both ways; the fields the runner
decides (status, reason, label, error, task, fingerprint) are written by `sample_record` and read
back by `state_of` through `GRAPH_STATUS`. `write -> read -> rebuild -> write` gives the same bytes
(tests/test_records.py, on the records of real runs).

The records are plain dicts typed as TypedDicts: building and writing one costs what a dict costs
(a pydantic model built and dumped per record cost about 35 us, some 2 % of robustft's CPU per
sample), and pydantic checks them only where a file is read back.
"""

from typing import Literal

from pydantic import TypeAdapter
from typing_extensions import NotRequired, Required, TypedDict

from ..agents.state import READ_BACK, NodeRecord, SampleState, Scalar, TrustSignals, Turn

NOT_FINISHED = "the sample did not finish"
# A record's status: what a sample left the graph with (noisy and candidate only while a run is
# going), then what selection made of it.
RecordStatus = Literal["clean", "noisy", "candidate", "relabeled", "confirmed", "dropped", "failed"]
FINAL_STATUSES = ("clean", "relabeled", "confirmed", "dropped", "failed")


class SampleRecord(TypedDict, total=False):
    """One line of samples.jsonl (DESIGN's output contract), fields in the order written.

    Every field is written, except those marked "only": a table's records stay as they were before
    chat samples and trust scores existed. A reader can rely on `id`, `original_label` and `status`
    (records written by hand or by older versions may lack the rest).
    """

    __pydantic_config__ = READ_BACK

    id: Required[str | int]
    row: int | None
    question: str | None
    options: list[str] | None
    conversation: NotRequired[list[Turn]]   # only for chat samples: the turns before the answer
    task: str | None
    original_label: Required[Scalar]        # the given label (the state's `label`)
    nodes: dict[str, NodeRecord]
    decision: Literal["clean", "noisy"] | None
    decision_reason: str | None
    status: Required[RecordStatus]
    reason: str | None                      # why a dropped sample was dropped: selection, unreadable
    label: Scalar                           # the label to train on; None unless kept
    proposed_label: Scalar                  # the relabel selection kept or dropped
    score: float | None                     # its selection score
    trust: NotRequired[float | None]        # only with trust scores (open-ended): the given response's
    trust_signals: NotRequired[TrustSignals | None]
    relabel_trust: NotRequired[float | None]  # only with denoise.trust_selection: the relabel's trust
    relabel_trust_signals: NotRequired[TrustSignals | None]
    error: str | None
    fingerprint: str | None                 # of the settings and input row that made it (resume)


class FineTuningRecord(TypedDict, total=False):
    """One line of denoised.jsonl (`outputs.fine_tuning_record`, `outputs.human_record`)."""

    __pydantic_config__ = READ_BACK

    id: Required[str | int]
    question: str | None
    options: NotRequired[list[str] | None]  # only when the sample has options
    conversation: NotRequired[list[Turn]]   # only for chat samples
    task: str | None
    label: Scalar                           # the label to train on
    original_label: Scalar
    source: str | None                      # clean, relabeled, confirmed, or human (a person decided)
    score: float | None                     # the selection score; None for clean


FIELDS = tuple(SampleRecord.__annotations__)
# The state key each record field carries as it is (the given label is the state's `label`).
CARRIED = {"id": "id", "row": "row", "question": "question", "options": "options", "conversation": "conversation",
           "original_label": "label", "nodes": "nodes", "decision": "decision",
           "decision_reason": "decision_reason", "proposed_label": "proposed_label", "score": "score",
           "trust": "trust", "trust_signals": "trust_signals", "relabel_trust": "relabel_trust",
           "relabel_trust_signals": "relabel_trust_signals", "error": "error"}
# Fields written only when the state key named has a value (no conversation: a table's sample).
ONLY_WITH = {"conversation": "conversation", "trust": "trust_signals", "trust_signals": "trust_signals",
             "relabel_trust": "relabel_trust_signals", "relabel_trust_signals": "relabel_trust_signals"}
# A graph status as written (status, reason); `state_of` reads it back.
WRITTEN_STATUS: dict[str, tuple[RecordStatus, str | None]] = {
    "clean": ("clean", None), "noisy": ("noisy", None), "candidate": ("candidate", None), "failed": ("failed", None),
    # no answer could be read, even re-asked: running again would read the same stored replies
    "unreadable": ("dropped", "unreadable")}
GRAPH_STATUS = {written: status for status, written in WRITTEN_STATUS.items()}
# Fields the runner decides as it writes a record (`sample_record`), not carried from the state as they are.
DECIDED = ("task", "status", "reason", "label", "error", "fingerprint")
# Per field, in written order: the state key it carries (None: decided) and the key it is written only with.
_PLAN = tuple((name, None if name in DECIDED else CARRIED[name], ONLY_WITH.get(name)) for name in FIELDS)
# After selection: a relabeled, confirmed or dropped sample was a candidate when it left the graph.
SELECTED = ("relabeled", "confirmed", "dropped")


def sample_record(state: SampleState, task: str, fingerprint: str | None) -> SampleRecord:
    """The record of a sample's state as it leaves the graph. A state that stopped before a status
    the graph can end with (an internal error) is written failed: nothing is lost."""
    status, reason = WRITTEN_STATUS.get(state.get("status"), ("failed", None))  # type: ignore[arg-type]
    decided = {"task": task, "status": status, "reason": reason,
               "label": state.get("label") if status == "clean" else None,
               "error": state.get("error") or (NOT_FINISHED if status == "failed" else None),
               "fingerprint": fingerprint}
    record = {}
    for name, key, only_with in _PLAN:
        if key is None:
            record[name] = decided[name]
        elif only_with is None or state.get(only_with) not in (None, []):  # type: ignore[misc]
            record[name] = state.get(key)  # type: ignore[misc]
    if not record["nodes"]:
        record["nodes"] = {}
    return record  # type: ignore[return-value]


def state_of(record: SampleRecord) -> SampleState:
    """The graph state a record was made from (`sample_record`'s inverse)."""
    state = {key: record.get(name) for name, key in CARRIED.items()}  # type: ignore[misc]
    written = (record["status"], record.get("reason"))
    status = GRAPH_STATUS.get(written) or ("candidate" if written[0] in SELECTED else written[0])
    state.update(status=status, examples=None, nodes=record.get("nodes") or {})
    return state  # type: ignore[return-value]


# `RECORD.validate_python(obj)` raises pydantic's `ValidationError`, naming the field, when `obj`
# is not a `SampleRecord` (`rundir.load_run` turns it into a message naming the file and record).
RECORD = TypeAdapter(SampleRecord)
FINE_TUNING_RECORD = TypeAdapter(FineTuningRecord)
