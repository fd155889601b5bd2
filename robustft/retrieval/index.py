"""The clean-sample index: a Chroma collection, built at the barrier from stored vectors.

The vectors themselves are persisted in the run's response store as they are made, so the
collection lives in memory: building it is cheap next to embedding, and a run directory does not
carry a second copy of every vector. Only ids go into Chroma; the runner holds the questions.
"""

from __future__ import annotations

import uuid
from typing import Sequence

import numpy as np

# HNSW settings: Chroma's defaults build slowly at tens of thousands of vectors; these keep a
# 20,000-vector build to seconds while nearest-neighbour recall on sentence embeddings stays high.
_HNSW = {"space": "cosine", "max_neighbors": 16, "ef_construction": 64, "ef_search": 100}


class CleanIndex:
    def __init__(self) -> None:
        import chromadb
        from chromadb.config import Settings

        self._client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
        self._collection = self._client.create_collection(f"clean-{uuid.uuid4().hex}", configuration={"hnsw": _HNSW},
                                                          embedding_function=None)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        step = self._client.get_max_batch_size()
        for i in range(0, len(ids), step):
            self._collection.add(ids=list(ids[i:i + step]), embeddings=np.asarray(vectors[i:i + step], dtype=np.float32))
        self._size += len(ids)

    def query(self, vectors: np.ndarray, k: int, exclude_ids: Sequence[str | None] | None = None,
              chunk: int = 2000) -> list[list[tuple[str, float]]]:
        """The k nearest ids with their cosine similarity, most similar first, for each vector;
        `exclude_ids[i]` is never among row i's results (a sample is not its own example)."""
        if len(vectors) == 0:
            return []
        if self._size == 0:
            return [[] for _ in range(len(vectors))]
        n = min(k + 1, self._size)
        exclude = list(exclude_ids) if exclude_ids is not None else [None] * len(vectors)
        results: list[list[tuple[str, float]]] = []
        for start in range(0, len(vectors), chunk):
            found = self._collection.query(query_embeddings=np.asarray(vectors[start:start + chunk], dtype=np.float32),
                                           n_results=n, include=["distances"])
            for row, (ids, distances) in enumerate(zip(found["ids"], found["distances"])):
                skip = exclude[start + row]
                hits = [(i, round(1.0 - float(d), 6)) for i, d in zip(ids, distances) if i != skip]
                results.append(hits[:k])
        return results

    def close(self) -> None:
        try:
            self._client.delete_collection(self._collection.name)
        except Exception:  # noqa: BLE001 - the collection lives in memory; nothing is lost
            pass

    def __enter__(self) -> "CleanIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
