"""`rcf demo`: a hub and member nodes on this machine, every capability end to end."""

from __future__ import annotations

import click


@click.command("demo")
def demo() -> None:
    """Run the demo network."""
    raise SystemExit("not yet")


def register(root: click.Group) -> None:
    root.add_command(demo)
