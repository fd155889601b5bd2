"""Checking and rebuilding a damaged response store (`robustft doctor`).

A store can be damaged by a disk fault, a copy cut short, or a hand edit: SQLite's own check
fails, a table was replaced by one of other columns, or single rows do not decode. A run treats a
row it cannot read as missing (asked again, `ResponseStore.get`); `check_store` finds every such
problem without changing anything, and `rebuild_store` writes a new store holding every row that
still reads and replaces the old one (the missing responses are asked again by the next run).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..files import refuse_link
from .store import _FORMAT, _SCHEMA, COLUMNS, decode_generation


@dataclass
class StoreHealth:
    path: Path
    problems: list[str] = field(default_factory=list)
    responses: int = 0          # rows that read
    embeddings: int = 0
    bad_rows: int = 0           # rows that do not (left out by a rebuild: asked again)
    unreadable: bool = False    # not an SQLite file at all: a rebuild starts empty

    @property
    def ok(self) -> bool:
        return not self.problems


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None)


def _rows(db: sqlite3.Connection, table: str, health: StoreHealth):
    """The table's rows as far as they read; a malformed page ends the scan with a problem noted."""
    try:
        yield from db.execute(f"SELECT {', '.join(COLUMNS[table])} FROM {table}")
    except sqlite3.DatabaseError as e:
        health.problems.append(f"table {table} cannot be read to the end ({e})")
        health.bad_rows += 1


def check_store(path: str | Path) -> StoreHealth:
    path = Path(path)
    refuse_link(path)
    health = StoreHealth(path)
    try:
        db = _connect(path)
        verdict = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        health.problems.append(f"not readable as an SQLite database ({e})")
        health.unreadable = True
        return health
    try:
        if verdict != "ok":
            health.problems.append(f"SQLite's integrity check fails ({verdict})")
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, columns in COLUMNS.items():
            if table not in tables:
                health.problems.append(f"table {table} is missing")
                continue
            have = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            if have != columns:
                health.problems.append(f"table {table} has the columns {', '.join(have)} (a store has "
                                       f"{', '.join(columns)}): it was replaced")
                continue
            if table == "responses":
                for key, value in _rows(db, table, health):
                    try:
                        if not isinstance(key, bytes):
                            raise ValueError("key is not bytes")
                        decode_generation(value)
                        health.responses += 1
                    except Exception:  # noqa: BLE001 - any way a row fails to decode is damage
                        health.bad_rows += 1
            elif table == "embeddings":
                sizes: Counter[int] = Counter()
                vectors = [(k, v) for k, v in _rows(db, table, health)]
                for _, v in vectors:
                    if isinstance(v, bytes) and v and len(v) % 2 == 0:
                        sizes[len(v)] += 1
                common = sizes.most_common(1)[0][0] if sizes else None
                for k, v in vectors:
                    if isinstance(k, bytes) and isinstance(v, bytes) and len(v) == common:
                        health.embeddings += 1
                    else:
                        health.bad_rows += 1
        if health.bad_rows and not any("cannot be read" in p for p in health.problems):
            health.problems.append(f"{health.bad_rows} rows cannot be read (damaged, or a vector of the wrong "
                                   "size); they count as missing and are asked again")
    except sqlite3.DatabaseError as e:
        health.problems.append(f"cannot be read ({e})")
    finally:
        db.close()
    return health


def rebuild_store(path: str | Path) -> StoreHealth:
    """Replace the store at `path` with one holding every row that reads; returns what was kept."""
    path = Path(path)
    health = check_store(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        new = sqlite3.connect(tmp, isolation_level=None)
        new.execute("PRAGMA journal_mode=DELETE")
        for statement in _SCHEMA:
            new.execute(statement)
        new.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (_FORMAT,))
        kept = StoreHealth(path)
        if not health.unreadable:
            old = _connect(path)
            try:
                new.execute("BEGIN")
                sizes: Counter[int] = Counter()
                for table in ("responses", "embeddings"):
                    with contextlib.suppress(sqlite3.DatabaseError):
                        have = [row[1] for row in old.execute(f"PRAGMA table_info({table})")]
                        if have != COLUMNS[table]:
                            continue
                        rows = list(_rows(old, table, kept))
                        if table == "embeddings":
                            sizes.update(len(v) for _, v in rows if isinstance(v, bytes) and v and len(v) % 2 == 0)
                            common = sizes.most_common(1)[0][0] if sizes else None
                        for key, value in rows:
                            if not isinstance(key, bytes) or not isinstance(value, bytes):
                                continue
                            if table == "responses":
                                try:
                                    decode_generation(value)
                                except Exception:  # noqa: BLE001
                                    continue
                                kept.responses += 1
                            elif len(value) != common:
                                continue
                            else:
                                kept.embeddings += 1
                            new.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)", (key, value))
                with contextlib.suppress(sqlite3.DatabaseError):  # what was kept beside them (money spent)
                    if [row[1] for row in old.execute("PRAGMA table_info(meta)")] == COLUMNS["meta"]:
                        for name, value in _rows(old, "meta", kept):
                            if isinstance(name, str) and isinstance(value, str) and name != "format":
                                new.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
                new.execute("COMMIT")
            finally:
                old.close()
        new.close()
        # The old store's write-ahead log belongs to the old file: it must not be applied to the new one.
        for end in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{end}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return kept
