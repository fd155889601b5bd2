"""One micro-batcher for the in-process backends (transformers, vLLM).

`generate` only queues the request and awaits its result; one worker thread per model takes up to
`model.batch_size` queued requests, generates them together in a single call and hands each caller
its own `Generation`. The worker is woken with `loop.call_soon`, after the tasks that are ready on
the event loop have run, so requests started together (`asyncio.gather`, a LangGraph superstep)
form one batch; requests arriving while a batch is running form the next. All model and tokenizer
work stays on that one thread, so any number of asyncio tasks (on any event loop) may call
`generate` at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .base import Generation, Messages


@dataclass
class _Request:
    messages: Messages
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class _MicroBatchingModel:
    """Queues `generate` calls and runs them in batches on one worker thread.

    Subclasses implement `_generate_batch(list of message lists) -> list of Generation or
    Exception` (one per request, in order); an exception raised by it fails the whole batch.
    `batch_calls` counts the batches run (tests and benchmarks read it).
    """

    name: str

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.batch_calls = 0
        self._pending: deque[_Request] = deque()
        self._lock = threading.Lock()
        self._draining = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"robustft-{type(self).__name__}")

    async def generate(self, messages: Messages) -> Generation:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._pending.append(_Request(messages, future, loop))
        loop.call_soon(self._wake)
        return await future

    def close(self) -> None:
        """Stop the worker thread once the queued requests are done."""
        self._executor.shutdown(wait=True)

    def _generate_batch(self, batch: list[Messages]) -> list[Generation | Exception]:
        raise NotImplementedError

    def _wake(self) -> None:
        with self._lock:
            if self._draining or not self._pending:
                return
            self._draining = True
        self._executor.submit(self._drain)

    def _take_batch(self) -> list[_Request]:
        with self._lock:
            batch: list[_Request] = []
            while self._pending and len(batch) < self.batch_size:
                request = self._pending.popleft()
                if not request.future.cancelled():
                    batch.append(request)
            if not batch:
                self._draining = False
            return batch

    def _drain(self) -> None:
        try:
            while batch := self._take_batch():
                self.batch_calls += 1
                try:
                    results: list[Any] = self._generate_batch([r.messages for r in batch])
                except Exception as e:  # noqa: BLE001 - handed to every caller of the batch
                    results = [e] * len(batch)
                for request, result in zip(batch, results):
                    _deliver(request, result)
        except BaseException:
            with self._lock:
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
