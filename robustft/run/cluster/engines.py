"""In-process models (transformers, vLLM) on a Ray cluster: each model copy in an actor of its own.

A model whose provider runs inside the robustft process (`run.ray_engine_providers`) is not loaded
by the workers. It runs in `run.ray_model_replicas` `EngineActor`s, each holding one copy and
reserving `run.ray_gpus_per_model` GPUs, and every worker (and the driver, for its pre-run
check) calls it through a `ModelProxy`, an ordinary backend whose `generate` is a call to one of
those actors. The actors are asynchronous: requests from all the workers meet on one event loop,
where the backend's micro-batcher (`robustft.backends.batching`) generates them in batches.

Configs that differ only in how they sample (the roles' temperatures, max_tokens) share one group
of actors, where the backend shares one copy of the weights between them, as in a local run.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from ...backends.base import Generation, Messages
from ...backends.registry import ModelPool
from ...config import ModelConfig

# What decides which weights a config loads: settings, then the backend's own options (transformers,
# vLLM); the other fields only change how it samples.
_WEIGHTS = ("provider", "name")
_WEIGHT_OPTIONS = ("adapter", "device", "dtype")


def engine_groups(configs: Iterable[ModelConfig], providers: Iterable[str]) -> dict[str, list[ModelConfig]]:
    """The configs that run in engine actors, grouped by the weights they load (keys are readable)."""
    providers = set(providers)
    groups: dict[str, list[ModelConfig]] = {}
    seen: set[str] = set()
    for config in configs:
        key = config.model_dump_json()
        if config.provider not in providers or key in seen:
            continue
        seen.add(key)
        values = [(field, getattr(config, field)) for field in _WEIGHTS]
        values += [(option, config.options.get(option)) for option in _WEIGHT_OPTIONS]
        weights = " ".join(f"{field}={value}" for field, value in values if value)
        groups.setdefault(weights, []).append(config)
    return groups


class EngineActor:
    """One copy of a model (all the configs of one group), generating whatever the workers send."""

    def __init__(self, configs: list[ModelConfig]):
        self.configs = {c.model_dump_json(): c for c in configs}
        self.pool = ModelPool()
        self.requests = 0

    async def start(self) -> int:
        """Load the model now: one that cannot load stops the run before its first sample."""
        for config in self.configs.values():
            self.pool.get(config)
        return os.getpid()

    async def generate(self, key: str, messages: Messages) -> Generation:
        self.requests += 1
        return await self.pool.get(self.configs[key]).generate(messages)

    async def stats(self) -> dict[str, int]:
        """Requests served and batches generated (`batch_calls` of the micro-batching backends)."""
        models = {id(m): m for m in (self.pool.get(c) for c in self.configs.values())}
        return {"requests": self.requests,
                "batches": sum(getattr(m, "batch_calls", 0) for m in models.values()),
                "pid": os.getpid()}


class ModelProxy:
    """A backend whose `generate` is a call to one of a model group's actors: the one this proxy has
    fewest requests in flight with. A dead actor's error is retried like a server's (Ray restarts
    the actor); an error the model itself raised comes back as it was raised."""

    def __init__(self, config: ModelConfig, actors: list[Any]):
        self.name = config.name or config.provider
        self.key = config.model_dump_json()
        self.actors = actors
        self.in_flight = [0] * len(actors)
        self._next = 0

    async def generate(self, messages: Messages) -> Generation:
        from ray.exceptions import RayTaskError

        counts = self.in_flight
        least = min(counts)
        i = next(j for j in (*range(self._next, len(counts)), *range(self._next)) if counts[j] == least)
        self._next = (i + 1) % len(counts)
        counts[i] += 1
        try:
            return await self.actors[i].generate.remote(self.key, messages)
        except RayTaskError as e:
            cause = e.cause
            if isinstance(cause, Exception):
                raise cause from None
            raise
        finally:
            counts[i] -= 1
