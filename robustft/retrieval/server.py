"""Embeddings from an OpenAI-compatible `/v1/embeddings` server (vllm serve of an embedding model,
TEI, a hosted API), batched and concurrent, each request retried like a model call: through an
outage of the server until it is back or has failed for `give_up_after_s` (then `ServiceDown`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..backends.openai import OpenAIEmbeddings
from ..backends.retry import Outage, RetryPolicy, with_retries_through_outage
from .exact import unit_rows

if TYPE_CHECKING:
    from ..config import ModelConfig


class ServerEmbedder:
    def __init__(self, base_url: str | list[str], name: str, batch_size: int = 64, *,
                 api_key_env: str | None = None, model: "ModelConfig | None" = None,
                 policy: RetryPolicy | None = None):
        from ..config import ModelConfig

        settings = model or ModelConfig()  # timeouts, reply cap, retries and give-up: the run's model's
        # One request per call of `embed`: the caller (QuestionVectors) batches and runs several at once.
        self._client = OpenAIEmbeddings(base_url, name, api_key_env=api_key_env, timeout_s=settings.timeout_s,
                                        connect_timeout_s=settings.connect_timeout_s,
                                        max_reply_bytes=settings.max_reply_bytes,
                                        batch_size=max(1, batch_size), concurrency=1)
        self.model_name = name
        self.identity = f"server:{name}"
        self.policy = policy or RetryPolicy.for_model(settings)
        urls = ", ".join(r.url for r in self._client.endpoints.replicas)
        self.outage = Outage(f"the embedding model {name!r} at {urls}", settings.give_up_after_s)

    @property
    def endpoints(self):
        return self._client.endpoints

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = await with_retries_through_outage(lambda: self._client.embed(list(texts)), self.policy,
                                                    "embedding request", self.outage)
        return unit_rows(vectors, np.float32)

    async def aclose(self) -> None:
        close = getattr(self._client, "aclose", None)
        if close is not None:
            await close()
