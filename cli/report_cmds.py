"""`rcf report situation`: the RSO's comparative situation report as one HTML file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from rcf.cli.aggregate_view import no_node, parse_deadline
from rcf.cli.errors import guarded
from rcf.cli.options import node_dir_option
from rcf.cli.output import console, table
from rcf.cli.query_cmds import ask
from rcf.cli.situation_report import gather, parse_period, plan, previous, render_html
from rcf.node.data.dictionary import load_dictionary
from rcf.node.ops.assembly import read_only
from rcf.node.ops.config import NodeLayout


@click.group("report")
def report() -> None:
    """Reports assembled from regional queries."""


@report.command("situation")
@node_dir_option
@click.option("--period", required=True, help="A quarter (2025-Q3), a month (2025-07) or a year.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The HTML file to write.")  # fmt: skip
@click.option("--members", default=None, help="Ask these members only (default: every member).")
@click.option("--dataset", "datasets", multiple=True, help="Only this dataset; repeatable.")
@click.option("--deadline", default="10s", show_default=True, help="Deadline of each query.")
@click.option(
    "--purpose",
    default="regional-analysis",
    show_default=True,
    help="Purpose stated to every member (from the data dictionary).",
)
@click.option(
    "--measure",
    default=None,
    help="What to count: default each dataset's count column (persons, victims, ...); "
    "'records' counts records.",
)
@guarded
def situation(
    node_dir: Path,
    period: str,
    out: Path,
    members: str | None,
    datasets: tuple[str, ...],
    deadline: str,
    purpose: str,
    measure: str | None,
) -> None:
    """Regional totals by month, top nationalities and routes, change against the previous
    period, every member's outcome and every caveat: one self-contained HTML file."""
    layout = NodeLayout(node_dir)
    when = parse_period(period)
    deadline_ms = parse_deadline(deadline)
    with read_only(layout) as core:
        member = core.config.member_id
    sections = plan(
        load_dictionary(layout),
        when,
        members=[m.strip().upper() for m in (members or "").split(",") if m.strip()],
        deadline_ms=deadline_ms,
        purpose=purpose,
        datasets=datasets,
        measure=measure,
    )
    gather(sections, lambda request: ask(layout, request))
    text = render_html(sections, when, member=member, generated_at=dt.datetime.now(dt.UTC))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    rows = []
    for s in sections:
        answered = [
            sum(m.outcome == "answered" for m in q.result.members) if q.result else 0
            for q in s.queries
        ]
        # Members without a node (IOM, UNHCR) cannot answer: not counted as asked.
        asked = max(
            (sum(not no_node(m) for m in q.result.members) for q in s.queries if q.result),
            default=0,
        )
        rows.append(
            [s.dataset.name, len(s.queries), f"{min(answered)} to {max(answered)} of {asked}"]
        )
    table(
        f"situation report {when.label} (against {previous(when).label}) → {out}",
        ["dataset", "queries", "members with a node answered"],
        rows,
    )
    console.print(f"wrote {out} ({out.stat().st_size:,} bytes, charts embedded)", markup=False)


def register(root: click.Group) -> None:
    root.add_command(report)
