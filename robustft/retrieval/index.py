"""The clean-sample index as a Chroma collection (`denoise.retrieval: chroma`), built at the
barrier from stored vectors: approximate nearest neighbours, for clean sets of millions.

The vectors themselves are persisted in the run's response store as they are made, so the
collection lives in memory: building it is cheap next to embedding, and a run directory does not
carry a second copy of every vector. Only ids go into Chroma; the runner holds the questions.

Chroma's HNSW search is approximate, and which near-ties it returns changes from one build of the
same collection to the next. Chroma is asked for many candidates, which are ranked again here by
their exact cosine similarity (ties going to the sample that comes first in the data), so that
only a true neighbour missing from Chroma's candidates makes a difference: measured on ARC's
simulator embeddings (1,200 clean, 573 queries, k = 3), two builds differed on 3 queries. A
resumed run, or one on Ray, can therefore show a few samples other examples than an
uninterrupted one would; the default, `robustft.retrieval.exact`, cannot.
"""

from __future__ import annotations

import uuid
from typing import Sequence

import numpy as np

from .exact import ExactIndex

# HNSW settings: Chroma's defaults build slowly at tens of thousands of vectors; these keep a
# 20,000-vector build to seconds while nearest-neighbour recall on sentence embeddings stays high.
_HNSW = {"space": "cosine", "max_neighbors": 16, "ef_construction": 64, "ef_search": 200}


def candidates(k: int) -> int:
    """How many neighbours Chroma is asked for, to rank exactly (see the module's docstring)."""
    return max(10 * k, 50)


class CleanIndex(ExactIndex):
    """`ExactIndex` whose candidates come from the Chroma collection instead of a product with
    every clean sample; they are ranked the same way."""

    def __init__(self) -> None:
        import chromadb
        from chromadb.config import Settings

        super().__init__()
        self._client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
        self._collection = self._client.create_collection(f"clean-{uuid.uuid4().hex}", configuration={"hnsw": _HNSW},
                                                          embedding_function=None)

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        super().add(ids, vectors)
        step = self._client.get_max_batch_size()
        for i in range(0, len(ids), step):
            self._collection.add(ids=list(ids[i:i + step]),
                                 embeddings=np.asarray(vectors[i:i + step], dtype=np.float32))

    def _queries_per_step(self) -> int:
        return 2000

    def _candidates(self, block: np.ndarray, k: int) -> np.ndarray:
        n = min(candidates(k) + 1, len(self))
        found = self._collection.query(query_embeddings=block.astype(np.float32), n_results=n, include=[])
        return np.array([[self._rows[i] for i in ids] for ids in found["ids"]], dtype=np.int64)

    def close(self) -> None:
        super().close()
        try:
            self._client.delete_collection(self._collection.name)
        except Exception:  # noqa: BLE001 - the collection lives in memory; nothing is lost
            pass


def make_index(retrieval: str) -> "ExactIndex | CleanIndex":
    """The index `denoise.retrieval` names: exact (the default) or chroma."""
    return CleanIndex() if retrieval == "chroma" else ExactIndex()
