"""Layout and packaging: no import cycle between lightfence's packages, the core runs without
any extra, a command whose extra is missing says which one in one line, and the extras table
matches pyproject.toml."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

import lightfence
from lightfence.extras import EXTRA_MODULES, install_hint

SRC = Path(lightfence.__file__).parent
PYPROJECT = SRC.parent.parent / "pyproject.toml"

CORE_PACKAGES = (
    "agent",
    "cli",
    "core",
    "crypto",
    "evidence",
    "gate",
    "geo",
    "identity",
    "landmark",
    "model",
    "protocol",
    "sim",
    "units",
    "rttdata",
    "extras",
)
"""What a bare GPU host or landmark imports: physics, protocol, landmark, agent, gate, verify."""
EXTRA_COMMAND_MODULES = ("lightfence.cli.coverage_cmd",)
"""CLI modules that import their extra at the top (their commands then fail in one line)."""


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "lightfence" and len(parts) > 1 else None


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_graph() -> dict[str, set[str]]:
    """Package -> packages it imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        name = _module_name(path)
        here = _package_of(name)
        if here is None:
            continue
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")
                    base = base if is_pkg else base[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    targets = [".".join([*base, node.module] if node.module else base)]
                elif node.module:
                    targets = [node.module]
                # `from lightfence import units` imports the package `units`.
                if targets == ["lightfence"]:
                    targets = [f"lightfence.{a.name}" for a in node.names]
            for target in targets:
                there = _package_of(target)
                if there is not None and there != here:
                    graph[here].add(there)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph()
    assert graph["cli"], "the graph should see the CLI's imports"
    cycles = _cycles(graph)
    detail = [
        f"{' <-> '.join(c)}: "
        + "; ".join(f"{a}->{b}" for a in c for b in sorted(graph[a]) if b in c)
        for c in cycles
    ]
    assert not cycles, detail


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_core_does_not_depend_on_adapters() -> None:
    graph = package_graph()
    for pkg in ("core", "geo", "protocol", "model", "crypto", "units"):
        assert "cli" not in graph[pkg] and "verifier" not in graph[pkg], pkg


BLOCKER = """
import sys
BLOCKED = set({blocked!r})
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
"""


def _run_without(blocked: set[str], body: str) -> subprocess.CompletedProcess[str]:
    code = BLOCKER.format(blocked=sorted(blocked)) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


ALL_EXTRA_MODULES = {m for modules in EXTRA_MODULES.values() for m in modules}


def test_core_packages_import_without_any_extra() -> None:
    """As on a bare GPU host: every module of the core packages imports with no extra."""
    out = _run_without(
        ALL_EXTRA_MODULES,
        f"""
        import importlib, pkgutil
        import lightfence
        failed = []
        for pkg in {CORE_PACKAGES!r}:
            mod = importlib.import_module("lightfence." + pkg)
            names = [mod.__name__]
            if hasattr(mod, "__path__"):
                names += [m.name for m in pkgutil.walk_packages(mod.__path__, mod.__name__ + ".")]
            for name in names:
                if name in {EXTRA_COMMAND_MODULES!r}:
                    continue
                try:
                    importlib.import_module(name)
                except ImportError as exc:
                    failed.append(f"{{name}}: {{exc}}")
        print("\\n".join(failed))
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    ("argv", "blocked", "extra"),
    [
        (["serve", "--db", "sqlite:///:memory:"], {"fastapi"}, "verifier"),
        (["status", "--db", "sqlite:///:memory:"], {"sqlalchemy"}, "verifier"),
        (["demo", "--once"], {"uvicorn"}, "demo"),
        (["batch", "--input", "x", "--output", "y"], {"pandas"}, "fleet"),
        (["coverage", "--help"], {"h3"}, "coverage"),
    ],
)
def test_missing_extra_is_one_line(argv: list[str], blocked: set[str], extra: str) -> None:
    out = _run_without(
        blocked,
        f"""
        sys.argv = ["lightfence", *{argv!r}]
        from lightfence.cli import main
        main()
        """,
    )
    expected = f"lightfence {argv[0]} {install_hint(extra)}"
    assert (out.returncode, out.stderr.strip()) == (2, expected)


def test_extras_table_matches_pyproject() -> None:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert set(EXTRA_MODULES) <= set(extras)
    for name in ("demo", "all", "dev"):
        assert name in extras
    # Every extra but the aggregates is in `all`, so `make venv` tests them all.
    aggregate = extras["all"][0]
    for name in EXTRA_MODULES:
        assert name in aggregate, name


def test_version_is_written_once() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
