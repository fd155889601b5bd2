"""The per-sample graph for LangGraph's own tooling: `langgraph dev` and LangGraph Studio.

`langgraph.json` at the repository root points at `make_graph`:

    ROBUSTFT_CONFIG=run.yaml langgraph dev --host 127.0.0.1     # pip install "langgraph-cli[inmem]"

`make_graph()` builds what a run builds for its samples (the prompts, the agents' runtime with the
config's models, the compiled graph of `graph.build`) from the YAML config named by
`ROBUSTFT_CONFIG` (every setting's default without it). There is no response store and no run
directory: each call goes to the model. The graph's input is a batch, `{"samples": [state, ...]}`,
each state as `sample_state` makes it from a row; its output's `finished` holds each sample's
final state, and `run.records.sample_record` turns one into the record samples.jsonl would hold. A
state with `examples` (clean samples, as the barrier retrieves them) enters at the context
relabeler, as in a run's second pass.
"""

from __future__ import annotations

import os
from typing import Any

from ..agents.calls import ModelCalls
from ..agents.runtime import AgentRuntime
from ..agents.state import SampleState, initial_state
from ..backends.registry import ModelPool
from ..config import RobustFTConfig, load_config
from ..data import load_dataset
from ..data.samples import Sample
from ..prompts import PromptLibrary
from ..secrets import register_api_keys
from .build import build_graph


def config_from_environment() -> RobustFTConfig:
    return load_config(os.environ.get("ROBUSTFT_CONFIG") or None)


def task_of(config: RobustFTConfig) -> str:
    """The task the graph's prompts and answer parsing are for: the config's, or its data's."""
    if config.data.task != "auto":
        return config.data.task
    if config.data.path is not None:
        return load_dataset(config.data).task
    return "multiple_choice"


def make_graph(config: RobustFTConfig | None = None) -> Any:
    """The compiled per-sample graph (the factory `langgraph.json` names)."""
    if not isinstance(config, RobustFTConfig):  # langgraph dev passes its own RunnableConfig, or nothing
        config = config_from_environment()
    register_api_keys(config)
    pool = ModelPool()
    runtime = AgentRuntime(config=config, task=task_of(config), pool=pool,
                           prompts=PromptLibrary(config.denoise.prompts_dir),
                           calls=ModelCalls(pool, None, config.denoise.concurrency))
    return build_graph(runtime).compile()


def sample_state(row: dict[str, Any], config: RobustFTConfig | None = None) -> SampleState:
    """The graph's input state for one data row (`id`, `question`, `answer`, `options`)."""
    config = config or config_from_environment()
    sample: Sample = load_dataset(config.data, [row]).samples[0]
    return initial_state(sample)
