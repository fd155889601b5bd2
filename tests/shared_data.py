"""Where the shared benchmark data with gold labels is (arc/, fpb/; see its README): `shared/data`
beside the repository (../shared/data), or the folder $ROBUSTFT_SHARED_DATA names. It is never
copied into the repository. A test that reads it carries `needs_shared_data`, or gets a path
from `shared_file`, and is skipped when the data is absent; no other test is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("ROBUSTFT_SHARED_DATA")
                   or Path(__file__).resolve().parents[2] / "shared" / "data")
ARC, FPB = SHARED_DATA / "arc", SHARED_DATA / "fpb"

needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                       reason=f"shared benchmark data not found at {SHARED_DATA}")


def shared_file(*parts: str) -> Path:
    """A file of the shared data, or skip the test (or fixture) that asks when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared benchmark data not found at {path}")
    return path
