"""Vectors of any texts a run compares by meaning (open-ended responses), batched and cached.

    texts = TextVectors(embedder, store)
    similarity = await texts.similarity(given_response, expert_response)   # cosine, -1..1

Each vector is kept in the response store under the same key `QuestionVectors` uses (the
embedder's identity and the text), so a resumed run embeds nothing twice, and a text that is also
a question is embedded once. Requests from many samples are gathered into one `embed` call: all
that arrive in the same turn of the event loop, and all that arrive while earlier batches are
being embedded, so a local model on one thread embeds in batches as large as the load makes them.

Vectors are used in their stored form (float16), fresh or read back, so a resumed run computes the
same similarities, and so the same decisions, as an uninterrupted one.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Sequence

import numpy as np

from ..backends.store import ResponseStore, identity_digest, text_key
from .embedders import Dimensions, Embedder

__all__ = ["TextVectors"]


class TextVectors:
    def __init__(self, embedder: Embedder, store: ResponseStore | None = None, *, batch_size: int = 64,
                 in_flight: int = 1, memo_size: int = 4096):
        self.embedder = embedder
        self.store = store
        self.batch_size = batch_size
        self.in_flight = max(1, in_flight)
        self.embedded = 0  # texts embedded now, not read back from the store or the memo
        self._identity = identity_digest(embedder.identity)
        self._dims = Dimensions(getattr(embedder, "model_name", embedder.identity))
        self._memo: OrderedDict[bytes, np.ndarray] = OrderedDict()  # the recently used vectors
        self._memo_size = memo_size
        self._pending: dict[bytes, tuple[str, asyncio.Future]] = {}
        self._running = 0
        self._scheduled = False

    async def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector per text, in order (float32 values of the stored float16 vectors)."""
        loop = asyncio.get_running_loop()
        waits = []
        for text in texts:
            key = text_key(self._identity, text)
            known = self._memo.get(key)
            if known is not None:
                self._memo.move_to_end(key)
                future = loop.create_future()
                future.set_result(known)
            elif key in self._pending:
                future = self._pending[key][1]
            else:
                future = loop.create_future()
                self._pending[key] = (text, future)
            waits.append(future)
        if self._pending and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        if not waits:
            return np.zeros((0, 0), dtype=np.float32)
        # shielded: one caller given up on (its sample cancelled) must not fail another waiting on the same text
        return np.stack(await asyncio.gather(*(asyncio.shield(w) for w in waits)))

    async def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of the two texts' embeddings."""
        va, vb = await self.vectors([a, b])
        return float(np.clip(va @ vb / max(float(np.linalg.norm(va) * np.linalg.norm(vb)), 1e-12), -1.0, 1.0))

    def _start(self) -> None:
        self._scheduled = False
        while self._pending and self._running < self.in_flight:
            keys = list(self._pending)[:self.batch_size]
            batch = [(key, *self._pending.pop(key)) for key in keys]
            self._running += 1
            asyncio.get_running_loop().create_task(self._embed(batch), name="robustft-embed-texts")

    async def _embed(self, batch: list[tuple[bytes, str, asyncio.Future]]) -> None:
        try:
            found: dict[bytes, np.ndarray] = {}
            if self.store is not None:
                stored = self.store.get_vectors([key for key, _, _ in batch])
                if stored:
                    rows = self._dims.stacked(list(stored.values()), "kept in the run directory from an earlier run")
                    found = dict(zip(stored, rows))
            missing = [(key, text) for key, text, _ in batch if key not in found]
            if missing:
                made = await self.embedder.embed([text for _, text in missing])
                made = self._dims.check(made, "made in this run").astype(np.float16)
                if self.store is not None:
                    self.store.put_vectors((key, vector.tobytes()) for (key, _), vector in zip(missing, made))
                found.update((key, vector) for (key, _), vector in zip(missing, made))
                self.embedded += len(missing)
            for key, _, future in batch:
                vector = found[key].astype(np.float32)
                self._remember(key, vector)
                if not future.done():
                    future.set_result(vector)
        except BaseException as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("embedding cancelled"))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._running -= 1
            if self._pending:
                self._start()

    def _remember(self, key: bytes, vector: np.ndarray) -> None:
        self._memo[key] = vector
        self._memo.move_to_end(key)
        while len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)
