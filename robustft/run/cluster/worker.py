"""A Ray worker: the runner's graph, run on the batches of samples the driver sends it.

Each `SampleWorker` builds what a local run builds (the prompts, the agents' runtime, the compiled
graph) from the run's config, with two differences: its response store is the driver's
`StoreActor` (`ClusterCalls`), and in-process models are proxies to their engine actors. What it
keeps between batches does not change an answer (only whether a role's model gives logprobs at
all is learned per worker), so a batch can go to any worker, and again after a worker died.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from ...agents.calls import CallCounts
from ...agents.runtime import AgentRuntime
from ...agents.state import SampleState
from ...backends.registry import ModelPool
from ...config import ROLES, RobustFTConfig
from ...graph.build import build_graph, run_batch
from ...prompts import PromptLibrary
from ...secrets import register_api_keys
from ...tracing import call_hooks
from ..collector import TRACED_YOUNG_THRESHOLD, YOUNG_THRESHOLD, tune_this_process
from ..executors import UNSEEN
from .engines import ModelProxy
from .store import BATCH, ClusterCalls


def prompt_files(config: RobustFTConfig) -> dict[str, str] | None:
    """The user's templates (denoise.prompts_dir), sent along: a worker's node need not have the folder."""
    folder = config.denoise.prompts_dir
    if folder is None:
        return None
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(folder).iterdir())
            if p.is_file() and p.suffix == ".jinja"}


def api_keys(config: RobustFTConfig) -> dict[str, str]:
    """The values of the key variables the models name, as the driver has them (a worker's node may
    not): they travel in the workers' constructor arguments only, never to a file or a log."""
    names = {config.model_for(role).api_key_env for role in ROLES}
    return {name: os.environ[name] for name in sorted(names) if os.environ.get(name)}


def _actor(name: str, tries: int = 5) -> Any:
    """The handle of the run's actor `name`; a cluster under heavy load can time a lookup out."""
    import ray
    from ray.exceptions import GetTimeoutError

    for attempt in range(tries):
        try:
            return ray.get_actor(name)
        except GetTimeoutError:
            if attempt == tries - 1:
                raise


class SampleWorker:
    def __init__(self, config: RobustFTConfig, task: str, prompts: dict[str, str] | None, actors: dict[str, Any],
                 concurrency: int, keys: dict[str, str], trace: dict[str, Any] | None = None):
        # `actors` names them ({"store": name, "engines": {model config JSON: [names]}}): a handle
        # passed as an argument is a reference Ray may not keep for a restart (ray-project/ray#53727);
        # a name is looked up again by each life of the worker.
        store = _actor(actors["store"])
        engines = {key: [_actor(name) for name in names] for key, names in actors["engines"].items()}
        for name, value in keys.items():
            os.environ.setdefault(name, value)
        register_api_keys(config)
        self._prompt_dir = None
        if prompts is not None:
            self._prompt_dir = tempfile.TemporaryDirectory(prefix="robustft-prompts-")
            for name, text in prompts.items():
                (Path(self._prompt_dir.name) / name).write_text(text, encoding="utf-8")
        library = PromptLibrary(self._prompt_dir.name if self._prompt_dir else None)
        pool = ModelPool()
        for role in ROLES:
            model = config.model_for(role)
            replicas = engines.get(model.model_dump_json())
            if replicas:
                pool.add(model, ModelProxy(model, replicas))
        self.calls = ClusterCalls(pool, store, concurrency)
        # The driver traces: this worker's spans continue its run span and go to the same collector.
        self.tracing = None
        if trace is not None:
            for name, value in trace["env"].items():
                os.environ.setdefault(name, value)
            from ...tracing.otel import OtelTracing

            self.tracing = OtelTracing(config, parent=trace["parent"])
        self.calls.tracing = call_hooks(self.tracing, config)
        self.rt = AgentRuntime(config=config, task=task, pool=pool, prompts=library, calls=self.calls)
        self.app = build_graph(self.rt).compile()
        # Which life of this worker a report comes from: a restarted worker counts from zero again.
        self.life = uuid.uuid4().hex
        # This process only runs samples: see robustft.run.collector (a higher threshold when tracing).
        tune_this_process(YOUNG_THRESHOLD if self.tracing is None else TRACED_YOUNG_THRESHOLD)

    async def ready(self) -> int:
        return os.getpid()

    async def run(self, batch: str, states: list[SampleState]) -> tuple[list[SampleState], str, CallCounts]:
        """Run one batch; return the samples' final states and this worker's call counts so far."""
        BATCH.set(batch)
        finished = []
        left = {state["id"]: state for state in states}
        async for final in run_batch(self.app, states):
            left.pop(final["id"], None)
            finished.append(final)
        finished.extend({**state, "status": "failed", "error": UNSEEN} for state in left.values())
        # A worker may be killed once its batch is back: what it traced leaves first.
        if self.tracing is not None:
            await self.tracing.flush()
        hooks = self.calls.tracing
        if hooks is not None and hooks is not self.tracing:
            await asyncio.to_thread(hooks.close)  # LangSmith's runs
        return finished, self.life, self.calls.stats.counts()
