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


# a file extension: letters after the last dot ("mc.cvs"); a hub name may end in a version ("v1.1")
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,5}")


def looks_like_path(text: str) -> bool:
    """A value a person meant as a file: it has a file extension (a typo such as ``mc.cvs`` too),
    or starts like a path (``./``, ``/``, ``~``), or has more than one ``/``."""
    return (text.startswith(("/", "./", "../", "~", ".\\", "..\\")) or Path(text).is_absolute()
            or text.count("/") > 1 or bool(_EXTENSION.fullmatch(Path(text).suffix)))


def looks_like_hub_name(text: str) -> bool:
    """``name`` or ``org/name`` that does not look like a path (a missing file is never a hub name)."""
    return bool(_HUB_NAME.fullmatch(text)) and not looks_like_path(text)
