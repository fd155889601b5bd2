"""Writing files so that a reader never sees half of one: a temporary file beside it, then rename.

    with atomic_write(path) as f:      # text; `binary=True` for bytes
        f.write(...)
    write_json(path, obj); write_jsonl(path, records)

The temporary file is `.NAME.XXXX.tmp` in the same folder (a rename never crosses file systems).
It is removed if writing fails; a process killed while writing leaves it behind, and
`remove_stale_temporaries(folder)` clears such leftovers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator


@contextlib.contextmanager
def atomic_write(path: str | Path, *, binary: bool = False, fsync: bool = True) -> Iterator[IO]:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    mode = p.stat().st_mode & 0o777 if p.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="\n")) as f:
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


def json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(obj, indent=2, ensure_ascii=False, default=json_default) + "\n")


def write_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    """One JSON object per line, atomically. Paths, dataclasses and numpy values are converted."""
    with atomic_write(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, default=json_default))
            f.write("\n")


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporary files a killed writer left in `folder`; returns how many."""
    removed = 0
    for tmp in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed
