"""Rendering: Rich tables for people, JSON for scripts (`--json`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

console = Console()
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Rich table whose text is shown literally: names, reasons and file contents
    such as "[allow]" are data, never markup.

    Cells wrap at spaces and fold long words onto the next line; they are never
    cut with an ellipsis, because ids and times in them are what people copy
    into the next command. Piped output is as wide as it needs to be.
    """
    t = Table(title=escape(title))
    for c in columns:
        t.add_column(escape(c), overflow="fold")
    for r in rows:
        t.add_row(*[escape(str(x)) for x in r])
    if console.is_terminal:
        console.print(t)
    else:
        # A pipe or file has no width; measure the table at its natural width.
        natural = Measurement.get(console, console.options.update(width=10_000), t).maximum
        Console(width=max(console.width, natural)).print(t)


def utc_time(ms: int) -> str:
    """Milliseconds since the epoch as a UTC timestamp for people."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def plural(count: int, noun: str) -> str:
    """'1 error', '2 errors', '0 errors'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


POLICY_REFUSALS = ("not_permitted", "limit_reached")


def failure_words(error: str, reason: str) -> str:
    """How a member's failure reads: a policy refusal is the member's choice, not a fault."""
    code = reason.removeprefix("refused:")
    if code in POLICY_REFUSALS:
        return f"refused by policy ({code})"
    if reason.startswith("refused"):
        return f"refused ({code})" if code != reason else "refused"
    if reason in ("unreachable", "timeout"):
        return error
    return f"FAILED: {error}"
