"""The method as data: which nodes a configured run has, in graph order, and for each its role
(whose model it asks), the prompts it renders, where it may send a sample next, and its title.

    method = method_of(config, task)
    method.nodes          # NodeSpec per node, graph order (graph/build.py wires these)
    method.roles          # the roles whose models are called (preflight, fingerprint, Ray engines)
    method.prompts        # the templates rendered (the template check, the dry run)
    method.scored_role    # whose reply's score ranks relabels at selection

`PROMPT_ROLES` / `PROMPT_VALUES` say which role renders each template and what values it gets
beyond the common ones (`prompts.prompt_values`); `RECORDS` lists the records a node can leave in
a sample's `nodes`, in graph order, with their titles (trace, for runs of any config), and
`ANSWERING` those whose answer is a label (report and review export).

Adding a node: a `NodeSpec` in `method_of` and its agent function (`graph.build.AGENTS` maps the
node's name to it). The ablations (`denoise.ablate`) and switches are read here and nowhere else
to decide which nodes, roles and prompts a run has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .config import RobustFTConfig

# Which role's model renders and answers each template, and the values it receives beyond the
# common ones (question, options, task phrasing, instruction).
PROMPT_ROLES = {"base": "base", "reasoning": "reasoning", "reflection": "reasoning", "judge": "judge",
                "claim": "judge", "recheck": "judge", "context": "context", "reviewer": "reviewer"}
PROMPT_VALUES: dict[str, tuple[str, ...]] = {
    "base": (), "reasoning": (), "reflection": ("previous",), "context": ("examples",),
    "reviewer": ("first_source", "reasoning_answer", "context_answer"),
    "judge": ("label", "base_answer", "reasoning_answer"),
    "claim": ("claim", "label", "base_answer", "reasoning_answer"),
    "recheck": ("label",),
}
# The prompts only the trust score renders (open-ended data, denoise.trust): its claim checks and recheck.
TRUST_PROMPTS = ("claim", "recheck")
# Every record a node can write into a sample's `nodes` (and the checker's decision), graph order.
RECORDS = {"base": "base expert (answers directly)",
           "reasoning": "reasoning expert (step by step, then reflects)",
           "judge": "judge (an LLM decides whether the label is wrong)",
           "claim": "claim check (the judge on the given response's least supported claim, or on the whole response)",
           "recheck": "recheck (the judge asked again, in other words and without the experts' responses)",
           "checker": "checker (decides clean or noisy)",
           "context": "context relabeler (answers again, shown similar clean samples)",
           "reviewer": "reviewer (weighs the reasoning and context answers, gives the label)"}
# The records whose `answer` is a label for the sample, with short names: the report compares each
# with the given label and gold.
ANSWERING = {"base": "base expert", "reasoning": "reasoning expert", "context": "context relabeler",
             "reviewer": "reviewer"}

# How a node routes the sample it has finished: on to `next` unless it failed; always out of the
# graph; on to `next` only when the checker found it noisy.
Route = Literal["unless_failed", "end", "if_noisy"]
END = "__end__"  # langgraph.graph.END, spelled out so this module does not import LangGraph


@dataclass(frozen=True)
class NodeSpec:
    name: str                       # the graph node (and `graph.build.AGENTS` key)
    role: str | None                # whose model it asks; None: it asks none
    prompts: tuple[str, ...]        # the templates it renders
    next: str | None                # where it sends a sample on (None: out of the graph)
    route: Route
    title: str


@dataclass(frozen=True)
class Method:
    nodes: tuple[NodeSpec, ...]
    barrier: str | None             # where a noisy sample re-enters with its examples (None: no barrier)
    scored_role: str                # whose reply's score ranks relabels

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def roles(self) -> list[str]:
        """The roles whose models are called, in graph order, each once."""
        return list(dict.fromkeys(n.role for n in self.nodes if n.role))

    @property
    def prompts(self) -> list[str]:
        """The templates the method renders, in graph order."""
        return [p for n in self.nodes for p in n.prompts]

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)


def scores_trust(config: RobustFTConfig, task: str | None) -> bool:
    """Whether the checker scores the given responses' trust (agents/trust.py): open-ended data."""
    return task == "open" and config.denoise.trust and "checker" not in config.denoise.ablate


def relabels_scored(config: RobustFTConfig, task: str | None) -> bool:
    """Whether the reviewer scores each relabel's own trust (denoise.trust_selection)."""
    d = config.denoise
    return (scores_trust(config, task) and d.checker == "trust" and d.trust_selection
            and not {"context", "reviewer"} & set(d.ablate))


def method_of(config: RobustFTConfig, task: str | None = None) -> Method:
    """The nodes `config` runs on data of `task` (None: a task that is not open-ended)."""
    d = config.denoise
    ablate = set(d.ablate)
    nodes: list[NodeSpec] = []
    reasoning = "reasoning" not in ablate
    nodes.append(NodeSpec("base", "base", ("base",), "reasoning" if reasoning else "checker", "unless_failed",
                          "base expert (answers directly)"))
    if reasoning:
        nodes.append(NodeSpec("reasoning", "reasoning",
                              ("reasoning", "reflection") if d.reflection_rounds > 0 else ("reasoning",),
                              "checker", "unless_failed", "reasoning expert (step by step, then reflects)"))
    trust = scores_trust(config, task)
    judges = (d.checker == "judge" and "checker" not in ablate) or trust
    checker_prompts = ("judge",) if judges else ()
    checker_prompts += ("claim",) if trust and d.trust_claim_checks else ()
    checker_prompts += ("recheck",) if trust and d.trust_recheck else ()
    context = "context" not in ablate
    nodes.append(NodeSpec("checker", "judge" if judges else None, checker_prompts,
                          None if context else "reasoning_relabel", "end" if context else "if_noisy",
                          "checker (decides clean or noisy)"))
    if not context:
        nodes.append(NodeSpec("reasoning_relabel", None, (), None, "end",
                              "the expert's answer as the relabel (context relabeling switched off)"))
        return Method(tuple(nodes), barrier=None, scored_role="reasoning" if reasoning else "base")
    reviewer = "reviewer" not in ablate
    nodes.append(NodeSpec("context", "context", ("context",), "reviewer" if reviewer else None,
                          "unless_failed" if reviewer else "end",
                          "context relabeler (answers again, shown similar clean samples)"))
    if reviewer:
        nodes.append(NodeSpec("reviewer", "reviewer", ("reviewer",), None, "end",
                              "reviewer (weighs the reasoning and context answers, gives the label)"))
    return Method(tuple(nodes), barrier="context", scored_role="context")
