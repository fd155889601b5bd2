"""The response store: a SQLite cache of model replies, so one prompt is never paid for twice.

    store = ResponseStore("runs/ablation/responses.sqlite")
    pool = CachingPool(store)           # a ModelPool whose models answer from the store first
    ...run...; pool.new_run()           # before each further run that shares the store

A reply is stored under three keys:

- the model's identity: provider, name and sampling settings (temperature, max_tokens, logprobs,
  seed, device, dtype, script); not where it is served or how patiently it is called (base_url,
  timeouts, retries, batch size), which do not change what it says;
- the exact messages sent;
- the occurrence of that identical request within the current run: the 2nd identical request of a
  run (a parse retry re-asks the same prompt) gets the 2nd stored draw, not the 1st again, so a
  replayed run sees exactly the replies a fresh one would have drawn.

Only successful replies are stored; a failed call gives its occurrence back to the next attempt.
The occurrence counters restart with `CachingPool.new_run()`; the stored replies persist.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from .base import ChatBackend as ChatModel, Generation, Messages
from .registry import ModelPool

# ModelConfig fields that do not change what a model answers.
_NOT_IDENTITY = {"base_url", "api_key_env", "timeout_s", "max_retries", "retry_backoff_max_s", "give_up_after_s",
                 "batch_size"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    occurrence INTEGER NOT NULL,
    messages TEXT NOT NULL,
    generation TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (model, request, occurrence)
)
"""


def model_identity(config: ModelConfig) -> str:
    return json.dumps({k: v for k, v in config.model_dump(mode="json").items() if k not in _NOT_IDENTITY},
                      sort_keys=True)


def request_key(messages: Messages) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseStore:
    """The SQLite file. Safe to share between processes (WAL journal); writes commit at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def get(self, model: str, request: str, occurrence: int) -> Generation | None:
        row = self._db.execute("SELECT generation FROM responses WHERE model=? AND request=? AND occurrence=?",
                               (model, request, occurrence)).fetchone()
        return Generation(**json.loads(row[0])) if row else None

    def put(self, model: str, request: str, occurrence: int, messages: Messages, gen: Generation) -> None:
        payload = {"text": gen.text, "token_logprobs": gen.token_logprobs, "tokens": gen.tokens,
                   "prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens}
        self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                         (model, request, occurrence, json.dumps(messages, ensure_ascii=False),
                          json.dumps(payload), time.time()))

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class _Occurrences:
    """Which draw of an identical request this call is, within one run."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, str], int] = {}
        self._free: dict[tuple[str, str], list[int]] = {}

    def claim(self, key: tuple[str, str]) -> int:
        free = self._free.get(key)
        if free:
            return heapq.heappop(free)
        n = self._next.get(key, 0)
        self._next[key] = n + 1
        return n

    def release(self, key: tuple[str, str], n: int) -> None:
        heapq.heappush(self._free.setdefault(key, []), n)


class CachedChatModel:
    """A ChatModel that answers from the store when it can and stores what the inner model says."""

    def __init__(self, inner: ChatModel, identity: str, store: ResponseStore, pool: "CachingPool"):
        self.inner = inner
        self.name = inner.name
        self.identity = identity
        self._store = store
        self._pool = pool

    async def generate(self, messages: Messages) -> Generation:
        request = request_key(messages)
        key = (self.identity, request)
        n = self._pool.occurrences.claim(key)
        hit = self._store.get(self.identity, request, n)
        if hit is not None:
            self._pool.stats["reused"] += 1
            return hit
        try:
            gen = await self.inner.generate(messages)
        except BaseException:
            self._pool.occurrences.release(key, n)
            raise
        self._store.put(self.identity, request, n, messages, gen)
        self._pool.stats["paid"] += 1
        return gen


class CachingPool(ModelPool):
    """A ModelPool whose models go through a ResponseStore. `stats` counts calls answered from the
    store (`reused`) and by the model (`paid`) since the last `new_run()`."""

    def __init__(self, store: ResponseStore):
        super().__init__()
        self.store = store
        self.occurrences = _Occurrences()
        self.stats: dict[str, Any] = {"paid": 0, "reused": 0}

    def get(self, config: ModelConfig) -> ChatModel:
        key = config.model_dump_json()
        if key not in self._models:
            self.add(config, super().get(config))
        return self._models[key]

    def add(self, config: ModelConfig, model: ChatModel) -> None:
        if not isinstance(model, CachedChatModel):
            model = CachedChatModel(model, model_identity(config), self.store, self)
        self._models[config.model_dump_json()] = model

    def new_run(self) -> None:
        """Start counting identical requests from the first again (the stored replies stay)."""
        self.occurrences = _Occurrences()
        self.stats = {"paid": 0, "reused": 0}
