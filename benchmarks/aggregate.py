"""`rcf bench aggregate`: aggregate queries, signed and released, against their bounds.

(a) One node: a two-dimension group-by (nationality x month) over every row of a
    1,000,000-row irregular_movements table, asked by a requester in this process
    through the same PeerClient its node uses, answered by a `rcf node serve`
    process (mutual TLS, signed envelopes, policy, SQL, disclosure control,
    audit on both sides). Bound: the same SQL text run directly on the same SQLite
    file in this process, interleaved with the node's runs in the same loop.
(b) A regional query from this process to 45 member nodes, each a separate
    `rcf node serve` process holding 100,000 rows: wall time from the first
    request to the merged table, the same code the operator API runs.

With --quick: 200,000 rows for (a); 8 nodes of 20,000 rows for (b); the figure names
say the node count (regional8_…) and the notes say the row counts.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from rcf.benchmarks.common import BenchResult, percentile
from rcf.devnet.local_network import LocalNetwork, MemberSpec
from rcf.devnet.synthetic import generate_rows
from rcf.node.aggregate.execute import build_sql
from rcf.node.aggregate.query import AggregateQuery, Between, validate_query
from rcf.node.aggregate.regional import query_members
from rcf.node.aggregate.responder import AGGREGATE
from rcf.node.aggregate.wire import query_to_proto
from rcf.node.data.store import IMPORT_COLUMN, DataStore
from rcf.node.federation.server import NodeServer
from rcf.node.ops.assembly import offline
from rcf.node.ops.config import NodeLayout
from rcf.protos.v1 import aggregate_pb2
from rcf.trust.dictionary import default_dictionary

DATASET = "irregular_movements"
GOAL_RATIO = 1.5
GOAL_REGIONAL_S = 2.0
BATCH = 50_000


def _policy(member: str) -> str:
    return f"""
[policy]
member = "{member}"

[[rule]]
id = "ping"
requesters = ["*"]
query = "Ping"

[[rule]]
id = "bench-aggregate"
requesters = ["*"]
query = "Aggregate"
datasets = ["{DATASET}"]
group_by = ["nationality", "month"]
filters = ["month"]
min_cell_size = 10
"""


def build_store(path: Path, rows: int) -> None:
    """A data.db (the node's own schema and indexes) holding rows synthetic movements."""
    dictionary = default_dictionary()
    ds = dictionary.datasets[DATASET]
    store = DataStore(path, dictionary=dictionary)
    try:
        cols = [*ds.columns, IMPORT_COLUMN]
        sql = f"INSERT INTO {DATASET} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"  # noqa: S608
        source = generate_rows("TH", DATASET, seed=2025, rows=rows)
        done = 0
        while done < rows:
            batch = []
            for row in source:
                batch.append([*(row.get(c) for c in ds.columns), 1])
                if len(batch) == BATCH:
                    break
            with store.transaction() as conn:
                conn.executemany(sql, batch)
            done += len(batch)
        store.after_import(DATASET)
    finally:
        store.close()


def _query(low: str, high: str) -> AggregateQuery:
    return AggregateQuery(
        dataset=DATASET,
        dictionary_version=default_dictionary().version,
        filters=(Between("month", low, high),),
        group_by=("nationality", "month"),
    )


def _setup_node(net: LocalNetwork, member: str, data: Path) -> NodeLayout:
    layout = net.enroll(member)
    shutil.copyfile(data, layout.data_db)
    os.chmod(layout.data_db, 0o600)
    with offline(layout) as core:
        core.policy.apply(_policy(member), "bench.toml")
    return layout


def one_node(result: BenchResult, *, rows: int, runs: int, tmp: Path) -> None:
    data = tmp / "one-node.db"
    build_store(data, rows)
    net = LocalNetwork(tmp / "one")
    net.init_hub([MemberSpec("AU", "Australia"), MemberSpec("TH", "Thailand")])
    requester: NodeServer | None = None
    try:
        net.start_hub()
        au = net.enroll("AU")
        th = _setup_node(net, "TH", data)
        net.start_node("TH")
        requester = NodeServer(au)
        requester.refresh_directory()
        query = _query("2022-01", "2025-12")  # every row of the synthetic data
        vq = validate_query(query, default_dictionary())
        sql, params = build_sql(vq)
        msg = query_to_proto(query)

        def fill(request: aggregate_pb2.AggregateRequest) -> None:
            request.query.CopyFrom(msg)

        raw = sqlite3.connect(f"file:{th.data_db}?mode=ro", uri=True)
        raw.execute("PRAGMA cache_size=-65536")
        node_ms: list[float] = []
        raw_ms: list[float] = []
        cells = 0
        for i in range(runs + 2):  # two warm-up rounds: TLS handshake, page cache
            t0 = time.perf_counter()
            answer = requester.peers.call(
                AGGREGATE, responder="TH", purpose="regional-analysis", fill=fill, timeout_s=60
            )
            t1 = time.perf_counter()
            raw_rows = raw.execute(sql, params).fetchall()
            t2 = time.perf_counter()
            if i >= 2:
                node_ms.append((t1 - t0) * 1000)
                raw_ms.append((t2 - t1) * 1000)
            cells = len(answer.response.table.cells)
        raw.close()
        assert raw_rows, "the benchmark query selected nothing"
    finally:
        if requester is not None:
            requester.stop(grace=0)
        net.stop_all()
    node_p50, raw_p50 = percentile(node_ms, 0.5), percentile(raw_ms, 0.5)
    where = f"{rows:,} rows, {cells} cells released, {runs} runs"
    result.add("node_p50_ms", node_p50, f"signed + released over mutual TLS; {where}")
    result.add("node_p99_ms", percentile(node_ms, 0.99), "same runs")
    result.add("raw_sql_p50_ms", raw_p50, "bound: the same SQL on the same SQLite file")
    result.add("node_overhead_ratio", node_p50 / raw_p50, f"goal < {GOAL_RATIO}")


def regional(result: BenchResult, *, nodes: int, rows: int, runs: int, tmp: Path) -> None:
    data = tmp / "regional.db"
    build_store(data, rows)
    members = [f"M{i:02d}" for i in range(1, nodes + 1)]
    net = LocalNetwork(tmp / "regional")
    net.init_hub([MemberSpec("RSO", "Regional Support Office", roles=("coordinator",)),
                  *(MemberSpec(m, f"Member {m}") for m in members)])  # fmt: skip
    requester: NodeServer | None = None
    try:
        net.start_hub()
        rso = net.enroll("RSO")  # first, so every member's directory knows its keys
        for m in members:
            _setup_node(net, m, data)
        started = time.perf_counter()
        for m in members:
            net.start_node(m)
        start_s = time.perf_counter() - started
        requester = NodeServer(rso)
        requester.refresh_directory()
        query = _query("2025-01", "2025-12")
        vq = validate_query(query, default_dictionary())
        msg = query_to_proto(query)
        wall: list[float] = []
        answered = 0
        for i in range(runs + 1):  # one warm-up: 45 TLS handshakes
            t0 = time.perf_counter()
            out = query_members(requester.peers, vq, msg, members=members,
                                purpose="regional-analysis", deadline_s=30)  # fmt: skip
            if i >= 1:
                wall.append(time.perf_counter() - t0)
            answered = sum(c.outcome == "answered" for c in out.calls)
    finally:
        if requester is not None:
            requester.stop(grace=0)
        net.stop_all()
    name = f"regional{nodes}"
    note = f"{nodes} node processes x {rows:,} rows, {answered}/{nodes} answered, {runs} runs"
    result.add(f"{name}_p50_s", percentile(wall, 0.5), f"goal < {GOAL_REGIONAL_S} s; {note}")
    result.add(f"{name}_p99_s", percentile(wall, 0.99), f"nodes started in {start_s:.0f} s")


def run(*, quick: bool = False) -> BenchResult:
    result = BenchResult("aggregate")
    one_rows, one_runs = (200_000, 15) if quick else (1_000_000, 30)
    nodes, rows, runs = (8, 20_000, 10) if quick else (45, 100_000, 20)
    with tempfile.TemporaryDirectory(prefix="rcf-bench-aggregate-") as tmp:
        one_node(result, rows=one_rows, runs=one_runs, tmp=Path(tmp))
        regional(result, nodes=nodes, rows=rows, runs=runs, tmp=Path(tmp))
    return result
