"""The statistics page's query from its form, and the chart's numbers from the merged
table (the same cells `rcf query aggregate --chart` draws). Plain functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rcf.cli.aggregate_view import build_query, is_total
from rcf.protos.v1 import aggregate_pb2
from rcf.trust.errors import ConfigError

DEFAULT_DEADLINE_MS = 10_000


def request_from(form: Mapping[str, str]) -> aggregate_pb2.AggregateOperatorRequest:
    """The regional (or chosen members') aggregate query an analyst built."""
    dataset = form.get("dataset", "").strip()
    if not dataset:
        raise ConfigError("Choose a dataset.")
    by = [d.strip() for d in form.get("by", "").split(",") if d.strip()]
    if len(by) > 3:
        raise ConfigError("Group by at most three dimensions.")
    filters = [f.strip() for f in form.get("filters", "").splitlines() if f.strip()]
    query = build_query(
        dataset=dataset, by=by, period_from=form.get("from", "").strip() or None,
        period_to=form.get("to", "").strip() or None, measure=None, filters=filters,
    )  # fmt: skip
    regional = form.get("scope", "regional") == "regional"
    members = [m.strip().upper() for m in form.get("members", "").split(",") if m.strip()]
    if not regional and not members:
        raise ConfigError("Name the members to ask (e.g. TH, ID) or ask the whole region.")
    return aggregate_pb2.AggregateOperatorRequest(
        query=query, members=[] if regional else members, regional=regional,
        deadline_ms=DEFAULT_DEADLINE_MS, purpose=form.get("purpose", "").strip(),
    )  # fmt: skip


def chart_data(result: aggregate_pb2.RegionalAggregate) -> dict[str, Any]:
    """Labels and series for a bar chart of the interior cells (y from zero): one series,
    or one per value of the second dimension."""
    # A cell suppressed everywhere has no number to draw: a bar at zero would read as "none".
    cells = [
        c for c in result.cells
        if not is_total(c) and not (c.suppressed_by and c.value == 0)
    ]  # fmt: skip
    dims = list(result.dimensions)
    if not dims or not cells:
        return {"labels": [], "series": []}
    labels = sorted({c.key[0] for c in cells})
    if len(dims) == 1:
        values = {c.key[0]: c.value for c in cells}
        return {"labels": labels, "series": [
            {"name": result.measure or "count", "values": [values.get(x, 0) for x in labels]}
        ]}  # fmt: skip
    groups = sorted({c.key[1] for c in cells})
    by_key = {(c.key[0], c.key[1]): c.value for c in cells}
    return {
        "labels": labels,
        "series": [{"name": g, "values": [by_key.get((x, g), 0) for x in labels]} for g in groups],
    }
