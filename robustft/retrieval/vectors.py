"""Every question of a run embedded in the background, each vector persisted as it is made.

Every question needs a vector: a clean sample's goes into the index, a noisy one's queries it. So
the runner starts this job as the run starts and only waits for it at the barrier. Vectors come
from the response store when an earlier run made them (a resumed run embeds nothing twice), and
new ones are written there at once.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Sequence

import numpy as np

from ..backends.store import ResponseStore, identity_digest, text_key
from .embedders import Dimensions, Embedder


KEPT = "kept in the run directory from an earlier run"
MADE = "made in this run"


class QuestionVectors:
    """`start(texts)`, then `await matrix()` for one row per text, in order (float32, unit length)."""

    def __init__(self, embedder: Embedder, store: ResponseStore | None, batch_size: int = 64,
                 in_flight: int = 4, on_progress: Callable[[int], None] | None = None):
        self.embedder = embedder
        self.store = store
        self.batch_size = batch_size
        self.in_flight = in_flight
        self.on_progress = on_progress or (lambda n: None)
        self.done = 0
        self.embedded = 0  # made now, not read back from the store
        self._task: asyncio.Task | None = None
        self._matrix: np.ndarray | None = None

    def start(self, texts: Sequence[str]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(list(texts)), name="robustft-embed")
        # A run that stops for another reason (a full disk, the server gone) never awaits this task:
        # retrieving its exception here keeps asyncio from printing it as a traceback at exit. Whoever
        # awaits `matrix()` still gets it.
        self._task.add_done_callback(lambda task: task.cancelled() or task.exception())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def matrix(self) -> np.ndarray:
        assert self._task is not None, "start() first"
        await self._task
        assert self._matrix is not None
        return self._matrix

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self, texts: list[str]) -> None:
        identity = identity_digest(self.embedder.identity)
        positions: dict[bytes, list[int]] = {}  # a question asked twice is embedded once
        for i, text in enumerate(texts):
            positions.setdefault(text_key(identity, text), []).append(i)
        unique = list(positions.items())
        rows: np.ndarray | None = None
        dims = Dimensions(getattr(self.embedder, "model_name", self.embedder.identity))
        starts = iter(range(0, len(unique), self.batch_size))

        def place(items: list[tuple[bytes, list[int]]], vectors: np.ndarray) -> None:
            nonlocal rows
            if rows is None:
                rows = np.zeros((len(texts), vectors.shape[1]), dtype=np.float16)
            for (_, where), vector in zip(items, vectors):
                rows[where] = vector

        async def batch(start: int) -> None:
            items = unique[start:start + self.batch_size]
            stored = self.store.get_vectors([key for key, _ in items]) if self.store is not None else {}
            have = [(key, where) for key, where in items if key in stored]
            if have:
                place(have, dims.stacked([stored[key] for key, _ in have], KEPT))
            missing = [(key, where) for key, where in items if key not in stored]
            if missing:
                vectors = await self.embedder.embed([texts[where[0]] for _, where in missing])
                vectors = dims.check(vectors, MADE).astype(np.float16)
                place(missing, vectors)
                if self.store is not None:
                    self.store.put_vectors((key, vector.tobytes()) for (key, _), vector in zip(missing, vectors))
                self.embedded += len(missing)
            count = sum(len(where) for _, where in items)
            self.done += count
            self.on_progress(count)

        async def worker() -> None:
            for start in starts:
                await batch(start)

        workers = [asyncio.ensure_future(worker()) for _ in range(self.in_flight)]
        try:
            await asyncio.gather(*workers)
        except BaseException:  # one failed (the server gave up, a dimension changed): stop the others
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        self._matrix = (rows if rows is not None else np.zeros((0, 0), dtype=np.float16)).astype(np.float32)
