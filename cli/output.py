"""Rendering: Rich tables for people, JSON for scripts (`--json`)."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
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
    into the next command. Piped output fits COLUMNS (100 if unset).
    """
    t = Table(title=escape(title))
    for c in columns:
        t.add_column(escape(c), overflow="fold")
    for r in rows:
        t.add_row(*[escape(str(x)) for x in r])
    if console.is_terminal:
        console.print(t)
    else:
        # A pipe or file has no width: COLUMNS if set, else 100 (logs, tickets, less),
        # but never so narrow that a word (an id, a time) would be broken.
        wanted = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 100
        measured = Measurement.get(console, console.options.update(width=10_000), t)
        width = max(min(wanted, measured.maximum), measured.minimum)
        text = _rendered(t, width)
        words = {w for r in rows for x in r for w in str(x).split()}
        if not all(w in text for w in words):
            text = _rendered(t, measured.maximum)  # too narrow for some word: natural width
        click.echo(text, nl=False)


def _rendered(t: Table, width: int) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(t)
    return buffer.getvalue()


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
