"""Aggregate values to and from their protobuf messages (rcf.v1 aggregate.proto).

Protobuf stays at the edges: the query type, the operator API and the CLI convert
here and work with the typed values of ``query``, ``disclosure`` and ``merge``.
A key travels as one string per dimension; the empty string is a total over that
dimension, and int dimensions are written in decimal (the dictionary says which
dimensions are ints, so the reader can turn them back).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rcf.node.aggregate.disclosure import (
    EXACT,
    NOISED,
    PERTURB_NONE,
    PERTURBED,
    ROUNDED,
    SUPPRESSED_PRIMARY,
    SUPPRESSED_SECONDARY,
    ReleasedCell,
    ReleasedTable,
    TotalKey,
)
from rcf.node.aggregate.merge import MemberOutcome, MergedCell, MergedTable
from rcf.node.aggregate.query import (
    AggregateQuery,
    Between,
    Equals,
    Filter,
    OneOf,
    QueryError,
    Value,
)
from rcf.protos.v1 import aggregate_pb2

STATUS_TO_WIRE = {
    EXACT: aggregate_pb2.CELL_STATUS_EXACT,
    SUPPRESSED_PRIMARY: aggregate_pb2.CELL_STATUS_SUPPRESSED_PRIMARY,
    SUPPRESSED_SECONDARY: aggregate_pb2.CELL_STATUS_SUPPRESSED_SECONDARY,
    ROUNDED: aggregate_pb2.CELL_STATUS_ROUNDED,
    NOISED: aggregate_pb2.CELL_STATUS_NOISED,
    PERTURBED: aggregate_pb2.CELL_STATUS_PERTURBED,
}
STATUS_FROM_WIRE = {v: k for k, v in STATUS_TO_WIRE.items()}
MAX_EPSILON = 100.0  # a requested epsilon above this is no privacy at all


# -- the query -------------------------------------------------------------------------


def query_to_proto(
    query: AggregateQuery, *, epsilon: float | None = None
) -> aggregate_pb2.AggregateQuery:
    """The wire form of query; epsilon None asks for the responder's rule's epsilon."""
    msg = aggregate_pb2.AggregateQuery(
        dataset=query.dataset,
        dictionary_version=query.dictionary_version,
        measure=query.measure or "",
        group_by=list(query.group_by),
        epsilon=epsilon or 0.0,
    )
    for f in query.filters:
        wire = msg.filters.add(dimension=f.dimension)
        if isinstance(f, Equals):
            wire.one_of.values.append(f.value)
        elif isinstance(f, OneOf):
            wire.one_of.values.extend(f.values)
        else:
            wire.between.low = f.low or ""
            wire.between.high = f.high or ""
    return msg


def query_from_proto(msg: aggregate_pb2.AggregateQuery) -> tuple[AggregateQuery, float | None]:
    """The typed query and the epsilon asked for (None: the rule's); QueryError if malformed.

    Only the form is checked here; ``validate_query`` checks it against the dictionary.
    """
    filters: list[Filter] = []
    for f in msg.filters:
        which = f.WhichOneof("condition")
        if which == "one_of":
            values = tuple(f.one_of.values)
            filters.append(
                Equals(f.dimension, values[0]) if len(values) == 1 else OneOf(f.dimension, values)
            )
        elif which == "between":
            filters.append(Between(f.dimension, f.between.low or None, f.between.high or None))
        else:
            raise QueryError(
                "A filter has neither a set of values nor a range.", reason="bad_filter"
            )
    eps = msg.epsilon
    if not math.isfinite(eps) or eps < 0 or eps > MAX_EPSILON:
        raise QueryError(f"The requested epsilon must lie from 0 to {MAX_EPSILON:g}.")
    query = AggregateQuery(
        dataset=msg.dataset,
        dictionary_version=msg.dictionary_version,
        measure=msg.measure or None,
        filters=tuple(filters),
        group_by=tuple(msg.group_by),
    )
    return query, (eps or None)


# -- keys --------------------------------------------------------------------------------


def key_to_wire(key: TotalKey) -> list[str]:
    return ["" if v is None else str(v) for v in key]


def key_from_wire(parts: Sequence[str], int_dims: Sequence[bool]) -> TotalKey:
    """A key read back; int_dims says, per dimension, whether its values are ints."""
    if len(parts) != len(int_dims):
        raise QueryError("A cell key does not have one value per dimension.", reason="bad_answer")
    out: list[Value | None] = []
    for part, is_int in zip(parts, int_dims, strict=True):
        if part == "":
            out.append(None)
        elif is_int:
            if not part.isdigit():
                raise QueryError("A cell key holds a malformed number.", reason="bad_answer")
            out.append(int(part))
        else:
            out.append(part)
    return tuple(out)


# -- released tables -------------------------------------------------------------------


def table_to_proto(table: ReleasedTable, *, scale: float | None, delta: float | None,
                   dictionary_version: str) -> aggregate_pb2.AggregateTable:  # fmt: skip
    """The wire form of a released table (scale: the noise scale, if noised)."""
    msg = aggregate_pb2.AggregateTable(
        dataset=table.dataset,
        measure=table.measure or "",
        dimensions=list(table.dimensions),
        caveat=table.caveat,
        min_cell_size=table.min_cell_size,
        noise=table.noise,
        epsilon=table.epsilon or 0.0,
        delta=delta or 0.0,
        noise_scale=scale or 0.0,
        round_to=table.round_to or 0,
        flags=list(table.flags),
        dictionary_version=dictionary_version,
        perturbation="" if table.perturbation == PERTURB_NONE else table.perturbation,
    )
    for c in table.cells:
        msg.cells.add(
            key=key_to_wire(c.key),
            status=STATUS_TO_WIRE[c.status],
            value=c.value if c.value is not None else 0,
            variance=c.variance,
        )
    return msg


def table_from_proto(msg: aggregate_pb2.AggregateTable, int_dims: Sequence[bool]) -> ReleasedTable:
    """A released table read back from the wire; QueryError(bad_answer) if malformed."""
    cells = []
    for c in msg.cells:
        status = STATUS_FROM_WIRE.get(c.status)
        if status is None:
            raise QueryError("A cell has an unknown status.", reason="bad_answer")
        suppressed = status in (SUPPRESSED_PRIMARY, SUPPRESSED_SECONDARY)
        if not math.isfinite(c.variance) or c.variance < 0:
            raise QueryError("A cell states an impossible variance.", reason="bad_answer")
        cells.append(
            ReleasedCell(
                key=key_from_wire(c.key, int_dims),
                value=None if suppressed else int(c.value),
                status=status,
                mechanism=msg.noise if status == NOISED else "",
                scale=msg.noise_scale if status == NOISED else None,
                rounded_to=msg.round_to or None,
                variance=0.0 if suppressed else c.variance,
            )
        )
    return ReleasedTable(
        dataset=msg.dataset,
        measure=msg.measure or None,
        dimensions=tuple(msg.dimensions),
        cells=tuple(cells),
        caveat=msg.caveat,
        min_cell_size=msg.min_cell_size,
        noise=msg.noise or "none",
        epsilon=msg.epsilon or None,
        round_to=msg.round_to or None,
        flags=tuple(msg.flags),
        perturbation=msg.perturbation or PERTURB_NONE,
    )


def disclosure_summary(msg: aggregate_pb2.AggregateTable) -> aggregate_pb2.AggregateTable:
    """The table's release description without its cells."""
    out = aggregate_pb2.AggregateTable()
    out.CopyFrom(msg)
    del out.cells[:]
    return out


# -- the regional merge ---------------------------------------------------------------


def merged_to_proto(merged: MergedTable) -> list[aggregate_pb2.MergedCell]:
    return [
        aggregate_pb2.MergedCell(
            key=key_to_wire(c.key),
            value=c.value,
            lower_bound=c.lower_bound,
            approximate=c.approximate,
            members=c.members,
            suppressed_by=list(c.suppressed_by),
            margin95=c.margin95,
        )
        for c in merged.cells
    ]


def merged_from_proto(msg: aggregate_pb2.RegionalAggregate) -> MergedTable:
    """The merged table of an operator answer; keys stay strings (for display)."""
    cells = tuple(
        MergedCell(
            key=tuple(None if p == "" else p for p in c.key),
            value=c.value,
            lower_bound=c.lower_bound,
            approximate=c.approximate,
            members=c.members,
            suppressed_by=tuple(c.suppressed_by),
            margin95=c.margin95,
        )
        for c in msg.cells
    )
    return MergedTable(
        dataset=msg.dataset,
        measure=msg.measure or None,
        dimensions=tuple(msg.dimensions),
        cells=cells,
        outcomes=tuple(MemberOutcome(m.member_id, m.outcome, m.reason) for m in msg.members),
        caveats=tuple(
            (m.member_id, m.disclosure.caveat) for m in msg.members if m.outcome == "answered"
        ),
    )
