"""Wiring only: which nodes exist for the configured method, and how each sample is routed.

    START -(detect)-> base -> reasoning -> checker -> END   clean or failed: done; noisy: waits
    START -(relabel)-> context -> reviewer -> END           a noisy sample, back with its examples
    any node whose model keeps failing -> END (status failed)

Each sample has its own state (`SampleState`) and its own path. The graph carries a batch of
samples per invocation: START sends each one to its entry node, and every node passes its sample
on with `Command(goto=Send(next, state))`, or hands it in (`finished`) when it leaves the graph.
A LangGraph invocation costs far more than a node step, so carrying several samples per
invocation is what keeps the runner's own cost per sample small.

The barrier (DESIGN.md) sits between the checker and the context relabeler, which needs the clean
samples of the whole dataset: a noisy sample leaves the graph after the checker, and the runner
sends it in again, once the clean index exists, with the retrieved examples in its state. Nothing
is shared between samples, and the graph needs no checkpointer (the runner keeps each sample's
record and every model response in the run directory).

Ablations (`denoise.ablate`) remove nodes; the routes follow. Without the context relabeler there
is no barrier: a noisy sample goes straight to `reasoning_relabel`.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Awaitable, Callable, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send

from ..backends.retry import describe
from ..agents.checker import make_checker
from ..agents.experts import make_base_expert, make_reasoning_expert
from ..agents.relabeler import make_context_relabeler, make_reasoning_relabeler
from ..agents.reviewer import make_reviewer
from ..agents.runtime import AgentRuntime
from ..errors import RobustFTError
from ..method import Method, NodeSpec, method_of
from ..agents.state import SampleState, merge_records

Node = Callable[[SampleState], Awaitable[SampleState]]  # a node returns its update
Route = Callable[[SampleState], str]


class Batch(TypedDict, total=False):
    samples: list[SampleState]                         # the samples sent in
    finished: Annotated[list[SampleState], operator.add]  # the samples that left the graph


def _apply(state: SampleState, update: SampleState) -> SampleState:
    new = {**state, **update}
    if "nodes" in update:
        new["nodes"] = merge_records(state.get("nodes"), update["nodes"])
    return new  # type: ignore[return-value]


def _step(node: Node, route: Route):
    """Run `node` on one sample, then send the sample on to where `route` says (END: hand it in).

    An unexpected exception fails that sample only: the other samples of the batch go on.
    """

    async def step(state: SampleState) -> Command:
        try:
            update = await node(state)
        except (asyncio.CancelledError, RobustFTError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - one sample's bug must not cost the others
            update = {"status": "failed", "error": f"internal error in {node.__name__}: {describe(exc)}"}
        new = _apply(state, update)
        target = route(new)
        if target == END:
            return Command(update={"finished": [new]}, goto=END)
        return Command(goto=Send(target, new))

    step.__name__ = node.__name__
    step.__doc__ = node.__doc__
    return step


def _next_unless_failed(next_node: str) -> Route:
    return lambda state: END if state.get("status") in ("failed", "unreadable") else next_node


def _end(state: SampleState) -> str:
    return END


# The agent function of each node a `Method` may hold (`robustft.method`).
AGENTS: dict[str, Callable[[AgentRuntime], Node]] = {
    "base": make_base_expert, "reasoning": make_reasoning_expert, "checker": make_checker,
    "context": make_context_relabeler, "reviewer": make_reviewer, "reasoning_relabel": make_reasoning_relabeler,
}


def _route(spec: NodeSpec) -> Route:
    if spec.route == "unless_failed":
        return _next_unless_failed(spec.next)
    if spec.route == "if_noisy":
        return lambda state: spec.next if state.get("status") == "noisy" else END
    return _end


def build_graph(rt: AgentRuntime, method: Method | None = None) -> StateGraph:
    """The graph of `method` (default: the one `rt`'s config runs on its task)."""
    method = method or method_of(rt.config, rt.task)
    g = StateGraph(Batch)
    tracing = getattr(rt.calls, "tracing", None)

    def add(name: str, node: Node, route: Route, destinations: tuple[str, ...]) -> None:
        if tracing is not None:  # a span per node step; the sample's span ends when its route leaves
            node, route = tracing.node(name, node), tracing.route(route, END)
        g.add_node(name, _step(node, route), destinations=destinations)

    for spec in method.nodes:
        add(spec.name, AGENTS[spec.name](rt), _route(spec), (spec.next, END) if spec.next else (END,))
    first, barrier = method.nodes[0].name, method.barrier
    if barrier is None:
        g.add_conditional_edges(START, lambda batch: [Send(first, s) for s in batch["samples"]], [first])
        return g

    # Clean and failed samples are done after the checker; noisy ones wait at the barrier and come
    # back with their examples.
    def enter(batch: Batch) -> list[Send]:
        return [Send(barrier if s.get("examples") is not None else first, s) for s in batch["samples"]]

    g.add_conditional_edges(START, enter, [first, barrier])
    return g


async def run_batch(app, samples: list[SampleState]):
    """Send `samples` through a compiled graph; yield each one's final state as it leaves."""
    async for update in app.astream({"samples": samples}, stream_mode="updates"):
        for node_update in update.values():
            if node_update:
                for state in node_update.get("finished", ()):
                    yield state
