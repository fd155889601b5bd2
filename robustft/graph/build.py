"""Wiring only: which nodes exist for the configured method, and how a sample is routed.

    START -> base -> reasoning -> checker -> (clean) END
                                          -> (noisy) context -> reviewer -> END
    any node whose model keeps failing -> END (status failed)

The graph is compiled with an interrupt before `context`: that is the barrier. The runner drives
every sample to the interrupt (or END), builds the clean index from the whole dataset, then
resumes the noisy samples. Ablations (`denoise.ablate`) remove nodes; the routes follow.
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


def _after_checker(state: SampleState) -> Literal["noisy", "end"]:
    return "noisy" if state.get("decision") == "noisy" and state.get("status") != "failed" else "end"


def build_graph(rt: AgentRuntime) -> StateGraph:
    ablate = set(rt.config.denoise.ablate)
    g = StateGraph(SampleState)
    g.add_node("base", make_base_expert(rt))
    g.add_node("checker", make_checker(rt))
    g.add_edge(START, "base")
    if "reasoning" in ablate:
        g.add_conditional_edges("base", _failed_or("checker"), {"next": "checker", "end": END})
    else:
        g.add_node("reasoning", make_reasoning_expert(rt))
        g.add_conditional_edges("base", _failed_or("reasoning"), {"next": "reasoning", "end": END})
        g.add_conditional_edges("reasoning", _failed_or("checker"), {"next": "checker", "end": END})

    if "context" in ablate:
        g.add_node("reasoning_relabel", make_reasoning_relabeler(rt))
        g.add_conditional_edges("checker", _after_checker, {"noisy": "reasoning_relabel", "end": END})
        g.add_edge("reasoning_relabel", END)
        return g
    g.add_node(BARRIER, make_context_relabeler(rt))
    g.add_conditional_edges("checker", _after_checker, {"noisy": BARRIER, "end": END})
    if "reviewer" in ablate:
        g.add_edge(BARRIER, END)
    else:
        g.add_node("reviewer", make_reviewer(rt))
        g.add_conditional_edges(BARRIER, _failed_or("reviewer"), {"next": "reviewer", "end": END})
        g.add_edge("reviewer", END)
    return g


def compile_graph(rt: AgentRuntime, checkpointer=None):
    graph = build_graph(rt)
    interrupt = [BARRIER] if BARRIER in graph.nodes else []
    return graph.compile(checkpointer=checkpointer, interrupt_before=interrupt)
