"""The layout promised by DESIGN.md: one namespace, rooms in node/, demo code apart.

These read the source tree, the way a reviewer would, so that a later change that
imports a bare top-level name or drops a module loose into node/ fails here.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("node", "hub", "trust", "cli", "protos", "auditor", "benchmarks", "devnet")
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
        for p in _sources("node", "hub", "trust", "auditor", "protos")
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


def test_the_distribution_names_one_top_level_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["rcf", "rcf.*"]
    assert project["project"]["scripts"]["rcf"].startswith("rcf.")
