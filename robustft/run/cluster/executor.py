"""`RayExecutor`: the runner's batches sent to Ray workers; everything else stays on the driver.

    driver (robustft denoise)                     Ray cluster
      plan, journal, run dir, clean index,  --->  SampleWorker x N   (graph; ClusterCalls)
      selection, outputs                          EngineActor x R    (in-process models, GPUs)
      StoreActor (driver's node)           <---   every claim/put of a model response

A batch goes to a worker with room for it (each worker keeps about twice its share of
`denoise.concurrency` in calls' worth of samples in flight) and comes back as the samples' final
states, which the driver journals as a local run does. A batch whose worker died (the process,
or its node) is sent again: its claims on the response store are released first, so its
completed calls come back from the store. A batch lost twice is split into single samples, and a
sample whose worker died `MAX_LOSSES` times is recorded as failed, so one sample that kills its
worker cannot stop the run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable

from ...backends.retry import describe
from ...errors import RobustFTError
from ...agents.calls import CallCounts
from ...agents.state import SampleState
from ..executors import Models, RunContext, batch_size, chunks
from .engines import EngineActor, ModelProxy, engine_groups
from .store import StoreActor, StoreUnavailable
from .worker import SampleWorker, api_keys, prompt_files

log = logging.getLogger("robustft")

MAX_LOSSES = 3          # a sample whose worker died this many times is recorded as failed
RESTART_WAIT_S = 300.0  # how long a dead worker may take to come back before it is given up


@dataclass
class _Batch:
    states: list[SampleState]
    losses: int = 0


@dataclass
class _Worker:
    handle: Any
    size: int                         # samples per batch
    depth: int                        # batches in flight at once
    in_flight: int = 0
    up: bool = True
    probe: asyncio.Task | None = field(default=None, repr=False)


def _lost_errors() -> tuple[type[BaseException], ...]:
    from ray import exceptions as rx

    return (rx.RayActorError, rx.WorkerCrashedError, rx.NodeDiedError, rx.ObjectLostError, rx.OwnerDiedError,
            rx.OutOfMemoryError, rx.LocalRayletDiedError)


def _creation_error(exc: BaseException) -> str:
    """The exception line of an actor that failed to start (Ray gives it as text, with a traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class RayExecutor:
    def __init__(self, context: RunContext):
        self.context = context
        self.settings = context.config.run
        self.started_ray = False
        self.store: Any = None
        self.engines: dict[str, list[Any]] = {}    # group -> actor handles
        self.workers: list[_Worker] = []
        self.lost_batches = 0
        self._counts: dict[str, CallCounts] = {}    # a worker life -> its last reported call counts
        self._batches = 0

    # --- start and stop ------------------------------------------------------------------------

    async def start(self, samples: int) -> Models:
        """Start the store, model and worker actors; the driver's calls to in-process models (the
        preflight) go to the model actors too: those come back, for the runner's pool."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ctx, settings = self.context, self.settings
        if not ray.is_initialized():
            try:
                ray.init(address=settings.ray_address or "local", include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise RobustFTError(f"run.ray_address {settings.ray_address!r}: cannot connect to the Ray cluster "
                                    f"({describe(e)}); check the address (`ray status` on the head node prints "
                                    "it), or leave it unset to start Ray on this machine") from None
            self.started_ray = True
        here = ray.get_runtime_context().get_node_id()
        prefix = self.prefix = f"robustft-{uuid.uuid4().hex[:12]}"
        self.store = ray.remote(StoreActor).options(
            name=f"{prefix}-store", num_cpus=0, max_restarts=-1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        ).remote(str(ctx.store_path))

        concurrency = ctx.config.denoise.concurrency
        gpus = settings.ray_gpus_per_model
        groups = engine_groups((ctx.role_models[role] for role in ctx.roles), settings.ray_engine_providers)
        by_config: dict[str, list[Any]] = {}
        names: dict[str, list[str]] = {}
        for g, (group, configs) in enumerate(groups.items()):
            called = [f"{prefix}-model{g}-{r}" for r in range(settings.ray_model_replicas)]
            actors = [ray.remote(EngineActor).options(
                name=name, num_cpus=1, num_gpus=gpus, max_restarts=-1, max_concurrency=max(1000, 2 * concurrency),
            ).remote(configs) for name in called]
            self.engines[group] = actors
            for config in configs:
                by_config[config.model_dump_json()] = actors
                names[config.model_dump_json()] = called
        await self._started([a.start.remote() for actors in self.engines.values() for a in actors], "model actor")
        proxies: Models = []
        for config in ctx.role_models.values():
            actors = by_config.get(config.model_dump_json())
            if actors:
                proxies.append((config, ModelProxy(config, actors)))

        cpus = float(ray.cluster_resources().get("CPU", 0))
        models = sum(len(actors) for actors in self.engines.values())
        free = cpus - models  # each model actor holds a CPU
        wanted = settings.ray_workers or max(1, int(free))
        n = max(1, min(wanted, concurrency, samples))
        cpu_each = 1.0 if free >= n else max(0.0, free / n)
        shares = [concurrency // n + (i < concurrency % n) for i in range(n)]
        keys, prompts = api_keys(ctx.config), prompt_files(ctx.config)
        trace = ctx.tracing.worker_settings() if ctx.tracing is not None else None
        actors = {"store": f"{prefix}-store", "engines": names}
        for i, share in enumerate(shares):
            handle = ray.remote(SampleWorker).options(
                name=f"{prefix}-worker{i}", num_cpus=cpu_each, max_restarts=-1, max_task_retries=0,
                max_concurrency=max(1000, 4 * share),
            ).remote(ctx.config, ctx.task, prompts, actors, share, keys, trace)
            size = batch_size(share)
            self.workers.append(_Worker(handle, size, max(1, math.ceil(2 * share / size))))
        await self._started([self.store.ready.remote()], "response store actor")
        await self._started([w.handle.ready.remote() for w in self.workers], "worker")
        ctx.say(f"Ray: {_count_of(n, 'worker')} ({'+'.join(map(str, shares))} calls in flight)"
                + (f", {_count_of(models, 'model actor')} ({gpus:g} GPUs each)" if models else "")
                + f", the response store on this node ({ctx.store_path})")
        return proxies

    async def _started(self, refs: list[Any], what: str) -> None:
        from ray.exceptions import RayTaskError

        try:
            await asyncio.gather(*refs)
        except RayTaskError as e:
            cause = e.cause
            raise (cause if isinstance(cause, RobustFTError) else
                   RobustFTError(f"a Ray {what} failed to start: {describe(cause)}")) from None
        except _lost_errors() as e:
            why = _creation_error(e)
            hint = (". Every node needs robustft installed, the same version as here, with the extras its "
                    "backends need" if "ModuleNotFoundError" in why or "ImportError" in why else "")
            raise RobustFTError(f"a Ray {what} failed to start: {why}{hint}") from None

    async def close(self) -> None:
        import ray

        if not ray.is_initialized():
            return
        for worker in self.workers:
            if worker.probe is not None:
                worker.probe.cancel()
            ray.kill(worker.handle)
        engines = [actor for actors in self.engines.values() for actor in actors]
        if engines:
            try:
                served = await asyncio.wait_for(asyncio.gather(*(a.stats.remote() for a in engines)), 30)
                requests, batches = sum(s["requests"] for s in served), sum(s["batches"] for s in served)
                self.context.say(f"Ray model actors: {requests} requests generated in {batches} batches")
            except Exception as e:  # noqa: BLE001 - figures only
                log.warning(f"the Ray model actors did not report ({describe(e)})")
        for actor in engines:
            ray.kill(actor)
        if self.store is not None:
            try:
                await asyncio.wait_for(self.store.close.remote(), 30)
            except Exception as e:  # noqa: BLE001 - every response is already committed
                log.warning(f"the response store actor did not close cleanly ({describe(e)}); nothing is lost")
            ray.kill(self.store)
        if self.started_ray:
            ray.shutdown()

    # --- one phase -------------------------------------------------------------------------------

    async def drive(self, phase: str, states: Iterable[SampleState], total: int
                    ) -> AsyncIterator[SampleState | CallCounts]:
        """Each sample's final state as its batch comes back from a worker, after what the worker's
        calls cost since its last report (see `Executor`)."""
        from ray.exceptions import RayTaskError

        if not total:
            return
        lost_errors = _lost_errors()
        size = min(w.size for w in self.workers)
        source = chunks(iter(states), size)
        again: deque[_Batch] = deque()
        tasks: dict[asyncio.Future, tuple[_Worker, _Batch, str]] = {}
        exhausted = False

        def next_batch() -> _Batch | None:
            nonlocal exhausted
            if again:
                return again.popleft()
            if exhausted:
                return None
            states = next(source, None)
            if states is None:
                exhausted = True
                return None
            return _Batch(states)

        try:
            while True:
                for worker in self.workers:
                    while worker.up and worker.in_flight < worker.depth:
                        batch = next_batch()
                        if batch is None:
                            break
                        self._batches += 1
                        token = f"{phase}-{self._batches}"
                        task = asyncio.ensure_future(_result(worker.handle.run.remote(token, batch.states)))
                        tasks[task] = (worker, batch, token)
                        worker.in_flight += 1
                probes = {w.probe for w in self.workers if w.probe is not None}
                if not tasks:
                    if exhausted and not again:
                        break
                    if not probes:
                        raise RobustFTError("every Ray worker has died and none came back; the run stopped "
                                            "with its progress kept: check the cluster (`ray status`), then "
                                            "run the same command again to continue")
                done, _ = await asyncio.wait([*tasks, *probes], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task in probes:
                        continue  # the probe's callback has brought its worker back, or given it up
                    worker, batch, token = tasks.pop(task)
                    worker.in_flight -= 1
                    try:
                        finished, life, counts = task.result()
                    except lost_errors as e:
                        if (failed := await self._lost(worker, batch, token, e, again)) is not None:
                            yield failed
                        continue
                    except RayTaskError as e:
                        if isinstance(e.cause, StoreUnavailable):
                            if (failed := await self._lost(worker, batch, token, e.cause, again)) is not None:
                                yield failed
                            continue
                        raise (e.cause if isinstance(e.cause, BaseException) else e) from None
                    self.store.forget.remote(token)
                    yield self._count(life, counts)
                    for final in finished:
                        yield final
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _lost(self, worker: _Worker, batch: _Batch, token: str, error: BaseException,
                    again: deque) -> SampleState | None:
        """A batch whose worker died: give back its claims, then send it again; or, for a poison
        sample, its final state: failed."""
        import ray

        try:
            await self.store.release_batch.remote(token)
        except _lost_errors():
            pass  # the store actor restarted: it holds no claims
        self.lost_batches += 1
        batch.losses += 1
        why = describe(error)
        failed = None
        if batch.losses >= MAX_LOSSES and len(batch.states) == 1:
            state = batch.states[0]
            log.warning(f"sample {state['id']}: its Ray worker died {batch.losses} times ({why}); recorded as failed")
            failed = {**state, "status": "failed", "error": (
                f"the Ray worker running this sample died {batch.losses} times (the last time: {why}); "
                "run again to retry it")}
        elif batch.losses >= 2 and len(batch.states) > 1:
            log.warning(f"a batch of {len(batch.states)} samples lost its Ray worker twice ({why}); sending its "
                        "samples again one by one")
            again.extendleft(_Batch([state], batch.losses) for state in reversed(batch.states))
        else:
            log.warning(f"a Ray worker died with {len(batch.states)} samples in flight ({why}); sending them "
                        "again (their finished model calls come back from the response store)")
            again.appendleft(batch)
        if worker.up:
            worker.up = False
            worker.probe = asyncio.ensure_future(_probe(worker, ray))
        return failed

    def _count(self, life: str, counts: CallCounts) -> CallCounts:
        """What a worker's calls cost since its last report (a worker's counts only grow within
        one life; a report overtaken by a later one adds nothing)."""
        before = self._counts.get(life, CallCounts())
        now = self._counts[life] = before.latest(counts)
        return now.since(before)


def _count_of(n: int, thing: str) -> str:
    return f"{n} {thing}{'s' if n != 1 else ''}"


async def _result(ref: Any) -> Any:
    return await ref


async def _probe(worker: _Worker, ray: Any) -> None:
    """Wait for a worker that lost a batch to come back (Ray restarts it); give it up if it does not."""
    try:
        await asyncio.wait_for(_result(worker.handle.ready.remote()), RESTART_WAIT_S)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - dead for good, or not back in time
        log.warning(f"a Ray worker did not come back ({describe(e)}); the run goes on without it")
        ray.kill(worker.handle)
        worker.probe = None
        return
    worker.up = True
    worker.probe = None
