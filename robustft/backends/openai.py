"""Any OpenAI-compatible server (`vllm serve`, TEI for embeddings, hosted APIs), over aiohttp.

`OpenAIChatModel` (provider `openai`) sends `/chat/completions` requests and keeps what selection
needs: the token logprobs, the tokens, and with `model.top_logprobs` the per-token entropy.
`OpenAIEmbeddings` embeds texts through `/embeddings`. Both spread their calls over the replicas
of `base_url` (a URL or a list; see `robustft.backends.http` for fail-over and resting) and raise
`BackendError` for every failure; retries with backoff are the caller's.

Every reply is checked before use (`robustft.backends.replies`): a malformed one is retried on
another replica like a 5xx. Written for a small CPU cost per call (well under a millisecond;
`benchmarks/client_overhead.py`): one pooled aiohttp session per event loop, orjson, a typed
envelope and a flat check of the per-token numbers.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Sequence

import numpy as np
from pydantic import Field

from .. import tracing
from ..config import ModelConfig
from ..errors import ConfigError, EmbeddingDimensionError
from .base import BackendOptions, Generation, Messages, options_of
from .http import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_MAX_REPLY_BYTES, Endpoints, Replica
from .replies import chat_reply, embedding_reply, token_logprobs


def _api_key(env_name: str | None) -> str:
    # Local servers (vllm serve) accept any key; hosted ones read it from the named variable. No
    # variable: no key (an embedding server on another host than the chat model, by default).
    return (os.environ.get(env_name) if env_name else None) or "EMPTY"


class OpenAIChatModel:
    """Chat completions from an OpenAI-compatible server."""

    class Options(BackendOptions):
        batch_discount: float = Field(0.5, ge=0.0, le=1.0, description=(
            "With denoise.batch_api: the share of the price the provider takes off calls sent through its Batch "
            "API (0.5: half price)."))

    # Each call is cut at `model.timeout_s` per replica here (a timed-out call is re-sent to another).
    enforces_timeout = True

    def __init__(self, config: ModelConfig):
        if not config.name:
            raise ConfigError("model.name is empty: set it to the name the server serves")
        urls = config.base_urls
        if not urls:
            raise ConfigError("model.base_url is empty for provider 'openai': set it to the server's URL "
                              "(for example http://127.0.0.1:8000/v1)")
        self.config = config
        self.options = options_of(config, self.Options)
        self.name = config.name
        self.endpoints = Endpoints(urls, api_key=_api_key(config.api_key_env), timeout_s=config.timeout_s,
                                   connect_timeout_s=config.connect_timeout_s,
                                   max_reply_bytes=config.max_reply_bytes, what=f"model {config.name!r}")
        request: dict[str, Any] = {"model": config.name, "temperature": config.temperature,
                                   "max_tokens": config.max_tokens}
        if config.seed is not None:
            request["seed"] = config.seed
        self._top = bool(config.logprobs and config.top_logprobs)
        if config.logprobs:
            request["logprobs"] = True
            if config.top_logprobs:
                request["top_logprobs"] = config.top_logprobs
        self._request = request

    def request_body(self, messages: Messages) -> dict[str, Any]:
        """The /chat/completions body for `messages` (also a Batch API line's body)."""
        payload = dict(self._request)
        payload["messages"] = messages
        return payload

    def parse_reply(self, data: Any, messages: Messages, url: str) -> Generation:
        """A reply's JSON as a `Generation` (also a Batch API output line's body)."""
        return parse_chat_completion(data, messages, url=url, entropies=self._top)

    async def generate(self, messages: Messages) -> Generation:
        payload = self.request_body(messages)
        entropies = self._top

        def parse(data: Any, replica: Replica) -> Generation:
            if tracing.state.runs:  # which replica answered, and why it stopped, go on the call's span
                tracing.reply(replica.url, data)
            return parse_chat_completion(data, messages, url=replica.url, entropies=entropies)

        gen, _ = await self.endpoints.post_json("/chat/completions", payload, parse)
        return gen

    async def aclose(self) -> None:
        await self.endpoints.aclose()


def batch_discount(config: ModelConfig) -> float:
    """The share of the price taken off `config`'s calls through the Batch API (none off a model
    that is not on an OpenAI-compatible server: the Batch API cannot send its calls)."""
    return options_of(config, OpenAIChatModel.Options).batch_discount if config.provider == "openai" else 0.0


def parse_chat_completion(data: Any, messages: Messages, *, url: str, entropies: bool = False) -> Generation:
    """A `Generation` from a chat completion reply, every field checked (`robustft.backends.replies`);
    a malformed reply raises `MalformedReply` (retryable) naming the field."""
    reply = chat_reply(data, url)
    choice = reply.choices[0]
    logprobs = tokens = token_entropies = None
    content = choice.logprobs.content if choice.logprobs is not None else None
    if content:
        logprobs, tokens, token_entropies = token_logprobs(content, entropies, url)
    usage = reply.usage
    prompt_tokens = (usage.prompt_tokens or 0) if usage is not None else 0
    completion_tokens = (usage.completion_tokens or 0) if usage is not None else 0
    details = usage.prompt_tokens_details if usage is not None else None
    cached = min(details.cached_tokens or 0, prompt_tokens) if details is not None else 0
    text = reply.text
    assert text is not None  # chat_reply refuses a reply without text
    if not prompt_tokens and not completion_tokens:
        from ..tokens import count_tokens  # servers without usage reports: estimate

        prompt_tokens = sum(count_tokens(m["content"]) for m in messages)
        completion_tokens = len(logprobs) if logprobs else count_tokens(text)
    return Generation(text=text, token_logprobs=logprobs, tokens=tokens, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens, token_entropies=token_entropies,
                      cached_prompt_tokens=cached)


class OpenAIEmbeddings:
    """Text embeddings from an OpenAI-compatible `/embeddings` endpoint (vllm serve of an embedding
    model, TEI, hosted APIs), `batch_size` texts per request, `concurrency` requests in flight."""

    def __init__(self, base_url: str | Sequence[str], model: str, *, api_key_env: str | None = "OPENAI_API_KEY",
                 timeout_s: float = 120.0, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES, batch_size: int = 64, concurrency: int = 4):
        from ..config import check_base_urls

        urls = check_base_urls(base_url, "denoise.embedding_base_url")
        if not urls:
            raise ConfigError("denoise.embedding_base_url is empty: set it to the embedding server's URL "
                              "(for example http://127.0.0.1:8000/v1)")
        if not model:
            raise ConfigError("denoise.embedding_model is empty: set it to the model name the embedding server serves")
        if batch_size < 1 or concurrency < 1:
            raise ConfigError(f"embedding batch_size and concurrency must be at least 1, got {batch_size}, {concurrency}")
        self.model_name = model
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.endpoints = Endpoints(urls, api_key=_api_key(api_key_env), timeout_s=timeout_s,
                                   connect_timeout_s=connect_timeout_s, max_reply_bytes=max_reply_bytes,
                                   what=f"embedding model {model!r}")

    async def embed(self, texts: list[str]) -> np.ndarray:
        """One float32 row per text, in order."""
        batches = [texts[i:i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        if len(batches) <= 1:
            return await self._embed_batch(batches[0]) if batches else np.zeros((0, 0), dtype=np.float32)
        sem = asyncio.Semaphore(self.concurrency)

        async def one(batch: list[str]) -> np.ndarray:
            async with sem:
                return await self._embed_batch(batch)

        tasks = [asyncio.ensure_future(one(b)) for b in batches]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        first = results[0].shape[1]
        for i, matrix in enumerate(results):
            if matrix.shape[1] != first:
                raise EmbeddingDimensionError(self.model_name, first, matrix.shape[1], before_where="batch 1",
                                              now_where=f"batch {i + 1} of the same texts")
        return np.concatenate(results)

    async def _embed_batch(self, batch: list[str]) -> np.ndarray:
        count = len(batch)
        matrix, _ = await self.endpoints.post_json(
            "/embeddings", {"model": self.model_name, "input": batch},
            lambda data, replica: embedding_reply(data, count, replica.url, self.model_name))
        return matrix

    async def aclose(self) -> None:
        await self.endpoints.aclose()
