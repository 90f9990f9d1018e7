"""`rcf bench NAME`: benchmarks that print each figure beside its bound.

A benchmark is a module in benchmarks/ with ``run(*, quick: bool) -> BenchResult``.
"""

from __future__ import annotations

import importlib

import click

from benchmarks.common import BenchResult
from cli.errors import guarded
from cli.output import emit_json, table
from trust.errors import ConfigError

BENCHMARKS = {
    "ping": "benchmarks.ping",
    "import": "benchmarks.bench_import",
    "merkle": "benchmarks.merkle_log",
    "identity-index": "benchmarks.identity_index",
    "alerts": "benchmarks.alerts",
}


@click.command("bench")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help='Print {"benchmark": …, "figures": {…}}.')
@click.option("--quick", is_flag=True, help="Fewer iterations: a smoke run, not a measurement.")
@guarded
def bench(name: str, as_json: bool, quick: bool) -> None:
    """Run benchmark NAME (one of: ping, import, merkle) and print its figures."""
    if name not in BENCHMARKS:
        raise ConfigError(f"No benchmark '{name}'; choose from {', '.join(sorted(BENCHMARKS))}.")
    module = importlib.import_module(BENCHMARKS[name])
    result: BenchResult = module.run(quick=quick)
    if as_json:
        emit_json({"benchmark": result.name, "figures": result.figures})
        return
    table(
        f"rcf bench {result.name}" + (" (quick)" if quick else ""),
        ["figure", "value", "bound / goal"],
        [[k, f"{v:,.3f}", result.notes.get(k, "")] for k, v in result.figures.items()],
    )


def register(root: click.Group) -> None:
    root.add_command(bench)
