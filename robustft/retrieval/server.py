"""Embeddings from an OpenAI-compatible `/v1/embeddings` server (vllm serve of an embedding model,
TEI, a hosted API), batched and concurrent, each request retried like a model call."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..backends.openai import OpenAIEmbeddings
from ..backends.retry import RetryPolicy, with_retries
from .embedders import normalise


class ServerEmbedder:
    def __init__(self, base_url: str | list[str], model: str, batch_size: int = 64, *,
                 api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 120.0, policy: RetryPolicy | None = None):
        # One request per call of `embed`: the caller (QuestionVectors) batches and runs several at once.
        self._client = OpenAIEmbeddings(base_url, model, api_key_env=api_key_env, timeout_s=timeout_s,
                                        batch_size=max(1, batch_size), concurrency=1)
        self.identity = f"server:{model}"
        self.policy = policy or RetryPolicy()

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = await with_retries(lambda: self._client.embed(list(texts)), self.policy, "embedding request")
        return normalise(vectors)

    async def aclose(self) -> None:
        close = getattr(self._client, "aclose", None)
        if close is not None:
            await close()
