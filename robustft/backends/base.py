"""What every chat backend shares: the message format, the reply (`Generation`), the protocol and
the base of a backend's own options.

A backend is a class constructed from the `ModelConfig` with one method to implement:

    async def generate(self, messages: Messages) -> Generation

It may declare `Options`, a pydantic model (subclass `BackendOptions`) of the settings only it
reads (`device` for a local model, `script` for the fake one): they sit beside the shared ones in
the model's YAML section, are checked against `Options` when a run starts, and the backend reads
them with `options_of(config, self.Options)`. When it holds connections, threads or a model it
has `async def aclose(self)` (`ModelPool.aclose` calls it); the protocols below (`Closable`,
`TimesOut`, `HasEndpoints`) declare what else a backend may have.
`messages` are OpenAI-style `{"role": ..., "content": ...}` dicts.
Retries, answer parsing and concurrency limits live in the agents, so backends stay small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from ..config import ModelConfig, cut, shorten_value
from ..errors import ConfigError

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


# What a backend may have beside `name` and `generate`; plugins are duck-typed (none need
# subclass anything), and the call path asks `isinstance(backend, Closable)` and the like.
@runtime_checkable
class Closable(Protocol):
    """Holds connections, threads or a model that `aclose()` releases (`ModelPool.aclose`)."""

    async def aclose(self) -> None: ...


@runtime_checkable
class TimesOut(Protocol):
    """`generate()` times out by itself when `enforces_timeout` is true: the caller adds no timeout
    around it."""

    enforces_timeout: bool


@runtime_checkable
class HasEndpoints(Protocol):
    """Calls server replicas (`http.Endpoints`), whose health the progress line and summary show."""

    endpoints: Any


class BackendOptions(BaseModel):
    """The base of a backend's `Options`: unknown keys are errors, like every setting's."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class NoOptions(BackendOptions):
    """The options of a backend that declares none."""


O = TypeVar("O", bound=BaseModel)


def options_of(config: ModelConfig, options: type[O], where: str = "model") -> O:
    """`config`'s backend options (the keys beside the shared settings) as `options`; ConfigError
    naming `where` (the model's place in the config: model, roles.judge), the key, the provider and
    the fix when one is unknown or its value is wrong."""
    try:
        return options.model_validate(config.options)
    except ValidationError as e:
        known = ", ".join(options.model_fields) or "none"
        lines = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                lines.append(f"{where}.{cut(key, 100)}: not a setting of a model, nor an option of provider "
                             f"{config.provider!r} (its options: {known}); check the spelling, or remove it, or "
                             f"set {where}.provider to a backend that has it")
            else:
                lines.append(f"{where}.{cut(key, 100)}: {cut(err['msg'])} (got {shorten_value(err.get('input'))}), "
                             f"an option of provider {config.provider!r}; fix the value")
        raise ConfigError("\n".join(lines)) from None
