"""The position estimate is display only: no module on a verdict's path can reach it."""

from __future__ import annotations

import ast
from importlib.util import find_spec
from pathlib import Path

import pytest

import lightfence

ROOT = Path(lightfence.__file__).parent
ESTIMATE_MODULES = {
    "lightfence.core.estimate",
    "lightfence.core.bestline",
    "lightfence.core.landprior",
}


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    if not parts:
        return ROOT / "__init__.py"
    rel = Path(*parts)
    for path in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(name: str) -> set[str]:
    path = _module_file(name)
    if path is None:
        return set()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lightfence")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lightfence"):
            base = str(node.module)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}")}
    return found


def _reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_imports(name) - seen)
    return seen


@pytest.mark.parametrize(
    "module",
    [
        "lightfence.core.verdict",
        "lightfence.core.batch",
        "lightfence.core.policy",
        "lightfence.verifier.verdicts",
        "lightfence.evidence.verdict",
        "lightfence.fleet.check",
        "lightfence.eval.verdicts",
    ],
)
def test_no_verdict_module_reaches_the_estimate(module: str) -> None:
    assert find_spec(module) is not None
    assert not _reachable(module) & ESTIMATE_MODULES, module
