"""The layout promised by DESIGN.md: one namespace, rooms in node/, demo code apart.

These read the source tree, the way a reviewer would, so that a later change that
imports a bare top-level name or drops a module loose into node/ fails here.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("node", "hub", "trust", "cli", "protos", "auditor", "benchmarks", "devnet", "console")
BARE = (*ROOMS, "policies", "deploy")


def _sources(*rooms: str) -> list[Path]:
    return [p for room in rooms for p in (ROOT / room).rglob("*.py") if "_pb2" not in p.name]


def _imports(path: Path) -> list[str]:
    """Every module an import statement in path names (module level or not)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_every_import_of_our_code_goes_through_the_rcf_namespace() -> None:
    bad = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in _sources(*ROOMS, "tests")
        for name in _imports(p)
        if name.split(".")[0] in BARE
    ]
    assert bad == []


def test_rcf_links_each_top_level_folder() -> None:
    for room in (*ROOMS, "policies", "deploy"):
        link = ROOT / "rcf" / room
        assert link.is_symlink(), room
        assert link.resolve() == (ROOT / room).resolve(), room


def test_node_is_rooms_with_no_loose_modules() -> None:
    loose = sorted(p.name for p in (ROOT / "node").glob("*.py") if p.name != "__init__.py")
    assert loose == []
    rooms = sorted(p.name for p in (ROOT / "node").iterdir() if (p / "__init__.py").exists())
    assert rooms == [
        *("aggregate", "alerts", "audit", "data", "federation", "identity", "ops", "policy")
    ]


def test_what_agencies_deploy_never_imports_demo_or_benchmark_code() -> None:
    bad = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in _sources("node", "hub", "trust", "auditor", "protos", "console")
        for name in _imports(p)
        if name.startswith(("rcf.devnet", "rcf.benchmarks"))
    ]
    assert bad == []


def test_the_cli_reaches_benchmarks_only_through_rcf_bench() -> None:
    bad = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in _sources("cli")
        if p.name != "bench_cmds.py"
        for name in _imports(p)
        if name.startswith("rcf.benchmarks")
    ]
    assert bad == []


def _module_graph() -> dict[str, set[str]]:
    """Our modules and, for each, the modules of ours it imports (anywhere in the file,
    TYPE_CHECKING blocks included: a circle there is still a circle to a reader)."""
    modules: dict[str, Path] = {}
    for room in ROOMS:
        for path in _sources(room):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules["rcf." + ".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                base = node.module
                edges |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                          for a in node.names}  # fmt: skip
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def test_no_import_circles() -> None:
    graph = _module_graph()
    circles: list[list[str]] = []
    for start in graph:
        # a path back to start through modules sorted after it: each circle found once
        stack = [(start, [start])]
        while stack:
            here, path = stack.pop()
            for nxt in graph[here]:
                if nxt == start:
                    circles.append(path)
                elif nxt > start and nxt not in path and len(path) < 8:
                    stack.append((nxt, [*path, nxt]))
    assert circles == []


def test_the_distribution_names_one_top_level_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["rcf", "rcf.*"]
    assert project["project"]["scripts"]["rcf"].startswith("rcf.")
