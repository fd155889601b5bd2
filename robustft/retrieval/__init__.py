"""Retrieval for the context relabeler: question embeddings and the clean-sample index.

- `embedders`: turn texts into unit vectors, with a local sentence-transformers model (the
  default, all-MiniLM-L6-v2) or an OpenAI-compatible `/v1/embeddings` server. The local model runs
  on ONNX Runtime (`onnx_encoder`) from an export of its weights made once and cached
  (`onnx_export`), when its folder has the shape that path reproduces (`sentence_layout`); else on
  torch.
- `vectors`: embeds every question of a run in the background from the moment it starts (every
  question needs a vector, clean or not), persisting each vector in the response store, so the
  barrier only builds the index and queries it.
- `texts`: vectors of any texts compared by meaning (open-ended responses), batched across
  samples and cached in the response store under the same keys.
- `exact` and `index`: the clean-sample index, built at the barrier and queried for all noisy
  samples at once: searched exactly (the default; the same examples on every run), or a Chroma
  collection searched approximately (`denoise.retrieval: chroma`, for millions of clean samples).
"""

from .embedders import DEFAULT_EMBEDDING_MODEL, LocalEmbedder, make_embedder, resolve_embedding_model
from .exact import ExactIndex
from .index import CleanIndex, make_index
from .texts import TextVectors
from .vectors import QuestionVectors

__all__ = ["DEFAULT_EMBEDDING_MODEL", "CleanIndex", "ExactIndex", "LocalEmbedder", "QuestionVectors", "TextVectors",
           "make_embedder", "make_index", "resolve_embedding_model"]
