"""Where a run's batches go through the graph: in this process, or on a Ray cluster.

The runner's phases (plan, detect, the barrier, relabel, select) do not care which. An executor
gets what it needs as one explicit `RunContext`, takes the samples of one phase as states, sends
them through the graph in batches and yields each sample's final state as it comes back; the
runner records it (the journal is the runner's alone). An executor changes nothing of the
runner's: what it has to tell comes back as values, which the runner merges.

    executor = LocalExecutor(context)                 # or cluster.RayExecutor(context)
    for config, backend in await executor.start(samples):   # before the first model call
        pool.add(config, backend)                     # models the driver reaches through the executor
    async for item in executor.drive("detect", states, total):    # once per phase
        ...                                           # a final state: the runner journals it;
                                                      # `CallCounts`: calls made elsewhere, counted
    await executor.close()

`LocalExecutor` runs the batches on this process's event loop; `robustft.run.cluster.RayExecutor`
sends them to Ray workers (docs/ray.md). The clean index, selection and the run directory stay
with the runner either way.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Protocol

from ..agents.calls import CallCounts
from ..agents.state import SampleState
from ..backends.base import ChatBackend
from ..config import ModelConfig, RobustFTConfig


@dataclass
class RunContext:
    """What an executor gets from the runner, and all it gets."""

    config: RobustFTConfig
    task: str
    roles: list[str]                      # the roles the method uses (`Method.roles`)
    role_models: dict[str, ModelConfig]   # each role's resolved model
    store_path: Path                      # the response store (the Ray executor's store actor opens it)
    say: Callable[[str], None]
    tracing: Any = None
    # The compiled graph and `graph.build.run_batch`, set by the runner once LangGraph is imported
    # (it is imported while the first calls go out).
    app: Any = None
    run_batch: Callable[[Any, list[SampleState]], AsyncIterator[SampleState]] | None = None


# What `Executor.start` gives back: models the driver's own calls (the preflight) go through.
Models = list[tuple[ModelConfig, ChatBackend]]


class Executor(Protocol):
    async def start(self, samples: int) -> Models:
        """Get ready to run `samples` samples (the run's whole remaining work)."""

    def drive(self, phase: str, states: Iterable[SampleState], total: int) -> AsyncIterator[SampleState | CallCounts]:
        """Each sample's final state, as it leaves the graph; and what calls made outside this
        process cost, as `CallCounts`, for the runner to count."""

    async def close(self) -> None: ...


def batch_size(concurrency: int) -> int:
    """Samples per graph invocation: enough to spread a LangGraph invocation's cost, few enough that
    `concurrency` calls need several batches in flight."""
    return max(1, min(16, concurrency // 4))


def chunks(items: Iterator, size: int) -> Iterator[list]:
    while batch := list(itertools.islice(items, size)):
        yield batch


UNSEEN = "internal error: the sample left the graph unseen"


class LocalExecutor:
    """Every batch on this process's event loop (the runner's default)."""

    def __init__(self, context: RunContext):
        self.context = context

    async def start(self, samples: int) -> Models:
        return []  # the driver's calls go to its own models

    async def close(self) -> None:
        pass

    async def drive(self, phase: str, states: Iterable[SampleState], total: int) -> AsyncIterator[SampleState]:
        """Send samples through the graph in batches, with enough in flight to keep `concurrency`
        calls busy, yielding each sample's final state as it leaves the graph.

        A batch is one graph invocation (see `graph.build`); a sample that leaves early is yielded
        at once, so batching costs no durability. More samples are in flight than calls, so that
        when some samples of a batch wait on a slow call, the others' calls keep the servers busy.
        """
        if not total:
            return
        ctx = self.context
        app, run_batch = ctx.app, ctx.run_batch
        concurrency = ctx.config.denoise.concurrency
        if ctx.config.denoise.batch_api:
            concurrency = max(concurrency, total)  # every sample waits on the batch at once: one batch per step
        size = batch_size(concurrency)
        batches = chunks(iter(states), size)
        finished: asyncio.Queue = asyncio.Queue()

        async def worker() -> None:
            for batch in batches:
                left = {state["id"]: state for state in batch}
                async for final in run_batch(app, batch):
                    left.pop(final["id"], None)
                    finished.put_nowait(final)
                for state in left.values():  # cannot happen unless LangGraph drops a sample
                    finished.put_nowait({**state, "status": "failed", "error": UNSEEN})

        workers = max(1, min(-(-total // size), -(-2 * concurrency // size)))
        tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
        all_done = asyncio.gather(*tasks)
        all_done.add_done_callback(lambda _: finished.put_nowait(None))  # after every state they queued
        try:
            while (final := await finished.get()) is not None:
                yield final
            await all_done  # a worker's exception, after the states that finished before it
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if all_done.done() and not all_done.cancelled():
                all_done.exception()  # retrieved: raised above, or the run is already stopping
