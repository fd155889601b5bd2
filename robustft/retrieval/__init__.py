"""Retrieval for the context relabeler: question embeddings and the clean-sample index.

- `embedders`: turn texts into unit vectors, with a local sentence-transformers model (the
  default, all-MiniLM-L6-v2) or an OpenAI-compatible `/v1/embeddings` server.
- `vectors`: embeds every question of a run in the background from the moment it starts (every
  question needs a vector, clean or not), persisting each vector in the response store, so the
  barrier only builds the index and queries it.
- `texts`: vectors of any texts compared by meaning (open-ended responses), batched across
  samples and cached in the response store under the same keys.
- `index`: the Chroma collection of clean samples, built at the barrier and queried for all noisy
  samples at once.
"""

from .embedders import DEFAULT_EMBEDDING_MODEL, LocalEmbedder, make_embedder, resolve_embedding_model
from .index import CleanIndex
from .texts import TextVectors
from .vectors import QuestionVectors

__all__ = ["DEFAULT_EMBEDDING_MODEL", "CleanIndex", "LocalEmbedder", "QuestionVectors", "TextVectors",
           "make_embedder", "resolve_embedding_model"]
