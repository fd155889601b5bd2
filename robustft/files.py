"""Writing files so that a reader never sees half of one: a temporary file beside it, then rename.
Every file robustft writes goes through here.

    with atomic_write(path) as f:      # text; `binary=True` for bytes, `newline=""` to keep "\\r\\n"
        f.write(...)
    write_text(path, text); write_json(path, obj); write_jsonl(path, records)
    with atomic_folder(path) as tmp:   # a folder (a saved dataset): fill `tmp`, it becomes `path`
        ...

The temporary file is `.NAME.XXXX.tmp` in the same folder (a rename never crosses file systems).
It is removed if writing fails; a process killed while writing leaves it behind, and
`remove_stale_temporaries(folder)` clears such leftovers. The folder is created when missing, and
a file that is replaced keeps its permissions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

__all__ = ["atomic_folder", "atomic_write", "json_default", "json_text", "remove_stale_temporaries", "write_json",
           "write_jsonl", "write_text"]


@contextlib.contextmanager
def atomic_write(path: str | Path, *, binary: bool = False, fsync: bool = True,
                 newline: str | None = "\n") -> Iterator[IO]:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    mode = p.stat().st_mode & 0o777 if p.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A folder to fill that then replaces `path` whole (an existing `path` is removed first)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent))
    try:
        yield holder / p.name
        if p.exists():
            shutil.rmtree(p)
        os.replace(holder / p.name, p)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def json_default(obj: Any) -> Any:
    """What JSON cannot hold, as what it can: paths and dates as text, dataclasses as objects,
    sets and tuples as lists, numpy and torch values as numbers."""
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, (_dt.date, _dt.datetime, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def json_text(obj: Any, *, indent: int | None = None, ensure_ascii: bool = False) -> str:
    """Strict JSON text (`allow_nan=False`): NaN and infinity are not JSON, and a reader such as
    `jq` or JavaScript rejects a file that holds them. robustft's own numbers are finite (replies
    are checked on arrival); a non-finite float from the user's data (a pandas gap) is written as
    null, which is what it means."""
    try:
        return json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii, default=json_default, allow_nan=False)
    except ValueError as e:
        if "Out of range float" not in str(e):
            raise
    return json.dumps(_finite(obj), indent=indent, ensure_ascii=ensure_ascii, default=json_default, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if not isinstance(obj, (str, int, bool, type(None))):
        return _finite(json_default(obj))
    return obj


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """One JSON document (UTF-8, not ASCII-escaped) and a final newline."""
    with atomic_write(path) as f:
        f.write(json_text(obj, indent=indent) + "\n")


def write_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    """One strict JSON object per line. Paths, dataclasses and numpy values are converted."""
    with atomic_write(path) as f:
        for record in records:
            f.write(json_text(record))
            f.write("\n")


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporary files and folders a killed writer left in `folder`; returns how many."""
    removed = 0
    for tmp in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
            removed += 1
    return removed
