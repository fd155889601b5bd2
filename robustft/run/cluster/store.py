"""The response store on a Ray cluster: one actor owns the SQLite file, every worker calls it.

`StoreActor` runs on the driver's node and owns `DIR/responses.sqlite` (the same file, keys and
format as a local run, so a run can move between executors). It is the one place that numbers
the occurrences of identical requests (see `robustft.backends.store`), so the numbering is the
run's, not each worker's, and it remembers which batch claimed which number: when a batch is lost
with its worker, the driver calls `release_batch`, the numbers go back, and the batch sent again
claims them again and finds its completed calls in the store.

`ClusterCalls` is `ModelCalls` with the store behind that actor: a store hit costs one round
trip (`claim` returns the number and the stored reply together), a paid call one more (`put`,
awaited, so a response is on the driver's disk before the sample goes on: the same call-level
durability as a local run).
"""

from __future__ import annotations

import contextvars
from typing import Any

from ...agents.calls import ModelCalls
from ...backends.base import Generation, Messages
from ...backends.store import Occurrences, ResponseStore, request_digest, response_key
from ...config import ModelConfig
from ...errors import RobustFTError

# The batch a call belongs to (set by the worker for each batch it runs; copied into the graph's tasks).
BATCH: contextvars.ContextVar[str | None] = contextvars.ContextVar("robustft_batch", default=None)


class StoreUnavailable(RobustFTError):
    """The store actor died (it is restarted): the batch is sent again, like one whose worker died."""


class StoreActor:
    """Owns the run's response store; methods run one at a time (a synchronous Ray actor)."""

    def __init__(self, path: str):
        self.store = ResponseStore(path)
        self.occurrences = Occurrences()
        self.claims: dict[str, list[tuple[bytes, int]]] = {}

    def ready(self) -> int:
        return len(self.store)

    def claim(self, request: bytes, batch: str | None) -> tuple[int, Generation | None]:
        """The occurrence number of this request and the stored reply for it, if any."""
        n = self.occurrences.claim(request)
        if batch is not None:
            self.claims.setdefault(batch, []).append((request, n))
        return n, self.store.get(response_key(request, n))

    def release(self, request: bytes, n: int, batch: str | None) -> None:
        """A call that failed gives its number back (as `ModelCalls` does)."""
        self.occurrences.release(request, n)
        held = self.claims.get(batch) if batch is not None else None
        if held is not None and (request, n) in held:
            held.remove((request, n))

    def put(self, key: bytes, gen: Generation) -> Generation:
        return self.store.put(key, gen)

    def release_batch(self, batch: str) -> int:
        """Give back every number a lost batch claimed, answered or not; returns how many."""
        held = self.claims.pop(batch, [])
        for request, n in held:
            self.occurrences.release(request, n)
        return len(held)

    def forget(self, batch: str) -> None:
        """A batch came back: its numbers stay taken."""
        self.claims.pop(batch, None)

    def close(self) -> None:
        self.store.close()


class ClusterCalls(ModelCalls):
    """`ModelCalls` whose response store is the `StoreActor` (`store` is its actor handle)."""

    def __init__(self, pool: Any, store: Any, concurrency: int, *, backoff_s: float = 0.5):
        super().__init__(pool, None, concurrency, backoff_s=backoff_s)
        self.remote_store = store

    async def call(self, config: ModelConfig, messages: Messages) -> Generation:
        request = request_digest(self.identity(config), messages)
        batch = BATCH.get()
        store = self.remote_store
        n, hit = await _store_call(store.claim, request, batch)
        if hit is not None:
            self.stats.reused += 1
            return hit
        try:
            gen = await self._send(config, messages)
        except BaseException:
            store.release.remote(request, n, batch)
            raise
        gen = await _store_call(store.put, response_key(request, n), gen)
        stats = self.stats
        stats.paid += 1
        stats.prompt_tokens += gen.prompt_tokens
        stats.completion_tokens += gen.completion_tokens
        return gen


async def _store_call(method: Any, *args: Any) -> Any:
    from ray.exceptions import RayActorError

    try:
        return await method.remote(*args)
    except RayActorError as e:
        raise StoreUnavailable(f"the response store actor is unavailable: {e}") from None
