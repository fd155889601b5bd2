"""The response store: every completed model response and embedding, persisted as it arrives.

A run keeps its store in `DIR/responses.sqlite` (an ablation shares one between its variants).
Because every response is written the moment it arrives, a run killed at any point (Ctrl-C,
`kill -9`, power loss) and started again re-sends only the calls that were in flight; and
re-running with a changed β, a larger `data.limit`, or a changed template answers every request that
did not change from the store.

A response is stored under a key made of:

- the model's identity: provider, name, sampling settings (temperature, max_tokens, logprobs,
  top_logprobs, seed) and the backend's options (device, dtype, script, adapter, a plugin's);
  not where it is served or how patiently it is called (base URLs, timeouts, retries, batch
  size), which do not change what it says;
- the exact messages sent;
- the occurrence of that identical request within the current run: the 2nd identical request of a
  run (a parse retry re-asks the same prompt) gets the 2nd stored draw, not the 1st again, so a
  replayed run sees exactly the replies a fresh one would have drawn.

Embeddings are stored under the embedding model's identity and the text, as float16.

Values are compact: the text, token logprobs and entropies as packed float32, token boundaries as
packed lengths. A fresh response is used in its stored form (`put` returns the decoded value), so
a fresh and a replayed run compute exactly the same scores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from array import array
from pathlib import Path
from typing import Any, Iterable

import ormsgpack

from ..config import ModelConfig
from ..errors import RobustFTError, UserError
from ..files import refuse_link
from .base import Generation, Messages

# ModelConfig fields that do not change what a model answers.
NOT_IDENTITY = frozenset({"base_url", "api_key_env", "timeout_s", "connect_timeout_s", "max_reply_bytes",
                          "max_retries", "batch_size", "retry_backoff_max_s", "give_up_after_s",
                          "price_input_per_mtok", "price_cached_input_per_mtok", "price_output_per_mtok",
                          "requests_per_minute", "tokens_per_minute", "batch_discount"})
# Backend options that were shared ModelConfig fields before backends declared their own: every
# model's identity still carries them, at these values unless set, so that the keys of a store
# written before are the same and a resumed run is answered from it.
LEGACY_OPTIONS: dict[str, Any] = {"device": "auto", "dtype": "auto", "script": None, "adapter": None}

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS responses (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, vector BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_FORMAT = "2"
COLUMNS = {"responses": ["key", "value"], "embeddings": ["key", "vector"], "meta": ["name", "value"]}


def identity_settings(config: ModelConfig) -> dict[str, Any]:
    """The settings that make two model configs give the same answers: shared ones and the
    backend's options (as given; a plugin's option at its default is left out), as JSON values."""
    given = config.model_dump(mode="json")
    return {k: v for k, v in {**LEGACY_OPTIONS, **given}.items() if k not in NOT_IDENTITY}


def model_identity(config: ModelConfig) -> str:
    """What makes two model configs give the same answers, as canonical JSON."""
    return json.dumps(identity_settings(config), sort_keys=True)


def identity_digest(identity: str) -> bytes:
    return hashlib.blake2b(identity.encode(), digest_size=16).digest()


def request_digest(identity: bytes, messages: Messages) -> bytes:
    """One identical request of one model: the key that occurrences are counted under."""
    h = hashlib.blake2b(identity, digest_size=16)
    for m in messages:
        h.update(m["role"].encode())
        h.update(b"\x00")
        h.update(m["content"].encode("utf-8", "surrogatepass"))
        h.update(b"\x01")
    return h.digest()


def response_key(request: bytes, occurrence: int) -> bytes:
    return request + occurrence.to_bytes(4, "big")


def text_key(identity: bytes, text: str) -> bytes:
    return hashlib.blake2b(identity + text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _floats(values: list[float] | None) -> bytes | None:
    return None if values is None else array("f", values).tobytes()


def _unfloats(blob: bytes | None) -> list[float] | None:
    if blob is None:
        return None
    out = array("f")
    out.frombytes(blob)
    return out.tolist()


def _as_stored(values: list[float] | None) -> list[float] | None:
    return None if values is None else array("f", values).tolist()


def encode_generation(gen: Generation) -> bytes:
    tokens: Any = gen.tokens
    if tokens is not None and "".join(tokens) == gen.text:
        lengths = [len(t) for t in tokens]
        tokens = array("H" if max(lengths, default=0) < 65536 else "I", lengths)
        tokens = [tokens.typecode, tokens.tobytes()]
    return ormsgpack.packb([gen.text, _floats(gen.token_logprobs), tokens, gen.prompt_tokens,
                            gen.completion_tokens, _floats(gen.token_entropies)])


def decode_generation(blob: bytes) -> Generation:
    text, logprobs, tokens, prompt_tokens, completion_tokens, entropies = ormsgpack.unpackb(blob)
    if not isinstance(text, str) or not all(n is None or type(n) is int for n in (prompt_tokens, completion_tokens)) \
            or not all(b is None or isinstance(b, bytes) for b in (logprobs, entropies)):
        raise ValueError("a stored response of the wrong shape")
    if tokens is not None and len(tokens) == 2 and isinstance(tokens[1], bytes):
        lengths = array(tokens[0])
        lengths.frombytes(tokens[1])
        tokens, pos = [], 0
        for n in lengths:
            tokens.append(text[pos:pos + n])
            pos += n
    return Generation(text=text, token_logprobs=_unfloats(logprobs), tokens=tokens, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens, token_entropies=_unfloats(entropies))


class StoreWriteError(RobustFTError):
    """The store could not be written (exit 1): the run stops with its progress kept."""


class ResponseStore:
    """The SQLite file (WAL journal): each write commits at once, so it survives any kill."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.damaged = 0  # damaged rows met (treated as missing)
        self._vector_bytes: int | None = None  # the size of this run's embeddings, once known
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for name in (self.path.name, *(f"{self.path.name}-{end}" for end in ("wal", "shm", "journal"))):
                refuse_link(self.path.parent / name)  # SQLite follows links: it would write outside DIR
            self._db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # Commits reach the OS at once (a killed process loses nothing); fsync only at
            # checkpoints, so a power cut can lose the last moments of responses, never the file.
            self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._db.execute(statement)
            for table, columns in COLUMNS.items():
                have = [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")]
                if have != columns:
                    raise UserError(f"{self.path}: table {table} has the columns {', '.join(have)} (a response store "
                                    f"has {', '.join(columns)}): the file was changed; run `robustft doctor "
                                    f"{self.path.parent} --repair` to rebuild it (what it cannot keep is asked again)")
            found = self._db.execute("SELECT value FROM meta WHERE name='format'").fetchone()
            if found is None:
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (_FORMAT,))
            elif found[0] != _FORMAT:
                raise UserError(f"{self.path}: a response store of another robustft version (format {found[0]}); "
                                "move it away to start over (its calls will be made again)")
        except sqlite3.OperationalError as e:
            if "disk is full" in str(e) or "readonly" in str(e) or "unable to open" in str(e):
                raise self._write_failed(e) from None
            raise UserError(f"{self.path}: the response store cannot be opened ({e}); run `robustft doctor "
                            f"{self.path.parent} --repair` to rebuild it from what still reads (the calls it cannot "
                            "keep are made again)") from None
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: the response store cannot be opened ({e}); run `robustft doctor "
                            f"{self.path.parent} --repair` to rebuild it from what still reads (the calls it cannot "
                            "keep are made again)") from None

    def get(self, key: bytes) -> Generation | None:
        """The stored response, or None: also for a damaged one (a bad row is asked again and
        replaced, with a warning naming the file, instead of failing its sample on every run)."""
        try:
            row = self._db.execute("SELECT value FROM responses WHERE key=?", (key,)).fetchone()
            return decode_generation(row[0]) if row else None
        except (sqlite3.DatabaseError, ValueError, TypeError, ormsgpack.MsgpackDecodeError) as e:
            self._damaged(f"a stored response cannot be read ({type(e).__name__}: {e})")
            return None

    def _damaged(self, what: str) -> None:
        import logging

        self.damaged += 1
        if self.damaged == 1:
            logging.getLogger("robustft").warning(
                f"{self.path}: {what}; such responses are asked again and replaced (`robustft doctor` checks "
                "the whole run directory)")

    def put(self, key: bytes, gen: Generation) -> Generation:
        """Persist `gen`; returns it as a later run will read it back (numbers as float32), with any
        API key in use that the reply echoed replaced by *** (`secrets.redact_known`)."""
        from ..secrets import redact_known

        text = redact_known(gen.text)
        if text != gen.text:  # the token pieces would spell the key again: they are left out
            gen = dataclasses.replace(gen, text=text, tokens=None)
        try:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?)", (key, encode_generation(gen)))
        except sqlite3.OperationalError as e:
            raise self._write_failed(e) from None
        return Generation(text=gen.text, token_logprobs=_as_stored(gen.token_logprobs), tokens=gen.tokens,
                          prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens,
                          token_entropies=_as_stored(gen.token_entropies))

    def read_meta(self, name: str) -> str | None:
        """A value kept beside the responses (the money spent on them: `robustft.agents.cost`)."""
        row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def write_meta(self, name: str, value: str) -> None:
        try:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
        except sqlite3.OperationalError as e:
            raise self._write_failed(e) from None

    def is_empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM responses LIMIT 1").fetchone() is None

    def get_vectors(self, keys: list[bytes]) -> dict[bytes, bytes]:
        """Stored embeddings (float16 bytes, see `robustft.retrieval`) of the keys that have one."""
        found: dict[bytes, bytes] = {}
        try:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                found.update(self._db.execute(f"SELECT key, vector FROM embeddings WHERE key IN ({marks})", chunk))
        except sqlite3.DatabaseError as e:
            self._damaged(f"stored embeddings cannot be read ({e})")
            return {}
        # A vector of another size than the run's (a damaged or edited row) counts as missing:
        # embedded again and replaced, instead of failing the index with a traceback.
        if self._vector_bytes is None:
            from collections import Counter

            sizes = Counter(len(v) for v in found.values() if isinstance(v, bytes) and v and len(v) % 2 == 0)
            self._vector_bytes = sizes.most_common(1)[0][0] if sizes else None
        bad = [k for k, v in found.items() if not isinstance(v, bytes) or len(v) != self._vector_bytes]
        if bad:
            self._damaged(f"{len(bad)} stored embeddings are not of the run's size ({self._vector_bytes} bytes)")
            for key in bad:
                del found[key]
        return found

    def put_vectors(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        items = list(items)
        if items:
            self._vector_bytes = len(items[0][1])
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?)", items)
        except sqlite3.OperationalError as e:
            raise self._write_failed(e) from None

    def _write_failed(self, e: sqlite3.OperationalError) -> StoreWriteError:
        """A write the machine refused (a full disk, a read-only folder): the run must stop, not
        fail the sample whose response it was; every response stored before is kept."""
        return StoreWriteError(f"{self.path}: cannot write ({e}). The run stopped; nothing is lost: every finished "
                               "sample and stored response is kept. Free space (or fix the folder), then run the same "
                               "command again to continue.")

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self._db.close()


class Occurrences:
    """Which draw of an identical request a call is, within one run. A failed call gives its
    number back, so the next attempt at the same request takes it."""

    def __init__(self) -> None:
        self._next: dict[bytes, int] = {}
        self._free: dict[bytes, list[int]] = {}

    def claim(self, request: bytes) -> int:
        free = self._free.get(request)
        if free:
            n = min(free)
            free.remove(n)
            return n
        n = self._next.get(request, 0)
        self._next[request] = n + 1
        return n

    def release(self, request: bytes, n: int) -> None:
        self._free.setdefault(request, []).append(n)
