"""One micro-batcher for the in-process backends (transformers, vLLM).

`generate` only queues the request and awaits its result; one worker thread per model takes up to
`model.batch_size` queued requests, generates them together in a single call and hands each caller
its own `Generation`. All model and tokenizer work stays on that one thread, so any number of
asyncio tasks (on any event loop) may call `generate` at once.

When batches form:

- The worker is woken with `loop.call_soon`, after the tasks that are ready on the event loop have
  run, so requests started together (`asyncio.gather`, a LangGraph superstep) form one batch.
- Callers come back: a denoise run's samples each make one call after another, so the callers
  served by a batch return with their next request a few milliseconds apart (each first runs its
  share of the graph on the event loop). Taking only the requests queued when the worker wakes
  splits them into a full batch and a tail of small ones, and a small batch costs a decoding loop
  nearly as long as a full one. So the worker waits for a batch to fill when more requests are
  known to be coming: while fewer are queued than were in flight at once during the last batch
  (queued or being generated; capped at `batch_size`). The wait is bounded by half the last
  batch's generation time, so callers that do not come back cost at most a third of the
  throughput. A lone caller is never held: with one request in flight, one queued is enough.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from .base import BackendOptions, Generation, Messages

# The longest wait for a batch to fill, as a fraction of the last batch's generation time.
FILL_WAIT_FRACTION = 0.5


class LocalOptions(BackendOptions):
    """The options of a model generated in this process (transformers, vllm)."""

    device: str = Field("auto", description="'cpu', 'cuda', 'auto' (cuda when available).")
    dtype: str = Field("auto", description="'auto', 'float32', 'bfloat16', ...")
    batch_size: int = Field(32, gt=0, description=(
        "Concurrent requests generated together, at most (transformers splits a batch that runs out of GPU "
        "memory; for vllm set it near denoise.concurrency)."))


@dataclass
class _Request:
    messages: Messages
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class _MicroBatchingModel:
    """Queues `generate` calls and runs them in batches on one worker thread.

    Subclasses implement `_generate_batch(list of message lists) -> list of Generation or
    Exception` (one per request, in order); an exception raised by it fails the whole batch. They
    may override `_worker_started()`, run once on the worker thread before its first batch.
    `batch_calls` counts the batches run and `batch_sizes` how many batches had each size (tests
    and benchmarks read them).
    """

    name: str

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.batch_calls = 0
        self.batch_sizes: Counter[int] = Counter()
        self._pending: deque[_Request] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._draining = False
        self._closing = False
        self._in_flight = 0        # queued or being generated
        self._peak_in_flight = 0   # the most in flight at once since the last batch was taken
        self._last_batch_s = 0.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"robustft-{type(self).__name__}",
                                            initializer=self._start_worker)

    async def generate(self, messages: Messages) -> Generation:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._ready:
            if self._closing:
                raise RuntimeError(f"{self.name}: generate() after close()")
            self._pending.append(_Request(messages, future, loop))
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            self._ready.notify()
        loop.call_soon(self._wake)
        return await future

    def close(self) -> None:
        """Stop the worker thread once the queued requests are done (without waiting for more)."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._executor.shutdown(wait=True)

    def _generate_batch(self, batch: list[Messages]) -> list[Generation | Exception]:
        raise NotImplementedError

    def _worker_started(self) -> None:
        """Runs once on the worker thread, before its first batch."""

    def _start_worker(self) -> None:
        try:
            self._worker_started()
        except Exception as e:  # noqa: BLE001 - a tuning step that fails must not break the worker
            logging.getLogger("robustft").warning("%s: worker set-up failed, going on without it: %s", self.name, e)

    def _wake(self) -> None:
        with self._ready:
            if self._draining or not self._pending:
                return
            self._draining = True
        self._executor.submit(self._drain)

    def _take_batch(self) -> list[_Request]:
        with self._ready:
            coming = min(self.batch_size, self._peak_in_flight)
            if len(self._pending) < coming and self._last_batch_s > 0:
                deadline = time.perf_counter() + FILL_WAIT_FRACTION * self._last_batch_s
                while (len(self._pending) < coming and not self._closing
                       and (left := deadline - time.perf_counter()) > 0):
                    self._ready.wait(left)
            batch: list[_Request] = []
            while self._pending and len(batch) < self.batch_size:
                request = self._pending.popleft()
                if request.future.cancelled():
                    self._in_flight -= 1
                else:
                    batch.append(request)
            self._peak_in_flight = self._in_flight
            if not batch:
                self._draining = False
            return batch

    def _drain(self) -> None:
        try:
            while batch := self._take_batch():
                self.batch_calls += 1
                self.batch_sizes[len(batch)] += 1
                started = time.perf_counter()
                try:
                    results: list[Any] = self._generate_batch([r.messages for r in batch])
                except Exception as e:  # noqa: BLE001 - handed to every caller of the batch
                    results = [e] * len(batch)
                with self._ready:
                    self._last_batch_s = time.perf_counter() - started
                    self._in_flight -= len(batch)
                for request, result in zip(batch, results):
                    _deliver(request, result)
        except BaseException:
            with self._ready:
                self._draining = False
            raise


def _deliver(request: _Request, result: Generation | BaseException) -> None:
    def resolve() -> None:
        if request.future.done():  # the caller was cancelled meanwhile
            return
        if isinstance(result, BaseException):
            request.future.set_exception(result)
        else:
            request.future.set_result(result)

    try:
        request.loop.call_soon_threadsafe(resolve)
    except RuntimeError:  # the caller's event loop is closed: nobody is waiting
        pass
