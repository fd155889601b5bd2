"""One description of the method (`robustft.method`): the graph, the roles, the prompts and the
scored role all come from it, and a node is added with one NodeSpec and one agent function."""

from __future__ import annotations

import dataclasses

import pytest

from robustft.agents.runtime import AgentRuntime
from robustft.agents.state import initial_state
from robustft.graph import build
from robustft.method import PROMPT_ROLES, PROMPT_VALUES, RECORDS, NodeSpec, method_of
from robustft.prompts import PromptLibrary, prompt_values
from robustft.prompts.check import neighbours, stage_values

from fakes import QUESTIONS, answering, config_for, fake_pool, make_dataset

GOLD = {sid: gold for sid, (_, _, gold) in QUESTIONS.items()}


@pytest.mark.parametrize("denoise,task,names,roles,prompts,scored", [
    ({}, None, ["base", "reasoning", "checker", "context", "reviewer"],
     ["base", "reasoning", "context", "reviewer"], ["base", "reasoning", "context", "reviewer"], "context"),
    ({"checker": "judge", "reflection_rounds": 1}, None, ["base", "reasoning", "checker", "context", "reviewer"],
     ["base", "reasoning", "judge", "context", "reviewer"],
     ["base", "reasoning", "reflection", "judge", "context", "reviewer"], "context"),
    ({"ablate": ["context"]}, None, ["base", "reasoning", "checker", "reasoning_relabel"],
     ["base", "reasoning"], ["base", "reasoning"], "reasoning"),
    ({"ablate": ["context", "reasoning"]}, None, ["base", "checker", "reasoning_relabel"], ["base"], ["base"], "base"),
    ({"ablate": ["reviewer"]}, None, ["base", "reasoning", "checker", "context"],
     ["base", "reasoning", "context"], ["base", "reasoning", "context"], "context"),
    # open-ended data: the checker scores trust with the judge, claim checks included
    ({"checker": "trust", "trust_claim_checks": True}, "open", ["base", "reasoning", "checker", "context", "reviewer"],
     ["base", "reasoning", "judge", "context", "reviewer"],
     ["base", "reasoning", "judge", "claim", "recheck", "context", "reviewer"], "context"),
    ({"checker": "trust", "trust_recheck": False, "trust_claim_checks": 0}, "open",
     ["base", "reasoning", "checker", "context", "reviewer"], ["base", "reasoning", "judge", "context", "reviewer"],
     ["base", "reasoning", "judge", "context", "reviewer"], "context"),
])
def test_the_method_follows_the_settings(tmp_path, denoise, task, names, roles, prompts, scored):
    method = method_of(config_for(tmp_path, **denoise), task)
    assert method.names == names and method.roles == roles and method.prompts == prompts
    assert method.scored_role == scored
    assert all(PROMPT_ROLES[p] in roles for p in prompts)
    assert [n for n in RECORDS if n in names or n in prompts] == [n for n in RECORDS if n in {*names, *prompts}]


@pytest.mark.parametrize("ablate", [[], ["reasoning"], ["reviewer"], ["context"], ["context", "reasoning"],
                                    ["checker"]])
def test_the_graph_has_exactly_the_methods_nodes(tmp_path, ablate):
    config = config_for(tmp_path, ablate=ablate)
    pool, _ = fake_pool(config, {})
    rt = AgentRuntime(config=config, task="multiple_choice", pool=pool, prompts=PromptLibrary())
    drawn = build.build_graph(rt).compile().get_graph()
    method = method_of(config, "multiple_choice")
    assert set(drawn.nodes) - {"__start__", "__end__"} == set(method.names)
    for spec in method.nodes:
        targets = {e.target for e in drawn.edges if e.source == spec.name}
        assert targets == ({spec.next, "__end__"} if spec.next else {"__end__"})


@pytest.mark.parametrize("name", sorted(PROMPT_VALUES))
def test_each_prompt_gets_the_values_its_node_passes(tmp_path, name):
    config = config_for(tmp_path)
    dataset = make_dataset()
    sample = dataset.samples[0]
    common = prompt_values(sample.question, sample.options, dataset.task, config.data.instruction)
    values = stage_values(name, sample, neighbours(dataset, 0, 2), config, dataset.task)
    assert set(values) - set(common) == set(PROMPT_VALUES[name])


async def test_a_node_is_one_nodespec_and_one_agent_function(tmp_path, monkeypatch):
    """A node that asks no model, between the reasoning expert and the checker."""

    def make_length_note(rt: AgentRuntime):
        async def length_note(state):
            """Reads question. Writes nodes.length_note."""
            return {"nodes": {"length_note": {"answer": None, "characters": len(state["question"])}}}

        return length_note

    config = config_for(tmp_path)
    method = method_of(config, "multiple_choice")
    nodes = list(method.nodes)
    at = method.names.index("reasoning")
    nodes[at] = dataclasses.replace(nodes[at], next="length_note")
    nodes.insert(at + 1, NodeSpec("length_note", None, (), "checker", "unless_failed", "the question's length"))
    monkeypatch.setitem(build.AGENTS, "length_note", make_length_note)  # the agent function, registered

    perfect = {role: answering(lambda sid: GOLD[sid]) for role in ("base", "reasoning")}
    pool, fakes = fake_pool(config, perfect)
    rt = AgentRuntime(config=config, task="multiple_choice", pool=pool, prompts=PromptLibrary())
    app = build.build_graph(rt, dataclasses.replace(method, nodes=tuple(nodes))).compile()
    sample = make_dataset().samples[0]
    finals = [s async for s in build.run_batch(app, [initial_state(sample)])]
    assert len(finals) == 1 and finals[0]["status"] == "clean"
    assert finals[0]["nodes"]["length_note"]["characters"] == len(sample.question)
    assert list(finals[0]["nodes"]) == ["base", "reasoning", "length_note"]
    assert len(fakes["base"].calls) == len(fakes["reasoning"].calls) == 1
