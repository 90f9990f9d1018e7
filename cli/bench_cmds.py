"""`rcf bench NAME`: benchmarks that print each figure beside its bound."""

from __future__ import annotations

import click


@click.command("bench")
@click.argument("name")
def bench(name: str) -> None:
    """Run a benchmark."""
    raise SystemExit("not yet")


def register(root: click.Group) -> None:
    root.add_command(bench)
