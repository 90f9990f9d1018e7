"""Building aggregate queries from command-line words and showing their answers.

Pure functions over the operator API's messages: the command modules call the
node, these turn words into a query and a ``RegionalAggregate`` into tables, CSV
and JSON for people and scripts.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any

from rcf.protos.v1 import aggregate_pb2
from rcf.trust.errors import ConfigError

MONTH = "month"
_MONTH_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_DURATION_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m)?$")
LOWER_BOUND_MARK = "+"  # 123+: at least 123 (some member suppressed its part)
APPROXIMATE_MARK = "~"  # ~123: noised or rounded parts
OUTCOME_LABELS = {
    "answered": "answered",
    "refused": "REFUSED",
    "unreachable": "UNREACHABLE",
    "timed_out": "TIMED OUT",
    "invalid": "INVALID ANSWER",
}


def parse_deadline(text: str) -> int:
    """'5s', '500ms', '2m' or '5' (seconds) as milliseconds; ConfigError if not above 0."""
    m = _DURATION_RE.match(text.strip())
    if not m:
        raise ConfigError(f"--deadline {text!r} is not a duration such as 5s or 500ms.")
    number, unit = float(m.group(1)), m.group(2) or "s"
    ms = int(number * {"ms": 1, "s": 1000, "m": 60_000}[unit])
    if ms <= 0:
        raise ConfigError("--deadline must be above 0 (e.g. 5s): a query needs time to travel.")
    return ms


def parse_filter(text: str) -> aggregate_pb2.AggregateFilter:
    """dim=value, dim=v1,v2 (a set) or dim=low..high (a range; either side may be empty)."""
    dim, sep, value = text.partition("=")
    dim, value = dim.strip(), value.strip()
    if not sep or not dim or not value:
        raise ConfigError(
            f"--filter {text!r} is not DIMENSION=VALUE (or VALUE1,VALUE2 or LOW..HIGH)."
        )
    f = aggregate_pb2.AggregateFilter(dimension=dim)
    if ".." in value:
        low, _, high = value.partition("..")
        if not low and not high:
            raise ConfigError(f"--filter {text!r}: a range needs at least one bound.")
        f.between.low, f.between.high = low.strip(), high.strip()
    else:
        f.one_of.values.extend(v.strip() for v in value.split(","))
    return f


def build_query(
    *,
    dataset: str,
    by: Sequence[str],
    period_from: str | None,
    period_to: str | None,
    measure: str | None,
    filters: Sequence[str],
    epsilon: float | None = None,
) -> aggregate_pb2.AggregateQuery:
    """The query the words describe; --from/--to filter on ``month`` (of the date field)."""
    query = aggregate_pb2.AggregateQuery(
        dataset=dataset, measure=measure or "", group_by=list(by), epsilon=epsilon or 0.0
    )
    for bound, name in ((period_from, "--from"), (period_to, "--to")):
        if bound is not None and not _MONTH_RE.match(bound):
            raise ConfigError(f"{name} {bound!r} is not a month of the form YYYY-MM.")
    if period_from and period_to and period_from > period_to:
        raise ConfigError(f"--from {period_from} is after --to {period_to}.")
    if period_from or period_to:
        query.filters.add(
            dimension=MONTH,
            between=aggregate_pb2.ValueRange(low=period_from or "", high=period_to or ""),
        )
    for text in filters:
        query.filters.append(parse_filter(text))
    return query


# -- reading the answer ------------------------------------------------------------


def shown(cell: aggregate_pb2.MergedCell) -> str:
    """A merged value as people read it: 1,234 exact, ~1,234 ±12 approximate (± at 95%),
    1,234+ at least."""
    text = f"{cell.value:,}"
    if cell.approximate:
        text = APPROXIMATE_MARK + text
    if cell.lower_bound:
        text += LOWER_BOUND_MARK
    if cell.margin95:
        text += f" ±{cell.margin95:,}"
    return text


def is_total(cell: aggregate_pb2.MergedCell) -> bool:
    return any(part == "" for part in cell.key)


def no_node(member: aggregate_pb2.MemberOutcome) -> bool:
    """A member the directory lists without a node endpoint (IOM, UNHCR): not a failure."""
    return member.outcome == "unreachable" and member.reason == "no_endpoint"


def member_rows(result: aggregate_pb2.RegionalAggregate) -> list[list[str]]:
    """One row per member: outcome, reason, latency, and how its table was released."""
    rows = []
    for m in result.members:
        d = m.disclosure
        if m.outcome == "answered":
            release = [f"k={d.min_cell_size}"]
            if d.perturbation:
                release.append(f"{d.perturbation} perturbation")
            if d.noise and d.noise != "none":
                release.append(f"{d.noise} eps={d.epsilon:g} scale={d.noise_scale:.3g}")
            if d.round_to:
                release.append(f"rounded to {d.round_to}")
            release.append(f"{m.cells_suppressed} suppressed")
            release.extend(d.flags)
            how = ", ".join(release)
            latency = f"{m.latency_ms:.0f} ms"
        else:
            how, latency = "", ""
        label = "no node" if no_node(m) else OUTCOME_LABELS.get(m.outcome, m.outcome)
        rows.append([m.member_id, label, "" if no_node(m) else m.reason, latency, how])
    return rows


def pivot(result: aggregate_pb2.RegionalAggregate) -> tuple[list[str], list[list[str]], int]:
    """(columns, rows, rows left out) of the merged table for a terminal.

    A row is left out only if every value in it is 0 with nothing suppressed: a code no
    member recorded. A row with a suppressed part (0+) is shown: it says something."""
    dims = list(result.dimensions)
    cells = list(result.cells)
    if len(dims) == 2:
        rows_keys = _ordered({c.key[0] for c in cells}, last_total=True)
        cols_keys = _ordered({c.key[1] for c in cells}, last_total=True)
        by_key = {(c.key[0], c.key[1]): c for c in cells}
        header = [f"{dims[0]} \\ {dims[1]}", *[k or "Total" for k in cols_keys]]
        out, zeros = [], 0
        for r in rows_keys:
            row_cells = [by_key.get((r, c)) for c in cols_keys]
            if r and all(x is None or (x.value == 0 and not x.lower_bound) for x in row_cells):
                zeros += 1
                continue
            out.append([r or "Total", *[shown(x) if x is not None else "" for x in row_cells]])
        return header, out, zeros
    header = [*dims, "value"] if dims else ["value"]
    out, zeros = [], 0
    for c in sorted(cells, key=lambda c: (is_total(c), list(c.key))):
        if not is_total(c) and c.value == 0 and not c.lower_bound:
            zeros += 1
            continue
        out.append([*[k or "Total" for k in c.key], shown(c)])
    return header, out, zeros


def _ordered(values: set[str], *, last_total: bool) -> list[str]:
    ordered = sorted(v for v in values if v)
    return [*ordered, ""] if last_total and "" in values else ordered


def caveats(result: aggregate_pb2.RegionalAggregate) -> list[tuple[str, list[str]]]:
    """Each distinct caveat with the members whose tables carry it."""
    by_text: dict[str, list[str]] = {}
    for m in result.members:
        if m.outcome == "answered" and m.disclosure.caveat:
            by_text.setdefault(m.disclosure.caveat, []).append(m.member_id)
    return list(by_text.items())


def to_csv(result: aggregate_pb2.RegionalAggregate) -> str:
    """The merged table as CSV: one row per cell; an empty dimension value is a total."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [*result.dimensions, "value", "is_total", "lower_bound", "approximate", "members",
         "suppressed_by", "margin95"]
    )  # fmt: skip
    for c in result.cells:
        writer.writerow(
            [*c.key, c.value, int(is_total(c)), int(c.lower_bound), int(c.approximate),
             c.members, " ".join(c.suppressed_by), c.margin95]
        )  # fmt: skip
    return buf.getvalue()


def to_json(result: aggregate_pb2.RegionalAggregate) -> dict[str, Any]:
    """The whole answer as plain data for scripts."""
    return {
        "dataset": result.dataset,
        "measure": result.measure or None,
        "dimensions": list(result.dimensions),
        "purpose": result.purpose,
        "dictionary_version": result.dictionary_version,
        "wall_ms": round(result.wall_ms, 1),
        "complete": all(m.outcome == "answered" for m in result.members),
        "members": [
            {
                "member": m.member_id,
                "outcome": m.outcome,
                "reason": m.reason,
                "query_id": m.query_id,
                "latency_ms": round(m.latency_ms, 1),
                **(
                    {
                        "caveat": m.disclosure.caveat,
                        "min_cell_size": m.disclosure.min_cell_size,
                        "noise": m.disclosure.noise,
                        "perturbation": m.disclosure.perturbation or None,
                        "epsilon": m.disclosure.epsilon or None,
                        "delta": m.disclosure.delta or None,
                        "noise_scale": m.disclosure.noise_scale or None,
                        "round_to": m.disclosure.round_to or None,
                        "flags": list(m.disclosure.flags),
                        "cells_suppressed": m.cells_suppressed,
                        "cells_released": m.cells_released,
                    }
                    if m.outcome == "answered"
                    else {}
                ),
            }
            for m in result.members
        ],
        "cells": [
            {
                "key": [k or None for k in c.key],
                "value": c.value,
                "lower_bound": c.lower_bound,
                "approximate": c.approximate,
                "members": c.members,
                "suppressed_by": list(c.suppressed_by),
                "margin95": c.margin95,
            }
            for c in result.cells
        ],
    }
