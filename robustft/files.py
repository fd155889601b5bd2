"""Writing files so that a reader never sees half of one: a temporary file beside it, then rename.
Every file robustft writes goes through here.

    with atomic_write(path) as f:      # text; `binary=True` for bytes, `newline=""` to keep "\\r\\n"
        f.write(...)
    write_text(path, text); write_json(path, obj); write_jsonl(path, records)
    with atomic_folder(path) as tmp:   # a folder (a saved dataset): fill `tmp`, it becomes `path`
        ...

The temporary file is `.NAME.XXXXXXXX.tmp` in the same folder (a rename never crosses file
systems). It is removed if writing fails; a process killed while writing leaves it behind, and
`remove_stale_temporaries(folder, names)` clears such leftovers: only those of the file names
given (the names robustft writes there), never an editor's swap file or a user's folder that
happens to end in `.tmp`. The folder is created when missing, and a file that is replaced keeps
its permissions.

Nothing here writes through a symbolic link: a link where robustft writes could point anywhere
(another user's file, a system file), so `atomic_write`, `atomic_folder`, `open_nofollow` and
`refuse_link` refuse one with a `UserError` that names it (exit 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import datetime as _dt
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from .errors import UserError

__all__ = ["atomic_folder", "atomic_write", "disk_error_message", "json_default", "json_text", "open_nofollow", "refuse_link", "remove_stale_temporaries",
           "write_json", "write_jsonl", "write_text"]

LINK_FIX = ("robustft never writes through a symbolic link (it could change a file outside the run directory): "
            "replace the link with the file itself, or remove it, and run the command again")


def refuse_link(path: str | Path) -> None:
    """A `UserError` naming `path` when it is a symbolic link (dangling or not)."""
    if os.path.islink(path):
        raise UserError(f"{path}: is a symbolic link (to {os.readlink(path)}); {LINK_FIX}")


def open_nofollow(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """`os.open` that refuses a symbolic link as the last part of `path` (O_NOFOLLOW): the check and
    the open are one step, so a link planted in between is refused too."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):
            refuse_link(path)
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, *, binary: bool = False, fsync: bool = True,
                 newline: str | None = "\n") -> Iterator[IO]:
    p = Path(path)
    made = _make_parents(p)
    refuse_link(p)
    mode = p.stat().st_mode & 0o777 if p.exists() else 0o644
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:
        _remove_made(made)
        raise _naming(e, p) from None
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _remove_made(made)
        if isinstance(e, OSError) and e.errno in _DISK_FIXES:
            raise _naming(e, p) from None
        raise


def _make_parents(p: Path) -> list[Path]:
    """Create `p`'s missing folders; returns those made (deepest last), so a failed write can
    remove them again and leave no empty folder behind."""
    missing = []
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    p.parent.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _remove_made(made: list[Path]) -> None:
    for folder in reversed(made):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _naming(e: OSError, path: Path) -> OSError:
    """`e` about `path` (the file being written), not about its temporary or no file at all."""
    return type(e)(e.errno, e.strerror, str(path))


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A folder to fill that then replaces `path` whole (an existing `path` is removed first)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    refuse_link(p)
    holder = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent))
    try:
        yield holder / p.name
        if p.exists():
            shutil.rmtree(p)
        os.replace(holder / p.name, p)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


_DISK_FIXES = {
    errno.ENOSPC: "the disk is full: free some space there (or pass a path on another disk), then run the same "
                  "command again",
    errno.EDQUOT: "your disk quota is used up: free some space (or pass a path on another disk), then run the same "
                  "command again",
    errno.EFBIG: "the file is too large for that file system: pass a path on another one",
    errno.EROFS: "that file system is read-only: pass a path on a writable one (or remount it writable)",
    errno.EACCES: "permission denied: fix the folder's permissions or pass a path you can write to",
    errno.EPERM: "not permitted: fix the folder's permissions or pass a path you can write to",
    errno.EIO: "the disk reported an input/output error: check it, then run the same command again",
}


def disk_error_message(e: OSError) -> str | None:
    """What a person should read for a write the machine refused (full, read-only, no permission),
    naming the path; None for an error of another kind. Nothing is half-written: every file goes
    through a temporary that is removed when writing fails."""
    fix = _DISK_FIXES.get(e.errno)
    if fix is None:
        return None
    where = e.filename if e.filename is not None else "a file"
    if e.filename2 is not None:
        where = f"{e.filename} -> {e.filename2}"
    return f"cannot write {where} ({e.strerror or e}); {fix}. Nothing was half-written"


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


_RANDOM = r"[a-z0-9_]{8}"  # tempfile's names: 8 of a-z, 0-9 and _


def temporary_pattern(names: Iterable[str]) -> re.Pattern[str]:
    """The names `atomic_write` and `atomic_folder` give the temporaries of `names`."""
    alternatives = "|".join(re.escape(n) for n in sorted(names))
    return re.compile(rf"\.(?:{alternatives})\.(?:{_RANDOM}|next)\.tmp")


def remove_stale_temporaries(folder: str | Path, names: Iterable[str]) -> int:
    """Delete the temporary files and folders a killed writer of one of `names` left in `folder`;
    returns how many. Anything else (a swap file, a user's `.build.tmp`), and any link, stays."""
    pattern = temporary_pattern(names)
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not pattern.fullmatch(entry.name) or entry.is_symlink():
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
    return removed
