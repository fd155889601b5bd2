"""samples.jsonl while a run is going: an append-only journal of sample records.

A sample's record is appended the moment it leaves the graph: after detection (`clean`, `failed`,
or `noisy`, waiting at the barrier) and after relabeling (`candidate`, or `failed`). Every line
is one complete JSON object written with one `write`, so the file stays valid JSON Lines after
any kill; a line torn by a power cut is cut off when the journal is next opened. A sample re-run
later appends a new record: the last record of an id is the one that counts.

When the run ends, the runner rewrites the file in input order, one final record per sample
(`robustft.run.rundir.RunDir.write_outputs`); that file is a journal too, so a later run (a new β,
a larger `data.limit`, changed settings) starts from it.

In memory the journal keeps, per sample, only where its last record starts and what selection
needs (`Entry`), so memory does not grow with the records' size.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import orjson

from ..errors import UserError
from ..files import json_default, json_text, open_nofollow
from .records import SampleRecord


def dump_line(record: Mapping[str, Any]) -> bytes:
    """One JSON Lines line. orjson is several times faster than json; text it cannot encode (a lone
    surrogate from a broken file) goes through json, which can."""
    try:
        return orjson.dumps(record, default=json_default, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json_text(record, ensure_ascii=True) + "\n").encode()


@dataclass(slots=True)
class Entry:
    offset: int                 # where the record's line starts
    status: str
    fingerprint: str | None
    score: float | None
    reason: str | None = None   # why a dropped sample was dropped (selection, unreadable)


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, Entry] = {}
        self._file: BinaryIO | None = None
        self._reader: BinaryIO | None = None
        self.repaired = 0  # bytes of a torn last line cut off when opened

    def open(self) -> "Journal":
        """Read what is there (repairing a torn tail), then open for appending."""
        if self.path.exists():
            self._scan()
        self._file = os.fdopen(open_nofollow(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab")
        return self

    def _scan(self) -> None:
        with os.fdopen(open_nofollow(self.path, os.O_RDONLY), "rb") as f:
            offset = 0
            for number, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    # A line without its newline is the one a kill or power cut interrupted.
                    f.close()
                    with os.fdopen(open_nofollow(self.path, os.O_RDWR), "r+b") as fix:
                        fix.truncate(offset)
                    self.repaired = len(line)
                    break
                if line.strip():
                    try:
                        record = orjson.loads(line)
                        sid = str(record["id"])
                        status = record["status"]
                    except (ValueError, KeyError, TypeError):
                        raise UserError(f"{self.path}, line {number}: not a sample record (damaged file); move "
                                        "the file away to re-run every sample (answers come back from the "
                                        "response store), or restore it") from None
                    self.entries[sid] = Entry(offset, status, record.get("fingerprint"), record.get("score"),
                                              record.get("reason"))
                offset += len(line)

    def append(self, record: SampleRecord) -> Entry:
        assert self._file is not None
        line = dump_line(record)
        offset = self._file.tell()
        try:
            self._file.write(line)
            self._file.flush()  # one write per record: a kill never leaves half a line in our buffer
        except OSError as e:  # a full disk: a torn line is cut off when the journal is next opened
            raise OSError(e.errno, e.strerror, str(self.path)) from None
        entry = Entry(offset, record["status"], record.get("fingerprint"), record.get("score"), record.get("reason"))
        self.entries[str(record["id"])] = entry
        return entry

    def read(self, sid: str) -> SampleRecord:
        """The last record of `sid`."""
        if self._reader is None:
            self._reader = os.fdopen(open_nofollow(self.path, os.O_RDONLY), "rb")
        self._reader.seek(self.entries[sid].offset)
        return orjson.loads(self._reader.readline())

    def sync(self) -> None:
        """Flush to the disk itself (the end of a phase: a power cut then loses nothing before it)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        for f in (self._file, self._reader):
            if f is not None:
                f.close()
        self._file = self._reader = None
