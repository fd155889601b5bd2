"""Any OpenAI-compatible server (`vllm serve`, TEI for embeddings, hosted APIs), over aiohttp.

`OpenAIChatModel` (provider `openai`) sends `/chat/completions` requests and keeps what selection
needs: the token logprobs, the tokens, and with `model.top_logprobs` the per-token entropy.
`OpenAIEmbeddings` embeds texts through `/embeddings`. Both spread their calls over the replicas
of `base_url` (a URL or a list; see `robustft.backends.http` for fail-over and resting) and raise
`BackendError` for every failure; retries with backoff are the caller's.

Written for a small CPU cost per call (well under a millisecond; `benchmarks/client_overhead.py`):
one pooled aiohttp session per event loop, orjson, and no per-call objects beyond the reply.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any, Sequence

from ..config import ModelConfig
from ..errors import ConfigError
from .base import Generation, Messages
from .errors import BackendError
from .http import Endpoints, snippet


def _api_key(env_name: str) -> str:
    # Local servers (vllm serve) accept any key; hosted ones read it from the named variable.
    return os.environ.get(env_name) or "EMPTY"


class OpenAIChatModel:
    """Chat completions from an OpenAI-compatible server."""

    # Each call is cut at `model.timeout_s` per replica here (a timed-out call is re-sent to another).
    enforces_timeout = True

    def __init__(self, config: ModelConfig):
        if not config.name:
            raise ConfigError("model.name is empty: pass --model NAME (the name the server serves)")
        urls = config.base_urls
        if not urls:
            raise ConfigError("model.base_url is empty for provider 'openai': pass --base-url URL "
                              "(for example http://127.0.0.1:8000/v1)")
        self.config = config
        self.name = config.name
        self.endpoints = Endpoints(urls, api_key=_api_key(config.api_key_env), timeout_s=config.timeout_s,
                                   what=f"model {config.name!r}")
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

    async def generate(self, messages: Messages) -> Generation:
        payload = dict(self._request)
        payload["messages"] = messages
        data, replica = await self.endpoints.post_json("/chat/completions", payload)
        return parse_chat_completion(data, messages, where=f"model {self.name!r} at {replica.url}",
                                     entropies=self._top)

    async def aclose(self) -> None:
        await self.endpoints.aclose()


def parse_chat_completion(data: Any, messages: Messages, *, where: str, entropies: bool = False) -> Generation:
    """A `Generation` from a chat completion reply; a malformed reply is a retryable BackendError."""
    try:
        choice = data["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise BackendError(f"{where}: malformed reply, no choices[0]: {snippet(str(data))!r}", retryable=True) from None
    message = choice.get("message") if isinstance(choice, dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    if isinstance(text, list):  # content parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if not isinstance(text, str):
        raise BackendError(f"{where}: malformed reply, choices[0].message has no text content: "
                           f"{snippet(str(choice))!r}", retryable=True)
    logprobs = tokens = token_entropies = None
    lp = choice.get("logprobs")
    content = lp.get("content") if isinstance(lp, dict) else None
    if content:
        try:
            logprobs = [float(t["logprob"]) for t in content]
            tokens = [t.get("token") or "" for t in content]
            if entropies and all(t.get("top_logprobs") for t in content):
                token_entropies = [_token_entropy(t) for t in content]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise BackendError(f"{where}: malformed reply, choices[0].logprobs.content is not a list of "
                               f"{{token, logprob, top_logprobs}}: {snippet(str(content))!r}", retryable=True) from None
    usage = data.get("usage")
    prompt_tokens = completion_tokens = cached = 0
    if isinstance(usage, dict):
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            cached = min(int(details.get("cached_tokens") or 0), prompt_tokens)
    if not prompt_tokens and not completion_tokens:
        from ..tokens import count_tokens  # servers without usage reports: estimate

        prompt_tokens = sum(count_tokens(m["content"]) for m in messages)
        completion_tokens = len(logprobs) if logprobs else count_tokens(text)
    return Generation(text=text, token_logprobs=logprobs, tokens=tokens, prompt_tokens=prompt_tokens,
                      completion_tokens=completion_tokens, token_entropies=token_entropies,
                      cached_prompt_tokens=cached)


def _token_entropy(entry: dict, exp=math.exp, log=math.log) -> float:
    """`topk_entropy` of one position's top alternatives and the sampled token (vLLM lists it
    first; OpenAI leaves it out when it is not in the top k), inlined: it runs for every token of
    every reply, and this is 2.5 times faster than building the list for `topk_entropy`."""
    token = entry["token"]
    h = total = 0.0
    listed = False
    for alt in entry["top_logprobs"]:
        lp = alt["logprob"]
        if not listed and alt["token"] == token:
            listed = True
        if lp < 0.0:
            p = exp(lp)
            total += p
            h -= p * lp
        else:
            total += 1.0
    if not listed:
        lp = entry["logprob"]
        if lp < 0.0:
            p = exp(lp)
            total += p
            h -= p * lp
        else:
            total += 1.0
    rest = 1.0 - total
    if rest > 1e-12:
        h -= rest * log(rest)
    return h


class OpenAIEmbeddings:
    """Text embeddings from an OpenAI-compatible `/embeddings` endpoint (vllm serve of an embedding
    model, TEI, hosted APIs), `batch_size` texts per request, `concurrency` requests in flight."""

    def __init__(self, base_url: str | Sequence[str], model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 120.0, batch_size: int = 64, concurrency: int = 4):
        from ..config import check_base_urls

        urls = check_base_urls(base_url, "denoise.embedding_base_url")
        if not urls:
            raise ConfigError("denoise.embedding_base_url is empty: pass --embedding-base-url URL")
        if not model:
            raise ConfigError("the embedding model name is empty: pass --embedding-model NAME")
        if batch_size < 1 or concurrency < 1:
            raise ConfigError(f"embedding batch_size and concurrency must be at least 1, got {batch_size}, {concurrency}")
        self.model_name = model
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.endpoints = Endpoints(urls, api_key=_api_key(api_key_env), timeout_s=timeout_s,
                                   what=f"embedding model {model!r}")

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        batches = [texts[i:i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        if len(batches) <= 1:
            return await self._embed_batch(batches[0]) if batches else []
        sem = asyncio.Semaphore(self.concurrency)

        async def one(batch: list[str]) -> list[list[float]]:
            async with sem:
                return await self._embed_batch(batch)

        tasks = [asyncio.ensure_future(one(b)) for b in batches]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        return [vector for result in results for vector in result]

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        data, replica = await self.endpoints.post_json("/embeddings", {"model": self.model_name, "input": batch})
        where = f"embedding model {self.model_name!r} at {replica.url}"
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != len(batch):
            got = len(items) if isinstance(items, list) else "no"
            raise BackendError(f"{where}: malformed reply, {got} embeddings for {len(batch)} texts: "
                               f"{snippet(str(data))!r}", retryable=True)
        try:
            ordered = sorted(items, key=lambda item: item["index"])
            vectors = [item["embedding"] for item in ordered]
        except (KeyError, TypeError):
            raise BackendError(f"{where}: malformed reply, data[i] needs 'index' and 'embedding': "
                               f"{snippet(str(items))!r}", retryable=True) from None
        if [item["index"] for item in ordered] != list(range(len(batch))) or not all(
                isinstance(v, list) and v for v in vectors):
            raise BackendError(f"{where}: malformed reply, indices or vectors do not match the "
                               f"{len(batch)} texts sent", retryable=True)
        return vectors

    async def aclose(self) -> None:
        await self.endpoints.aclose()
