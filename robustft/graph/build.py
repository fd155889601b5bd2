"""Wiring only: which nodes exist for the configured method, and how a sample is routed.

    START -(detect)-> base -> reasoning -> checker -> END   clean or failed: done; noisy: waits
    START -(relabel)-> context -> reviewer -> END           a noisy sample, back with its examples
    any node whose model keeps failing -> END (status failed)

The barrier (DESIGN.md) sits between the checker and the context relabeler: the context relabeler
needs the clean samples of the whole dataset. A noisy sample therefore leaves the graph after the
checker, and the runner invokes the graph for it again, once the clean index exists, with the
retrieved examples in its state: the entry route sends a sample that carries examples to
`context`. Nothing is shared between samples; the graph needs no checkpointer (the runner keeps
progress per sample and every model response in the run directory).

Ablations (`denoise.ablate`) remove nodes; the routes follow. Without the context relabeler there
is no barrier: a noisy sample goes straight to `reasoning_relabel`.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph

from ..agents.checker import make_checker
from ..agents.experts import make_base_expert, make_reasoning_expert
from ..agents.relabeler import make_context_relabeler, make_reasoning_relabeler
from ..agents.reviewer import make_reviewer
from ..agents.runtime import AgentRuntime
from .state import SampleState

BARRIER = "context"


def _failed_or(next_node: str):
    def route(state: SampleState) -> Literal["next", "end"]:
        return "end" if state.get("status") == "failed" else "next"

    route.__name__ = f"to_{next_node}"
    return route


def _entry(state: SampleState) -> Literal["detect", "relabel"]:
    return "relabel" if state.get("examples") is not None else "detect"


def _after_checker(state: SampleState) -> Literal["noisy", "end"]:
    return "noisy" if state.get("decision") == "noisy" and state.get("status") != "failed" else "end"


def build_graph(rt: AgentRuntime) -> StateGraph:
    ablate = set(rt.config.denoise.ablate)
    g = StateGraph(SampleState)
    g.add_node("base", make_base_expert(rt))
    g.add_node("checker", make_checker(rt))
    if "reasoning" in ablate:
        g.add_conditional_edges("base", _failed_or("checker"), {"next": "checker", "end": END})
    else:
        g.add_node("reasoning", make_reasoning_expert(rt))
        g.add_conditional_edges("base", _failed_or("reasoning"), {"next": "reasoning", "end": END})
        g.add_conditional_edges("reasoning", _failed_or("checker"), {"next": "checker", "end": END})

    if "context" in ablate:
        g.add_edge(START, "base")
        g.add_node("reasoning_relabel", make_reasoning_relabeler(rt))
        g.add_conditional_edges("checker", _after_checker, {"noisy": "reasoning_relabel", "end": END})
        g.add_edge("reasoning_relabel", END)
        return g
    g.add_conditional_edges(START, _entry, {"detect": "base", "relabel": BARRIER})
    g.add_edge("checker", END)  # clean and failed samples are done; noisy ones wait at the barrier
    g.add_node(BARRIER, make_context_relabeler(rt))
    if "reviewer" in ablate:
        g.add_edge(BARRIER, END)
    else:
        g.add_node("reviewer", make_reviewer(rt))
        g.add_conditional_edges(BARRIER, _failed_or("reviewer"), {"next": "reviewer", "end": END})
        g.add_edge("reviewer", END)
    return g


def compile_graph(rt: AgentRuntime):
    return build_graph(rt).compile()


def has_barrier(graph: StateGraph) -> bool:
    return BARRIER in graph.nodes
