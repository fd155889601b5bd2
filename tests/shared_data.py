"""Where the benchmark data with gold labels is (arc/, fpb/; see /work/shared/data/README.md).

The full data is `shared/data` beside the repository (../shared/data), or the folder
$ROBUSTFT_SHARED_DATA names; it is never copied into the repository. Without it (a bare clone), the
tests read the first rows of the few files they use, carried under tests/data/shared/ (same names,
same bytes; see tests/data/README.md), so they still run. A test whose point is the full files
(their exact sizes, a row past the carried ones, a benchmark-size run) carries
`needs_full_data(why)` and is skipped without them, saying why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FULL_DATA = Path(os.environ.get("ROBUSTFT_SHARED_DATA")
                 or Path(__file__).resolve().parents[2] / "shared" / "data")
CARRIED_DATA = Path(__file__).resolve().parent / "data" / "shared"
HAVE_FULL_DATA = FULL_DATA.is_dir()
SHARED_DATA = FULL_DATA if HAVE_FULL_DATA else CARRIED_DATA
ARC, FPB = SHARED_DATA / "arc", SHARED_DATA / "fpb"
# Rows in each ARC and FPB file in use: the published counts, or the first rows carried here.
ARC_ROWS, FPB_ROWS = (1778, 1585) if HAVE_FULL_DATA else (401, 20)


def needs_full_data(why: str):
    """Skip the test without the full shared data, saying why the carried rows do not do."""
    return pytest.mark.skipif(not HAVE_FULL_DATA, reason=f"{why}: needs the full shared benchmark data "
                              f"(not found at {FULL_DATA}; set ROBUSTFT_SHARED_DATA)")


def shared_file(*parts: str) -> Path:
    """A file of the data in use (full or carried); a test asking for one the carried rows lack is
    a test that needs the full data, and is skipped saying so."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{'/'.join(parts)} is not among the rows carried in tests/data/shared: needs the full "
                    f"shared benchmark data (not found at {FULL_DATA}; set ROBUSTFT_SHARED_DATA)")
    return path
