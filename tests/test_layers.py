"""Every module of robustft has its place in the layers contract (pyproject.toml), which
`lint-imports` (run by `make test` before pytest) enforces; docs/architecture.md draws it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_CODE = {"__init__", "demo_data"}


def test_every_top_level_module_is_in_a_layer():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    placed = {name.removeprefix("robustft.") for layer in layers for name in re.split(r"[|:]", layer)
              for name in [name.strip()]}
    modules = {p.stem for p in (ROOT / "robustft").glob("*.py")} | {
        p.name for p in (ROOT / "robustft").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert modules - NOT_CODE - placed == set(), "add them to [tool.importlinter] layers in pyproject.toml"
    assert placed - modules == set(), "layers name modules that do not exist"
    documented = (ROOT / "docs" / "architecture.md").read_text()
    missing = [m for m in modules - NOT_CODE - {"__main__"} if f"{m}.py" not in documented and f"{m}/" not in documented]
    assert not missing, f"docs/architecture.md's layers do not show {missing}"
