"""A sentence-transformers model run by ONNX Runtime: the same weights, the same vectors, less CPU.

The transformer is the model's own ONNX export (`onnx_export`); tokenizing is the model's own
fast tokenizer (tokenizer.json, the `tokenizers` library sentence-transformers uses too), with
sentence-transformers' truncation and whitespace stripping; pooling and normalisation are done
here in numpy, as sentence-transformers does them. Vectors match torch's to about 1e-7 in cosine
(tests/test_onnx_embedder.py).

Why it is faster, measured on 2 busy cores (benchmarks/local_embedder.py): torch is not imported
(5 s of CPU at start-up), and texts are sorted by length and run in groups of 8, so a short
question is not padded to the longest of 64 (padding had tripled the work).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .sentence_layout import SentenceLayout

# Texts per ONNX Runtime call, after sorting by length: measured 6.5-7 ms/text from 4 to 12 on
# ARC questions (1 thread), 8.5 at 1 (no padding, but small matrix products), 26 at 64.
GROUP = 8


class OnnxEncoder:
    """`encode(texts)` -> float32 rows of unit length, one per text, in order."""

    def __init__(self, model: Path | bytes, layout: SentenceLayout, threads: int, group: int = GROUP):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle ORT threads otherwise spin for a while after each call, taking CPU from the event loop.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model) if isinstance(model, Path) else model, options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self._prepare(layout, group)

    def _prepare(self, layout: SentenceLayout, group: int) -> None:
        """The tokenizer and grouping, shared by any engine that runs the same export."""
        from tokenizers import Tokenizer

        self.layout = layout
        self.group = group
        self.tokenizer = Tokenizer.from_file(str(layout.tokenizer_file))
        self.tokenizer.no_padding()  # tokenizer.json may pad to a fixed length: padding is per group here
        self.tokenizer.enable_truncation(layout.max_length)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        texts = [t.strip() for t in texts]  # as sentence-transformers' Transformer.tokenize
        if self.layout.lowercase:
            texts = [t.lower() for t in texts]
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        ids = self.token_ids(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: np.ndarray | None = None
        for start in range(0, len(order), self.group):
            rows = order[start:start + self.group]
            pooled = self._pooled([ids[i] for i in rows])
            if out is None:
                out = np.zeros((len(ids), pooled.shape[1]), dtype=np.float32)
            out[rows] = pooled
        if out is None:
            return np.zeros((0, 0), dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)

    def _pooled(self, group: list[list[int]]) -> np.ndarray:
        feed, mask = self.feed(group)
        return pool(self._run(feed), mask, self.layout.pooling)

    def feed(self, group: list[list[int]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The model's inputs for one group, padded to its longest text, and the attention mask."""
        width = max(len(t) for t in group)
        input_ids = np.zeros((len(group), width), dtype=np.int64)
        mask = np.zeros((len(group), width), dtype=np.int64)
        for row, tokens in enumerate(group):
            input_ids[row, :len(tokens)] = tokens
            mask[row, :len(tokens)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        return {k: v for k, v in feed.items() if k in self.inputs}, mask

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The transformer's last hidden state for one padded group."""
        return self.session.run(None, feed)[0]


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """sentence-transformers' Pooling: the mean of the real tokens' states, or the first token's."""
    if mode == "cls":
        return hidden[:, 0].astype(np.float32)
    weights = mask[..., None].astype(np.float32)
    return (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
