#!/usr/bin/env python3
"""Fetch the RobustFT paper's ARC and FPB data from the paper's published repository.

    python scripts/get_paper_data.py                  # -> data/paper/{arc,fpb}/*.csv
    python scripts/get_paper_data.py --out DIR
    python scripts/get_paper_data.py --source PATH    # a local clone of luo-junyu/RobustFT

The files come from https://github.com/luo-junyu/RobustFT at a pinned commit and are written
under the names the configs in examples/paper/ use:

    arc/labeled.csv  arc/noisy30.csv  arc/noisy50.csv  arc/noisy70.csv  arc/test.csv
    fpb/labeled.csv  fpb/noisy30.csv  fpb/noisy50.csv  fpb/noisy70.csv  fpb/test.csv

Two changes are made, both checked: the repository keeps the noisy sets in a `noisy/` folder
(`data/arc/noisy/noisy30.csv`), here they sit beside the others; and the FPB noisy sets lose
their `gt` column, which holds the correct sentiment of every row and would hand the answer to
anything reading the training input (`labeled.csv` and `test.csv` keep it). Every file written
is checked against its SHA-256; a file that does not match is not kept. Files already present
with the right content are not fetched again.

Needs internet access to github.com (raw.githubusercontent.com) unless --source is a clone.
Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

REPOSITORY = "luo-junyu/RobustFT"
COMMIT = "d3957eb44424413b37403af54aeac4f18bc6cddf"
DEFAULT_SOURCE = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}/"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "paper"
DROP_GT = "drop-gt"

# destination (under --out) -> (path in the repository, change, SHA-256 of the file written)
FILES: dict[str, tuple[str, str | None, str]] = {
    "arc/labeled.csv": ("data/arc/labeled.csv", None,
                        "e8a0fbaad66ff0be2aed35ec65705c540231fd712223f70f15f20d7a5175e520"),
    "arc/noisy30.csv": ("data/arc/noisy/noisy30.csv", None,
                        "c38685ca5fecff7bc7cb68902bb81e73139d8951210fb693b886e75201a8166f"),
    "arc/noisy50.csv": ("data/arc/noisy/noisy50.csv", None,
                        "6c7265f81b05a0c324f6441367cbeb15ec61140fcee9f9679a84f382acf45f6d"),
    "arc/noisy70.csv": ("data/arc/noisy/noisy70.csv", None,
                        "5baff93e74a37c73cc3274053c01ec7a4777d0b9dd04ced15475fa200dce6c30"),
    "arc/test.csv": ("data/arc/test.csv", None,
                     "cc339029d24df6cc588041fd1d615252b74a41e48d6526896bb65741f829082e"),
    "fpb/labeled.csv": ("data/fpb/labeled.csv", None,
                        "7ad29837ba2ac62aa0fba344fc36bfc8e912431abd8d5988fe9133a186e42160"),
    "fpb/noisy30.csv": ("data/fpb/noisy/noisy30.csv", DROP_GT,
                        "6df3ed02abd2ec4bbc143a5982398ac0a7915cd2df5d583ccd52c3c90e08bfe0"),
    "fpb/noisy50.csv": ("data/fpb/noisy/noisy50.csv", DROP_GT,
                        "b9b776ae73114e9ae3dd32798421e84d9e660652f7e484f56d7259c31269a863"),
    "fpb/noisy70.csv": ("data/fpb/noisy/noisy70.csv", DROP_GT,
                        "d4d14c650f50d181fdcf7265fbfc15a641b29edde602e372eb51165e4b023b9d"),
    "fpb/test.csv": ("data/fpb/test.csv", None,
                     "2f0977b86ba04ac9e8b4d06d0f3a62a783c3e192dcecf53a990e4203739c9097"),
}


class FetchError(Exception):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(source: str, path: str) -> bytes:
    """The bytes of `path` in the repository, from a URL prefix or a local clone."""
    if "://" not in source:
        local = Path(source) / path
        try:
            return local.read_bytes()
        except OSError as e:
            raise FetchError(f"{local}: {e.strerror or e}; is --source a clone of {REPOSITORY}?") from None
    url = source.rstrip("/") + "/" + path
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - a fixed https URL
            return response.read()
    except (urllib.error.URLError, OSError) as e:
        raise FetchError(f"{url}: {getattr(e, 'reason', e)}; this needs internet access to github.com (or pass "
                         f"--source with a local clone of https://github.com/{REPOSITORY})") from None


def drop_gt(data: bytes) -> bytes:
    """The CSV without its `gt` column, written the way the csv module writes (CRLF line ends)."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    if not rows or "gt" not in rows[0]:
        raise FetchError("expected a 'gt' column in the FPB noisy file; has the repository changed?")
    index = rows[0].index("gt")
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    for row in rows:
        writer.writerow(row[:index] + row[index + 1:])
    return out.getvalue().encode("utf-8")


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def get(out: Path, source: str, log=print) -> list[Path]:
    """Fetch every file into `out`; returns the paths. Raises FetchError naming the file."""
    written = []
    for dest, (repo_path, change, expected) in FILES.items():
        target = out / dest
        if target.is_file() and sha256(target.read_bytes()) == expected:
            log(f"  {dest}: already there")
            written.append(target)
            continue
        data = fetch(source, repo_path)
        if change == DROP_GT:
            data = drop_gt(data)
        got = sha256(data)
        if got != expected:
            raise FetchError(f"{dest} (from {repo_path}): SHA-256 {got}, expected {expected}; the file is not the "
                             f"one published at commit {COMMIT[:7]}, so it was not written")
        write_atomic(target, data)
        log(f"  {dest}: {len(data):,} bytes")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"destination folder (default {DEFAULT_OUT})")
    parser.add_argument("--source", default=DEFAULT_SOURCE,
                        help="URL prefix of the repository's files, or a local clone (default: GitHub at the pinned "
                             "commit)")
    args = parser.parse_args(argv)
    print(f"RobustFT paper data from {REPOSITORY}@{COMMIT[:7]} -> {args.out}")
    try:
        get(args.out, args.source)
    except FetchError as e:
        print(f"get_paper_data: error: {e}", file=sys.stderr)
        return 1
    print(f"done: {len(FILES)} files in {args.out}; run e.g. `robustft run examples/paper/arc-noisy30.yaml`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
