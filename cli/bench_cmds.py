"""`rcf bench NAME`: benchmarks that print each figure beside its bound.

A benchmark is a module in benchmarks/ with ``run(*, quick: bool) -> BenchResult``.
"""

from __future__ import annotations

import importlib

import click

from rcf.benchmarks.common import BenchResult
from rcf.cli.errors import guarded
from rcf.cli.output import emit_json, table

BENCHMARKS = {
    "ping": "rcf.benchmarks.ping",
    "import": "rcf.benchmarks.bench_import",
    "merkle": "rcf.benchmarks.merkle_log",
    "identity-index": "rcf.benchmarks.identity_index",
    "aggregate": "rcf.benchmarks.aggregate",
    "audit": "rcf.benchmarks.audit",
    "identity": "rcf.benchmarks.identity",
    "alerts": "rcf.benchmarks.alerts",
}


@click.command("bench")
@click.argument("name", type=click.Choice(sorted(BENCHMARKS)), metavar="NAME")
@click.option("--json", "as_json", is_flag=True, help='Print {"benchmark": …, "figures": {…}}.')
@click.option("--quick", is_flag=True, help="Fewer iterations: a smoke run, not a measurement.")
@guarded
def bench(name: str, as_json: bool, quick: bool) -> None:
    """Run benchmark NAME and print each figure beside its bound, measured in the same run."""
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
