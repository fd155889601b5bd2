"""The clean-sample index searched exactly: every noisy question against every clean one.

The default (`denoise.retrieval: exact`), because it makes retrieval a function of the clean set
alone: a resumed run, or one on Ray, shows every noisy sample the same examples as an
uninterrupted local run. Chroma's HNSW search (`robustft.retrieval.index`) is approximate and its
near-ties change from one build to the next.

The cost is one matrix product, in chunks of queries so that memory stays bounded, and a partial
sort of each chunk: for 100,000 rows at 30 % noise and 384 dimensions (30,000 noisy against 70,000
clean questions), 35 to 45 s measured on 2 busy cores, against the hours the model calls of such
a run take.
It grows with the product of the two counts: past a few hundred thousand rows the approximate
index is the one to use.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Scores of one chunk of queries against every clean sample: at most this many values (32 MB of
# float32 scores, and 64 MB for the partial sort's int64 indices of the same shape).
_CHUNK_VALUES = 1 << 23
# Candidates kept from the float32 product before the exact float64 ranking: enough that float32
# rounding cannot push a true neighbour out.
_MARGIN = 8


class ExactIndex:
    def __init__(self) -> None:
        self._ids: list[str] = []  # in the order added (the data order), which settles ties
        self._rows: dict[str, int] = {}
        self._parts: list[np.ndarray] = []
        self._unit: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        for sid in ids:
            self._rows[sid] = len(self._ids)
            self._ids.append(sid)
        self._parts.append(unit_rows(vectors).astype(np.float32))
        self._unit = None

    def query(self, vectors: np.ndarray, k: int,
              exclude_ids: Sequence[str | None] | None = None) -> list[list[tuple[str, float]]]:
        """The k nearest ids with their cosine similarity, most similar first (ties: the id added
        first), for each vector; `exclude_ids[i]` is never among row i's results (a sample is not
        its own example)."""
        if len(vectors) == 0:
            return []
        if not self._ids:
            return [[] for _ in range(len(vectors))]
        if self._unit is None:
            self._unit = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
            self._parts = [self._unit]
        queries = unit_rows(vectors)
        exclude = list(exclude_ids) if exclude_ids is not None else [None] * len(vectors)
        step = self._queries_per_step()
        results: list[list[tuple[str, float]]] = []
        for start in range(0, len(queries), step):
            block = queries[start:start + step]
            results += self._ranked(block, self._candidates(block, k), exclude[start:start + step], k)
        return results

    def _queries_per_step(self) -> int:
        return max(1, _CHUNK_VALUES // len(self._ids))

    def _candidates(self, block: np.ndarray, k: int) -> np.ndarray:
        """Rows of the clean samples that may be among each query's k nearest (one row of the
        result per query), from a float32 product over every clean sample."""
        keep = min(k + _MARGIN + 1, len(self._ids))
        negated = (-block).astype(np.float32) @ self._unit.T  # negated: argpartition wants the smallest
        if keep < negated.shape[1]:
            return np.argpartition(negated, keep - 1, axis=1)[:, :keep]
        return np.broadcast_to(np.arange(negated.shape[1]), negated.shape)

    def _ranked(self, block: np.ndarray, near: np.ndarray, exclude: list[str | None],
                k: int) -> list[list[tuple[str, float]]]:
        """The candidates ranked by their exact (float64) similarity, in the data order first so
        that a stable sort gives ties to the sample that comes first."""
        near = np.sort(near, axis=1)
        exact = np.einsum("ijd,id->ij", self._unit[near].astype(np.float64), block)
        for row, skip in enumerate(exclude):
            if skip is not None and skip in self._rows:
                exact[row, near[row] == self._rows[skip]] = -np.inf
        best = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        return [[(self._ids[near[row, j]], round(float(exact[row, j]), 6))
                 for j in best[row] if exact[row, j] != -np.inf] for row in range(len(block))]

    def close(self) -> None:
        self._unit, self._parts = None, []

    def __enter__(self) -> "ExactIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unit_rows(vectors: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), in `dtype`: cosine similarity is then a dot
    product. The index computes in float64; embedders hand out float32 (what the store keeps)."""
    m = np.asarray(vectors, dtype=dtype)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1.0, norms)
