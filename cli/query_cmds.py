"""`rcf query aggregate`: one aggregate query to chosen members or the whole region.

The command asks its own running node (operator API), which signs one request per
member, sends them in parallel under one deadline, verifies, audits and merges.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rcf.cli.aggregate_view import (
    build_query,
    caveats,
    member_rows,
    no_node,
    parse_deadline,
    pivot,
    to_csv,
    to_json,
)
from rcf.cli.charts import has_figures, write_chart
from rcf.cli.errors import EXIT_UNAVAILABLE, guarded
from rcf.cli.operator_client import aggregate_stub
from rcf.cli.options import node_dir_option
from rcf.cli.output import console, emit_json, table
from rcf.node.ops.config import NodeLayout
from rcf.protos.v1 import aggregate_pb2
from rcf.trust.errors import ConfigError

# The node's own deadline plus this much for the local hop and the merge.
LOCAL_SLACK_S = 10.0


def ask(
    layout: NodeLayout, request: aggregate_pb2.AggregateOperatorRequest
) -> aggregate_pb2.RegionalAggregate:
    """Send request to the node of layout; the merged answer with every member's outcome."""
    with aggregate_stub(layout) as (stub, md):
        answer: aggregate_pb2.RegionalAggregate = stub.QueryAggregate(
            request, metadata=md, timeout=request.deadline_ms / 1000 + LOCAL_SLACK_S
        )
    return answer


def _members(text: str | None) -> list[str]:
    return [m.strip().upper() for m in (text or "").split(",") if m.strip()]


@click.group("query")
def query() -> None:
    """Ask other members' nodes (through this node)."""


@query.command("aggregate")
@node_dir_option
@click.option("--dataset", required=True, help="An aggregate dataset, e.g. irregular_movements.")
@click.option("--by", "by", default="", help="Group-by dimensions, comma-separated (at most 3).")
@click.option("--from", "period_from", default=None, help="First month, YYYY-MM (inclusive).")
@click.option("--to", "period_to", default=None, help="Last month, YYYY-MM (inclusive).")
@click.option("--measure", default=None, help="Sum this measure instead of counting records.")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    help="DIMENSION=VALUE, DIMENSION=V1,V2 or DIMENSION=LOW..HIGH; repeatable.",
)
@click.option("--purpose", default="regional-analysis", show_default=True,
              help="Purpose stated to every member (from the data dictionary).")  # fmt: skip
@click.option("--regional", is_flag=True, help="Ask every active member of the network.")
@click.option("--members", default=None, help="Ask these members only, e.g. AU,TH.")
@click.option("--deadline", default="5s", show_default=True,
              help="One deadline for all members, e.g. 5s or 800ms.")  # fmt: skip
@click.option("--epsilon", type=float, default=None,
              help="Ask for less privacy loss than the members' rules grant.")  # fmt: skip
@click.option("--csv", "as_csv", is_flag=True, help="Print the merged table as CSV.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw the merged table into this PNG file.")  # fmt: skip
@guarded
def query_aggregate(
    node_dir: Path,
    dataset: str,
    by: str,
    period_from: str | None,
    period_to: str | None,
    measure: str | None,
    filters: tuple[str, ...],
    purpose: str,
    regional: bool,
    members: str | None,
    deadline: str,
    epsilon: float | None,
    as_csv: bool,
    as_json: bool,
    chart: Path | None,
) -> None:
    """Aggregate statistics from members' nodes, disclosure-controlled by each, merged.

    Every member's outcome is shown: answered, refused (with its reason code),
    unreachable or timed out. A merged value marked + is a lower bound (a member
    suppressed its part); ~ marks noised or rounded parts.
    """
    if regional == bool(members):
        raise ConfigError("Give --regional or --members AU,TH (one of them).")
    if as_csv and as_json:
        raise ConfigError("Give --csv or --json, not both.")
    request = aggregate_pb2.AggregateOperatorRequest(
        query=build_query(
            dataset=dataset,
            by=[b.strip() for b in by.split(",") if b.strip()],
            period_from=period_from,
            period_to=period_to,
            measure=measure,
            filters=filters,
            epsilon=epsilon,
        ),
        members=_members(members),
        regional=regional,
        deadline_ms=parse_deadline(deadline),
        purpose=purpose,
    )
    result = ask(NodeLayout(node_dir), request)
    if chart is not None and has_figures(result):
        write_chart(result, chart, title=_title(result))
    elif chart is not None:
        # An empty axis reads as "zero"; no answer is not zero.
        click.echo(f"No chart written to {chart}: no member released a figure.", err=True)
    answered = sum(m.outcome == "answered" for m in result.members)
    if as_json:
        emit_json(to_json(result))
    elif as_csv:
        click.echo(to_csv(result), nl=False)
    else:
        _print(result)
    if answered == 0:
        sys.exit(EXIT_UNAVAILABLE if _all_unavailable(result) else 1)


def _title(result: aggregate_pb2.RegionalAggregate) -> str:
    by = f" by {', '.join(result.dimensions)}" if result.dimensions else ""
    what = f"sum of {result.measure}" if result.measure else "records"
    return f"{result.dataset}: {what}{by}"


def _all_unavailable(result: aggregate_pb2.RegionalAggregate) -> bool:
    return all(m.outcome in ("unreachable", "timed_out") for m in result.members)


def _print(result: aggregate_pb2.RegionalAggregate) -> None:
    answered = sum(m.outcome == "answered" for m in result.members)
    # Members without a node (IOM, UNHCR) cannot answer: shown as "no node", not counted.
    with_node = sum(not no_node(m) for m in result.members)
    table(
        f"{answered} of {with_node} members with a node answered in {result.wall_ms / 1000:.2f} s",
        ["member", "outcome", "reason", "latency", "released as"],
        member_rows(result),
    )
    notes = []
    if answered == 0:
        # No figures at all is not a table of zeros.
        refused = all(m.outcome == "refused" for m in result.members if not no_node(m))
        console.print(
            "Refused by all members: no figures." if refused else "No member answered: no figures.",
            markup=False,
            highlight=False,
        )
        return
    header, rows, zeros = pivot(result)
    table(_title(result) + " (merged)", header, rows)
    if zeros:
        notes.append(f"{zeros} codes that no member recorded are not shown.")
    if any(c.lower_bound for c in result.cells):
        notes.append("N+ : at least N, a member suppressed its part (small numbers stay home).")
    if any(c.approximate for c in result.cells):
        notes.append(
            "~N ±M : members perturbed, noised or rounded their parts; the true value lies"
            " within ±M of N with 95% probability."
        )
    if answered < with_node:
        notes.append("Partial: only the members marked answered are in the totals.")
    for text, who in caveats(result):
        notes.append(f"Caveat ({', '.join(who)}): {text}")
    for note in notes:
        console.print(note, markup=False, highlight=False)


def register(root: click.Group) -> None:
    root.add_command(query)
