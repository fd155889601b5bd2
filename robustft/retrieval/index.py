"""The clean-sample index as a Chroma collection (`denoise.retrieval: chroma`), built at the
barrier from stored vectors: approximate nearest neighbours, for clean sets of millions.

The vectors themselves are persisted in the run's response store as they are made, so the
collection lives in memory: building it is cheap next to embedding, and a run directory does not
carry a second copy of every vector. Only ids go into Chroma; the runner holds the questions.

Chroma's HNSW search is approximate, and which near-ties it returns changes from one build of the
same collection to the next. Chroma is asked for many candidates, which are ranked again here by
their exact cosine similarity (ties going to the sample that comes first in the data), so that
only a true neighbour missing from Chroma's candidates makes a difference: measured on ARC's
simulator embeddings (1,200 clean, 573 queries, k = 3), two builds differed on 3 queries. A resumed run, or one on Ray, can
therefore show a few samples other examples than an uninterrupted one would; the default,
`robustft.retrieval.exact`, cannot.
"""

from __future__ import annotations

import uuid
from typing import Sequence

import numpy as np

from .exact import ExactIndex, unit_rows

# HNSW settings: Chroma's defaults build slowly at tens of thousands of vectors; these keep a
# 20,000-vector build to seconds while nearest-neighbour recall on sentence embeddings stays high.
_HNSW = {"space": "cosine", "max_neighbors": 16, "ef_construction": 64, "ef_search": 200}


def candidates(k: int) -> int:
    """How many neighbours Chroma is asked for, to rank exactly (see the module's docstring)."""
    return max(10 * k, 50)


class CleanIndex:
    def __init__(self) -> None:
        import chromadb
        from chromadb.config import Settings

        self._client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
        self._collection = self._client.create_collection(f"clean-{uuid.uuid4().hex}", configuration={"hnsw": _HNSW},
                                                          embedding_function=None)
        self._size = 0
        self._ids: list[str] = []  # in the order added (the data order), which settles ties
        self._rows: dict[str, int] = {}  # id -> its row in self._ids and self._unit
        self._parts: list[np.ndarray] = []
        self._unit: np.ndarray | None = None

    def __len__(self) -> int:
        return self._size

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        step = self._client.get_max_batch_size()
        for i in range(0, len(ids), step):
            self._collection.add(ids=list(ids[i:i + step]), embeddings=np.asarray(vectors[i:i + step], dtype=np.float32))
        for i, sid in enumerate(ids):
            self._rows[sid] = self._size + i
        self._ids.extend(ids)
        self._parts.append(unit_rows(vectors).astype(np.float32))  # float32 held: half the memory
        self._unit = None
        self._size += len(ids)

    def query(self, vectors: np.ndarray, k: int, exclude_ids: Sequence[str | None] | None = None,
              chunk: int = 2000) -> list[list[tuple[str, float]]]:
        """The k nearest ids with their cosine similarity, most similar first (ties: the id added
        first), for each vector; `exclude_ids[i]` is never among row i's results (a sample is not
        its own example)."""
        if len(vectors) == 0:
            return []
        if self._size == 0:
            return [[] for _ in range(len(vectors))]
        if self._unit is None:
            self._unit = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
            self._parts = [self._unit]
        n = min(candidates(k) + 1, self._size)
        exclude = list(exclude_ids) if exclude_ids is not None else [None] * len(vectors)
        queries = unit_rows(vectors)
        results: list[list[tuple[str, float]]] = []
        for start in range(0, len(vectors), chunk):
            found = self._collection.query(query_embeddings=np.asarray(vectors[start:start + chunk], dtype=np.float32),
                                           n_results=n, include=[])
            for row, ids in enumerate(found["ids"]):
                skip = exclude[start + row]
                rows = sorted(self._rows[i] for i in ids if i != skip)
                exact = self._unit[rows].astype(np.float64) @ queries[start + row]
                # A stable sort on similarity alone: equal similarities keep the data order.
                best = np.argsort(-exact, kind="stable")[:k]
                results.append([(self._ids[rows[j]], round(float(exact[j]), 6)) for j in best])
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



def make_index(retrieval: str) -> "ExactIndex | CleanIndex":
    """The index `denoise.retrieval` names: exact (the default) or chroma."""
    return CleanIndex() if retrieval == "chroma" else ExactIndex()
