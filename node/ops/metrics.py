"""Prometheus metrics of a running node, served on a loopback-only HTTP port.

What an operator watches: requests answered and refused by query type, requester
and decision, how long they took, how well audit writes batch, how fresh the
directory is, which policy version decides, how many rows were imported. Labels
are member ids, query types, decisions and reason codes only: nothing a
requester sent and nothing that could identify a person.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from rcf.node.audit.backlog import Backlog
from rcf.trust.clock import now_ms
from rcf.trust.errors import ConfigError
from rcf.trust.join_token import split_address, unreachable_kind


@dataclass(frozen=True)
class NodeGauges:
    """Read at scrape time from the node's live objects."""

    member_id: Callable[[], str]
    directory_serial: Callable[[], int]
    directory_fetched_at_ms: Callable[[], int]
    directory_expires_at_ms: Callable[[], int]
    policy_version: Callable[[], int]
    audit_batches: Callable[[], tuple[int, int]]  # (commits, records committed)
    data_db: Path
    audit_backlog: Callable[[], Backlog] | None = None


class _Collector(Collector):
    def __init__(self, gauges: NodeGauges) -> None:
        self._g = gauges

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        g = self._g
        now = now_ms()
        yield GaugeMetricFamily(
            "rcf_directory_serial", "Serial of the signed directory this node holds.",
            value=g.directory_serial(),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "rcf_directory_age_seconds", "Seconds since the directory was last fetched.",
            value=max(0, now - g.directory_fetched_at_ms()) / 1000,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "rcf_directory_expires_in_seconds", "Seconds until the held directory expires.",
            value=(g.directory_expires_at_ms() - now) / 1000,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "rcf_policy_version", "The stored sharing-policy version that decides requests.",
            value=g.policy_version(),
        )  # fmt: skip
        commits, records = g.audit_batches()
        yield CounterMetricFamily(
            "rcf_audit_commits", "Audit-log batches committed (one head signature each).",
            value=commits,
        )  # fmt: skip
        yield CounterMetricFamily(
            "rcf_audit_records_committed", "Audit records committed in those batches.",
            value=records,
        )  # fmt: skip
        if g.audit_backlog is not None:
            backlog = g.audit_backlog()
            yield GaugeMetricFamily(
                "rcf_audit_unshipped_records",
                "Audit records written here that the hub has not accepted yet.",
                value=backlog.unshipped,
            )
            yield GaugeMetricFamily(
                "rcf_audit_oldest_unshipped_age_seconds",
                "Seconds the oldest audit record not accepted by the hub has waited (0: none).",
                value=backlog.age_s(now),
            )
        rows = CounterMetricFamily(
            "rcf_import_rows", "Rows imported into the data store, by dataset and outcome.",
            labels=["dataset", "outcome"],
        )  # fmt: skip
        for dataset, inserted, updated, rejected in _import_totals(g.data_db):
            rows.add_metric([dataset, "inserted"], inserted)
            rows.add_metric([dataset, "updated"], updated)
            rows.add_metric([dataset, "rejected"], rejected)
        yield rows


def _import_totals(data_db: Path) -> list[tuple[str, int, int, int]]:
    if not data_db.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{data_db}?mode=ro", uri=True)) as conn:
            return [
                (str(r[0]), int(r[1]), int(r[2]), int(r[3]))
                for r in conn.execute(
                    "SELECT dataset, SUM(inserted), SUM(updated), SUM(rejected)"
                    " FROM imports GROUP BY dataset"
                )
            ]
    except sqlite3.Error:
        return []  # no imports table yet


class NodeMetrics:
    """The node's metrics registry (its own, not the process-global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "rcf_requests",
            "Federation requests this node answered or refused, by query type, requester "
            "and decision.",
            ["query_type", "requester", "decision", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rcf_request_seconds",
            "Time from a request's arrival to its signed, audited answer or refusal.",
            ["query_type"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.peer_calls = Counter(
            "rcf_peer_calls",
            "Queries this node sent to peers, by query type, responder and outcome.",
            ["query_type", "responder", "outcome"],
            registry=self.registry,
        )
        self._server: object | None = None
        self.address = ""

    def observe_request(
        self, query_type: str, requester: str, decision: str, reason: str, seconds: float
    ) -> None:
        self.requests.labels(query_type, requester or "unknown", decision, reason).inc()
        self.latency.labels(query_type).observe(seconds)

    def observe_peer_call(self, query_type: str, responder: str, outcome: str) -> None:
        self.peer_calls.labels(query_type, responder, outcome).inc()

    def serve(self, listen: str, gauges: NodeGauges) -> str:
        """Serve /metrics on listen (a loopback HOST:PORT; port 0 picks one)."""
        host, port = split_address(listen, what="metrics_listen")
        if unreachable_kind(listen) != "a loopback address":
            raise ConfigError(
                f"metrics_listen {listen} must be a loopback address (127.0.0.1:PORT): the "
                "metrics are for this host's operator, like the operator API."
            )
        self.registry.register(_Collector(gauges))
        try:
            server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"Cannot serve metrics on {listen}: {exc.strerror}.") from exc
        self._server = server
        self.address = f"{host}:{server.server_port}"
        return self.address

    def stop(self) -> None:
        server = self._server
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
            self._server = None
