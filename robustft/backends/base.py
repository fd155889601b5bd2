"""What every chat backend shares: the message format, the reply (`Generation`) and the protocol.

A backend is a class constructed from the `ModelConfig` with one method to implement:

    async def generate(self, messages: Messages) -> Generation

and, when it holds connections, threads or a model, `async def aclose(self)` to release them
(`ModelPool.aclose` calls it); `ABILITIES` below lists what else a backend may have.
`messages` are OpenAI-style `{"role": ..., "content": ...}` dicts.
Retries, answer parsing and concurrency limits live in the agents, so backends stay small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Messages = list[dict[str, str]]


@dataclass
class Generation:
    """One reply: its text, and per generated token (when the backend can give them) the token
    string, its log-probability and the entropy of the model's next-token distribution."""

    text: str
    token_logprobs: list[float] | None = None
    tokens: list[str] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # From the top-k alternatives a server returns (`model.top_logprobs`), or the full
    # distribution locally; in nats; None when not available. See `robustft.entropy`.
    token_entropies: list[float] | None = None
    # Of prompt_tokens, those the server reports it read from its prompt cache (priced at
    # model.price_cached_input_per_mtok); not kept in the response store.
    cached_prompt_tokens: int = 0


@runtime_checkable
class ChatBackend(Protocol):
    """The backend protocol. `name` is the model's name, shown in messages and records."""

    name: str

    async def generate(self, messages: Messages) -> Generation: ...


# What a backend may have beside `name` and `generate`, each with what its absence means. The
# call path reads them with `ability` (plugins are duck-typed: none need subclass anything).
ABILITIES: dict[str, Any] = {
    "aclose": None,             # async close of its connections, threads or model (`ModelPool.aclose`)
    "enforces_timeout": False,  # generate() times out by itself: the caller adds no timeout around it
    "endpoints": None,          # `http.Endpoints` of its server replicas: their health in progress and summary
}


def ability(backend: Any, name: str) -> Any:
    """`backend`'s `name` (one of `ABILITIES`), or the default that says it has none."""
    return getattr(backend, name, ABILITIES[name])
