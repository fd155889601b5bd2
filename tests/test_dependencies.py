"""pyproject.toml declares exactly what the code imports.

Every third-party module imported under robustft/ comes from a distribution declared in
`dependencies` or an optional extra; everything tests/ and benchmarks/ import is in the core
dependencies or the `dev` extra; every core dependency is imported by robustft/ (or listed below
with the reason it is needed without an import); no requirement is declared twice.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Declared although robustft/ never imports them, each for a reason.
NEEDED_WITHOUT_IMPORT: set[str] = set()
# Import names of optional packages that may not be installed here (no metadata to ask).
NOT_INSTALLED = {"vllm": "vllm", "openvino": "openvino"}
# Measured by a benchmark when installed, never needed: not a dependency of anything, by design.
BENCHMARKED_WHEN_INSTALLED = {"openvino": "benchmarks/local_embedder.py compares it with the default engine"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _imported_distributions(folder: str) -> dict[str, set[str]]:
    """{distribution: files importing it} for the third-party top-level imports under `folder`."""
    # Modules of the folder itself, and of tests/ (benchmarks borrow its helpers, such as otlp_receiver).
    local = {p.stem for d in (folder, "tests") for p in (ROOT / d).glob("*.py")} | {"robustft", "tests", "benchmarks"}
    by_module = md.packages_distributions()
    found: dict[str, set[str]] = {}
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in local:
                    continue
                dists = [_name(d) for d in by_module.get(top) or [NOT_INSTALLED.get(top, f"?{top}")]]
                # A namespace several distributions share (langgraph, opentelemetry): the one of the
                # same name when there is one.
                dist = _name(top) if _name(top) in dists else dists[0]
                found.setdefault(dist, set()).add(str(path.relative_to(ROOT)))
    return found


def test_no_requirement_is_declared_twice():
    project = _pyproject()["project"]
    lists = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    for name, requirements in lists.items():
        names = [_name(r) for r in requirements]
        assert len(names) == len(set(names)), f"{name} declares one twice: {sorted(names)}"


def test_every_import_is_declared():
    project = _pyproject()["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    dev = core | {_name(r) for r in project["optional-dependencies"]["dev"]}
    missing = {d: f for d, f in _imported_distributions("robustft").items() if d not in core | extras}
    assert not missing, f"imported by robustft/ but not declared: {missing}"
    for folder in ("tests", "benchmarks"):
        allowed = dev | (set(BENCHMARKED_WHEN_INSTALLED) if folder == "benchmarks" else set())
        missing = {d: f for d, f in _imported_distributions(folder).items() if d not in allowed}
        assert not missing, f"imported by {folder}/ but in neither dependencies nor dev: {missing}"


def test_every_core_dependency_is_imported():
    core = {_name(r) for r in _pyproject()["project"]["dependencies"]}
    imported = set(_imported_distributions("robustft"))
    unused = core - imported - NEEDED_WITHOUT_IMPORT
    assert not unused, f"declared but never imported by robustft/: {sorted(unused)}"
