"""Chat model backends. A backend is one small class with one method to implement:

    async def generate(self, messages: list[dict[str, str]]) -> Generation

`messages` are OpenAI-style `{"role": ..., "content": ...}` dicts. Every backend returns the same
`Generation`: the text, the log-probability of each generated token (None when the backend cannot
give them) and token counts. Retries, answer parsing and concurrency limits live in the agents, so
backends stay small.

Backends: `openai` (any OpenAI-compatible server: `vllm serve`, hosted providers; langchain-openai),
`transformers` (a local model, logprobs from the generation scores), `vllm` (the vLLM engine in
process; needs the `vllm` extra and a GPU) and `fake` (scripted, records every prompt; for tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from ..config import ModelConfig
from ..errors import ConfigError

Messages = list[dict[str, str]]


@dataclass
class Generation:
    text: str
    token_logprobs: list[float] | None = None
    tokens: list[str] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Per generated token: the entropy of the model's next-token distribution (from the top-k
    # alternatives a server returns, or the full distribution locally); None when not available.
    token_entropies: list[float] | None = None


class ChatModel(Protocol):
    name: str

    async def generate(self, messages: Messages) -> Generation: ...


class FakeChatModel:
    """Scripted model for tests: replies from a list (in turn) or a function of the messages.

    Records every message list it receives in `.calls`, so tests can check what each node sent.
    A reply that is an Exception instance is raised instead of returned, to script failures.
    """

    def __init__(self, script: Sequence[str | Generation | Exception] | Callable[[Messages], str | Generation] = (),
                 name: str = "fake", logprob: float = -0.1):
        self.name = name
        self.calls: list[Messages] = []
        self._script = script if callable(script) else list(script)
        self._index = 0
        self._logprob = logprob

    async def generate(self, messages: Messages) -> Generation:
        self.calls.append(messages)
        if callable(self._script):
            reply = self._script(messages)
        else:
            if not self._script:
                raise RuntimeError("FakeChatModel has no scripted replies")
            reply = self._script[self._index % len(self._script)]
            self._index += 1
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, Generation):
            return reply
        tokens = reply.split()
        return Generation(text=reply, token_logprobs=[self._logprob] * len(tokens), tokens=tokens,
                          prompt_tokens=sum(len(m["content"].split()) for m in messages),
                          completion_tokens=len(tokens))


@dataclass
class OpenAIChatModel:
    """Any OpenAI-compatible chat endpoint, through langchain-openai, keeping token logprobs."""

    config: ModelConfig
    name: str = field(init=False)

    def __post_init__(self) -> None:
        from langchain_openai import ChatOpenAI

        cfg = self.config
        if not cfg.name:
            raise ConfigError("model.name is empty: pass --model NAME (the name the server serves)")
        if not cfg.base_url:
            raise ConfigError("model.base_url is empty for provider 'openai': pass --base-url URL "
                              "(for example http://127.0.0.1:8000/v1)")
        self.name = cfg.name
        # Local servers (vllm serve) accept any key; hosted ones read it from the named variable.
        api_key = os.environ.get(cfg.api_key_env) or "EMPTY"
        kwargs = dict(model=cfg.name, base_url=cfg.base_url, api_key=api_key, temperature=cfg.temperature,
                      max_tokens=cfg.max_tokens, timeout=cfg.timeout_s, max_retries=0)
        if cfg.logprobs:
            kwargs["logprobs"] = True
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed
        self._chat = ChatOpenAI(**kwargs)

    async def generate(self, messages: Messages) -> Generation:
        reply = await self._chat.ainvoke([(m["role"], m["content"]) for m in messages])
        text = reply.content if isinstance(reply.content, str) else "".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in reply.content)
        content = (reply.response_metadata.get("logprobs") or {}).get("content") or []
        logprobs = [float(t["logprob"]) for t in content] or None
        tokens = [t.get("token", "") for t in content] or None
        usage = reply.usage_metadata or {}
        prompt_tokens = int(usage.get("input_tokens") or 0)
        completion_tokens = int(usage.get("output_tokens") or 0)
        if not prompt_tokens and not completion_tokens:
            from ..tokens import count_tokens  # servers without usage reports: estimate

            prompt_tokens = sum(count_tokens(m["content"]) for m in messages)
            completion_tokens = len(logprobs) if logprobs else count_tokens(text)
        return Generation(text=text, token_logprobs=logprobs, tokens=tokens,
                          prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def build_chat_model(config: ModelConfig) -> ChatModel:
    """The backend named by `config.provider`."""
    if config.provider == "openai":
        return OpenAIChatModel(config)
    if config.provider == "transformers":
        from .transformers import TransformersChatModel

        return TransformersChatModel(config)
    if config.provider == "vllm":
        from .vllm import VLLMChatModel

        return VLLMChatModel(config)
    if config.provider == "fake":
        return FakeChatModel(config.script or ["Answer: A"], name=config.name or "fake")
    raise ConfigError(f"model.provider: unknown provider {config.provider!r}")


class ModelPool:
    """One backend instance per distinct model config, shared by the roles that use it.

    Local models are large: two roles naming the same local model must not load it twice.
    """

    def __init__(self) -> None:
        self._models: dict[str, ChatModel] = {}

    def get(self, config: ModelConfig) -> ChatModel:
        key = config.model_dump_json()
        if key not in self._models:
            self._models[key] = build_chat_model(config)
        return self._models[key]

    def add(self, config: ModelConfig, model: ChatModel) -> None:
        """Use `model` for `config` (tests inject scripted models this way)."""
        self._models[config.model_dump_json()] = model

