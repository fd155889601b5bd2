"""What a local sentence-transformers folder computes, read from its own files (no torch).

The ONNX path (`onnx_encoder`) reproduces a model only when it is the common shape: a Hugging
Face transformer, then mean or CLS pooling, then an optional L2 normalisation. Anything else
(dense layers after pooling, other pooling modes, no fast tokenizer) is run by
sentence-transformers itself; `read_layout` says why in its error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"


class UnsupportedLayout(Exception):
    """The folder is not a shape the ONNX path reproduces exactly (the message says which part)."""


@dataclass(frozen=True)
class SentenceLayout:
    folder: Path
    tokenizer_file: Path
    max_length: int       # tokens per text after truncation, special tokens included (as sentence-transformers)
    pooling: str          # "mean" or "cls"
    lowercase: bool       # sentence_bert_config's do_lower_case: texts lowercased before tokenizing


def _json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnsupportedLayout(f"no {path.name}") from None
    except (OSError, ValueError) as e:
        raise UnsupportedLayout(f"{path.name} is unreadable ({e})") from None


def read_layout(folder: str | Path) -> SentenceLayout:
    folder = Path(folder)
    if not folder.is_dir():
        raise UnsupportedLayout("not a local folder")
    modules = _json(folder / "modules.json")
    types = [m.get("type") for m in modules] if isinstance(modules, list) else []
    if types not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]):
        raise UnsupportedLayout(f"modules {types} (only Transformer, Pooling[, Normalize])")
    if modules[0].get("path", "") not in ("", "."):
        raise UnsupportedLayout("the transformer is in a subfolder")
    pooling_config = _json(folder / modules[1]["path"] / "config.json")
    modes = [k for k, v in pooling_config.items() if k.startswith("pooling_mode") and v is True]
    pooling = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}.get(modes[0]) if len(modes) == 1 else None
    if pooling is None:
        raise UnsupportedLayout(f"pooling {modes} (only mean or CLS)")
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise UnsupportedLayout("no tokenizer.json (fast tokenizer)")
    st_config = _json(folder / "sentence_bert_config.json")
    max_length = st_config.get("max_seq_length") if isinstance(st_config, dict) else None
    if not isinstance(max_length, int) or max_length <= 0:
        raise UnsupportedLayout("no max_seq_length in sentence_bert_config.json")
    return SentenceLayout(folder=folder, tokenizer_file=tokenizer_file, max_length=max_length, pooling=pooling,
                          lowercase=bool(st_config.get("do_lower_case", False)))
