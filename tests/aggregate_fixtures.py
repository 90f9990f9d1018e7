"""Data, policies and operator calls for the aggregate tests over real nodes."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

from rcf.devnet.synthetic import generate_rows
from rcf.node.data.importer import import_file
from rcf.node.data.store import DataStore
from rcf.node.federation.server import NodeServer
from rcf.node.ops.config import NodeLayout
from rcf.node.ops.operator import TOKEN_HEADER
from rcf.protos.v1 import aggregate_pb2, aggregate_pb2_grpc
from rcf.trust.dictionary import default_dictionary
from tests.network import Network

DATASET = "irregular_movements"
CAVEAT = "RESTRICTED - Bali Process members only"


def movement_rows(member: str, counts: Mapping[tuple[str, str, str], int]) -> list[dict[str, Any]]:
    """Realistic movement rows, counts[(nationality, month, route)] of each; persons = 2."""
    total = sum(counts.values())
    base = generate_rows(member, DATASET, seed=7, rows=total)
    out = []
    for (nationality, month, route), n in sorted(counts.items()):
        for i in range(n):
            row = dict(next(base))
            row.update(
                nationality=nationality,
                event_date=f"{month}-{1 + i % 28:02d}",
                route=route,
                persons=2,
            )
            out.append(row)
    return out


def load(layout: NodeLayout, rows: list[dict[str, Any]], tmp: Path) -> None:
    """Import rows into the node's data.db exactly as `rcf data import` does."""
    ds = default_dictionary().datasets[DATASET]
    path = tmp / f"{layout.root.name}-{DATASET}.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(ds.columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in ds.columns])
    store = DataStore(layout.data_db, dictionary=default_dictionary())
    try:
        result = import_file(store, path, dataset=DATASET)
        assert result.committed, result.errors
    finally:
        store.close()


def sql_count(layout: NodeLayout, where: str = "", params: tuple[Any, ...] = ()) -> int:
    with sqlite3.connect(layout.data_db) as conn:
        sql = f"SELECT COUNT(*) FROM {DATASET}" + (f" WHERE {where}" if where else "")  # noqa: S608
        return int(conn.execute(sql, params).fetchone()[0])


# Movement statistics for everyone, under the release step's defaults (cell-key).
MOVEMENTS_RULE = """
[[rule]]
id = "movements"
requesters = ["*"]
query = "Aggregate"
datasets = ["irregular_movements"]
group_by = ["nationality", "month", "route", "sex"]
filters = ["month", "route", "nationality"]
min_cell_size = 5
max_group_by = 2
min_population = 20
"""


def policy(member: str, rule: str = "", *, caveat: str = CAVEAT) -> str:
    """A policy for member: Ping for all, and the given Aggregate rule text (or a default)."""
    rule = (
        rule
        or MOVEMENTS_RULE
        + """# Exact values, so these tests can check suppression against the records; the
# cell-key default has its own tests (test_aggregate_cellkey.py).
perturbation = "none"
"""
    )
    return f"""
[policy]
member = "{member}"
caveat = "{caveat}"

[[rule]]
id = "ping"
requesters = ["*"]
query = "Ping"
{rule}
"""


AU_DATA = {
    ("MMR", "2025-03", "sea"): 30,
    ("AFG", "2025-03", "air"): 12,
    ("IRN", "2025-04", "air"): 3,
    ("LKA", "2025-05", "sea"): 8,
    ("MMR", "2024-11", "sea"): 9,  # outside 2025: must not count
}
TH_DATA = {
    ("MMR", "2025-03", "sea"): 40,
    ("BGD", "2025-06", "sea"): 25,
    ("KHM", "2025-06", "land"): 2,
}


def setup_region(net: Network, tmp: Path) -> Network:
    """AU and TH hold movements data; NZ holds none; every node shares under policy()."""
    load(net.layout("AU"), movement_rows("AU", AU_DATA), tmp)
    load(net.layout("TH"), movement_rows("TH", TH_DATA), tmp)
    for member, node in net.nodes.items():
        apply(node, policy(member))
    return net


def apply(node: NodeServer, text: str) -> None:
    node.policy.apply(text, "test-policy.toml")


def query(
    *,
    by: tuple[str, ...] = ("nationality",),
    month_from: str = "2025-01",
    month_to: str = "2025-12",
    filters: tuple[aggregate_pb2.AggregateFilter, ...] = (),
    dataset: str = DATASET,
    version: str = "",
) -> aggregate_pb2.AggregateQuery:
    q = aggregate_pb2.AggregateQuery(dataset=dataset, group_by=list(by), dictionary_version=version)
    if month_from or month_to:
        q.filters.add(
            dimension="month", between=aggregate_pb2.ValueRange(low=month_from, high=month_to)
        )
    q.filters.extend(filters)
    return q


def ask(
    node: NodeServer,
    q: aggregate_pb2.AggregateQuery,
    *,
    members: tuple[str, ...] = (),
    regional: bool = False,
    deadline_ms: int = 5000,
    purpose: str = "regional-analysis",
) -> aggregate_pb2.RegionalAggregate:
    """The node's operator API, as the CLI calls it (token, loopback)."""
    token = node.layout.operator_token.read_text().strip()
    with grpc.insecure_channel(node.operator_address) as channel:
        stub = aggregate_pb2_grpc.AggregateOperatorStub(channel)
        answer: aggregate_pb2.RegionalAggregate = stub.QueryAggregate(
            aggregate_pb2.AggregateOperatorRequest(
                query=q, members=list(members), regional=regional, deadline_ms=deadline_ms,
                purpose=purpose,
            ),
            metadata=((TOKEN_HEADER, token),),
            timeout=deadline_ms / 1000 + 10,
        )  # fmt: skip
    return answer


def outcomes(result: aggregate_pb2.RegionalAggregate) -> dict[str, tuple[str, str]]:
    return {m.member_id: (m.outcome, m.reason) for m in result.members}


def merged(
    result: aggregate_pb2.RegionalAggregate,
) -> dict[tuple[str, ...], aggregate_pb2.MergedCell]:
    return {tuple(c.key): c for c in result.cells}


def audit_reasons(node: NodeServer, side: str = "responder") -> list[str]:
    return [r.event.reason for r in node.audit.records() if r.event.side == side]
