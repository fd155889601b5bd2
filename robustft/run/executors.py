"""Where a run's batches go through the graph: in this process, or on a Ray cluster.

The runner's phases (plan, detect, the barrier, relabel, select) do not care which. An executor
takes the samples of one phase as states, sends them through the graph in batches, and hands
each sample's final state to `DenoiseRun._record` (the journal) as it comes back, on the driver:

    executor = make_executor(run)
    await executor.start(samples)                    # before the first model call (the preflight)
    await executor.drive("detect", states, total)    # once per phase
    await executor.close()

`LocalExecutor` runs the batches on this process's event loop; `robustft.run.cluster.RayExecutor`
sends them to Ray workers (docs/ray.md). The clean index, selection and the run directory stay
with the runner either way.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
from typing import TYPE_CHECKING, Iterable, Iterator, Protocol

from ..errors import ConfigError
from ..graph.state import SampleState

if TYPE_CHECKING:
    from .runner import DenoiseRun


class Executor(Protocol):
    async def start(self, samples: int) -> None:
        """Get ready to run `samples` samples (the run's whole remaining work)."""

    async def drive(self, phase: str, states: Iterable[SampleState], total: int) -> None: ...

    async def close(self) -> None: ...


def make_executor(run: "DenoiseRun") -> Executor:
    if run.config.run.executor == "ray":
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("run.executor is 'ray' but Ray is not installed: pip install 'robustft[ray]' (or "
                              "pip install ray), or use --executor local")
        from .cluster import RayExecutor

        return RayExecutor(run)
    return LocalExecutor(run)


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

    def __init__(self, run: "DenoiseRun"):
        self.run = run

    async def start(self, samples: int) -> None:
        pass

    async def close(self) -> None:
        pass

    async def drive(self, phase: str, states: Iterable[SampleState], total: int) -> None:
        """Send samples through the graph in batches, with enough in flight to keep `concurrency`
        calls busy, appending each sample's record to the journal as it leaves the graph.

        A batch is one graph invocation (see `graph.build`); a sample that leaves early is written
        at once, so batching costs no durability. More samples are in flight than calls, so that
        when some samples of a batch wait on a slow call, the others' calls keep the servers busy.
        """
        if not total:
            return
        run = self.run
        app, run_batch, record = run.app, run._run_batch, run._record
        concurrency = run.config.denoise.concurrency
        if run.config.denoise.batch_api:
            concurrency = max(concurrency, total)  # every sample waits on the batch at once: one batch per step
        size = batch_size(concurrency)
        batches = chunks(iter(states), size)
        with run.display.phase(phase, total) as bar:
            async def worker() -> None:
                for batch in batches:
                    left = {state["id"]: state for state in batch}
                    async for final in run_batch(app, batch):
                        left.pop(final["id"], None)
                        bar.advance(failed=record(final))
                    for state in left.values():  # cannot happen unless LangGraph drops a sample
                        bar.advance(failed=record({**state, "status": "failed", "error": UNSEEN}))

            workers = max(1, min(-(-total // size), -(-2 * concurrency // size)))
            tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
