"""What a data path names: a file format by its suffix, else perhaps a Hugging Face Hub name.

A leaf: the config resolves a config file's relative `data.path` with it (`config.PATH_SETTINGS`),
and `data/` reads and writes by it.
"""

from __future__ import annotations

import re
from pathlib import Path

JSONL_SUFFIXES = (".jsonl", ".ndjson")
TEXT_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
PARQUET_SUFFIXES = (".parquet", ".pq")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def looks_like_hub_name(text: str) -> bool:
    """``name`` or ``org/name``, with no suffix of a data file (which would mean a missing file)."""
    suffix = Path(text).suffix.lower()
    return bool(_HUB_NAME.fullmatch(text)) and suffix not in TEXT_SUFFIXES and suffix not in PARQUET_SUFFIXES
