"""The response store on a Ray cluster: one actor owns the SQLite file, every worker calls it.

`StoreActor` runs on the driver's node and owns `DIR/responses.sqlite` (the same file, keys and
format as a local run, so a run can move between executors). It is the one place that numbers
the occurrences of identical requests (see `robustft.backends.store`), so the numbering is the
run's, not each worker's, and it remembers which batch claimed which number: when a batch is lost
with its worker, the driver calls `release_batch`, the numbers go back, and the batch sent again
claims them again and finds its completed calls in the store.

`ClusterCalls` is `ModelCalls` with the store behind that actor. Each call claims its number
(the reply comes back with it when the store has one) and, when paid, puts its response; the put
is awaited, so a response is on the driver's disk before the sample goes on (the local runner's
call-level durability). A worker's `StoreClient` gathers the claims, puts and releases that its
samples make at the same moment (a graph step starts the nodes of a whole batch together) into
one round trip to the actor.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from ...agents.calls import ModelCalls
from ...backends.base import Generation, Messages
from ...backends.store import (Occurrences, ResponseStore, decode_generation, encode_generation,
                               request_digest, response_key)
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

    def exchange(self, releases: list[tuple[bytes, int, str | None]], puts: list[tuple[bytes, Generation]],
                 claims: list[tuple[bytes, str | None]]) -> list[tuple[int, Generation | None]]:
        """A worker's gathered operations, in this order: failed calls give their numbers back, paid
        calls are stored, and each claim gets its occurrence number and the stored reply, if any."""
        for request, n, batch in releases:
            self.occurrences.release(request, n)
            held = self.claims.get(batch) if batch is not None else None
            if held is not None and (request, n) in held:
                held.remove((request, n))
        for key, gen in puts:
            self.store.put(key, gen)
        found = []
        for request, batch in claims:
            n = self.occurrences.claim(request)
            if batch is not None:
                self.claims.setdefault(batch, []).append((request, n))
            found.append((n, self.store.get(response_key(request, n))))
        return found

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


class StoreClient:
    """A worker's side of the store actor: what its calls ask in one event-loop step goes in one
    `exchange`."""

    def __init__(self, actor: Any):
        self.actor = actor
        self._releases: list[tuple[bytes, int, str | None]] = []
        self._puts: list[tuple[tuple[bytes, Generation], asyncio.Future]] = []
        self._claims: list[tuple[tuple[bytes, str | None], asyncio.Future]] = []
        self._scheduled = False

    def claim(self, request: bytes, batch: str | None) -> asyncio.Future:
        """Resolves to (occurrence number, stored reply or None)."""
        return self._add(self._claims, (request, batch))

    def put(self, key: bytes, gen: Generation) -> asyncio.Future:
        """Resolves once the response is committed."""
        return self._add(self._puts, (key, gen))

    def release(self, request: bytes, n: int, batch: str | None) -> None:
        self._releases.append((request, n, batch))
        self._schedule()

    def _add(self, queue: list, item: Any) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        queue.append((item, future))
        self._schedule()
        return future

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._flush()))

    async def _flush(self) -> None:
        from ray.exceptions import RayActorError, RayTaskError

        releases, puts, claims = self._releases, self._puts, self._claims
        self._releases, self._puts, self._claims, self._scheduled = [], [], [], False
        waiting = [future for _, future in puts + claims]
        try:
            found = await self.actor.exchange.remote(releases, [item for item, _ in puts],
                                                     [item for item, _ in claims])
        except BaseException as e:  # noqa: BLE001 - handed to every call waiting on this exchange
            if isinstance(e, RayActorError):
                error: BaseException = StoreUnavailable(f"the response store actor is unavailable: {e}")
            elif isinstance(e, RayTaskError) and isinstance(e.cause, Exception):
                error = e.cause  # the store's own error, e.g. StoreWriteError (a full disk): it stops the run
            else:
                error = e
            for future in waiting:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(e, Exception):
                raise
            return
        for future, result in zip(waiting, [None] * len(puts) + found):
            if not future.done():
                future.set_result(result)


class ClusterCalls(ModelCalls):
    """`ModelCalls` whose response store is the `StoreActor`, reached through a `StoreClient`."""

    def __init__(self, pool: Any, store: Any, concurrency: int, *, backoff_s: float = 0.5):
        super().__init__(pool, None, concurrency, backoff_s=backoff_s)
        self.remote_store = StoreClient(store)

    async def _call(self, config: ModelConfig, messages: Messages, span: Any, role: str | None) -> Generation:
        request = request_digest(self.identity(config), messages)
        batch = BATCH.get()
        store = self.remote_store
        n, hit = await store.claim(request, batch)
        if hit is not None:
            self.stats.reused += 1
            if span is not None:
                self.tracing.stored(span, hit)
            return hit
        try:
            gen = await self._send(config, messages, role)
        except BaseException:
            store.release(request, n, batch)
            raise
        blob = encode_generation(gen)
        await store.put(response_key(request, n), gen)
        if span is not None:
            self.tracing.paid(span, gen)
        return self._paid(decode_generation(blob))  # the stored form, as a local run uses it
