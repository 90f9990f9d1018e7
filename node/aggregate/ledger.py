"""The aggregate query history, in SQLite (the node's state.db).

``aggregate_query_history`` is append-only (triggers refuse UPDATE and DELETE):
one row per released answer — requester, dataset, query id and population, kept
for the node's whole history, so that a later query, from any requester, whose
population differs by 1 … k-1 records from any earlier release is caught
(differencing protection across requesters).

Privacy budgets are not kept here: they are charged once, by the policy gate at
authorisation (``policy_usage``, see ``node.policy.store``), bound to the audit chain.

``AggregateLedger`` owns a connection and wraps each operation in its own
transaction. The ``*_in(conn, …)`` functions do the same work inside a transaction
the caller already holds (``StateDB.run``).
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path

from rcf.trust.clock import now_ms
from rcf.trust.sqlite import immediate

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS aggregate_query_history (entry_id INTEGER PRIMARY KEY,"
    " requester TEXT NOT NULL, dataset TEXT NOT NULL, query_id TEXT NOT NULL,"
    " population INTEGER NOT NULL CHECK (population >= 0), at_ms INTEGER NOT NULL,"
    " UNIQUE (requester, query_id))",
    "CREATE INDEX IF NOT EXISTS ix_aggregate_history_population"
    " ON aggregate_query_history (requester, dataset, population)",
    "CREATE INDEX IF NOT EXISTS ix_aggregate_history_dataset_population"
    " ON aggregate_query_history (dataset, population)",
    "CREATE TRIGGER IF NOT EXISTS aggregate_history_no_update BEFORE UPDATE"
    " ON aggregate_query_history"
    " BEGIN SELECT RAISE(ABORT, 'the query history is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS aggregate_history_no_delete BEFORE DELETE"
    " ON aggregate_query_history"
    " BEGIN SELECT RAISE(ABORT, 'the query history is append-only'); END",
)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the ledger's tables, indexes and triggers (idempotent)."""
    for stmt in SCHEMA:
        conn.execute(stmt)


def populations_near_in(
    conn: sqlite3.Connection, requester: str, dataset: str, population: int, within: int
) -> tuple[int, ...]:
    """Earlier released populations of dataset within ``within`` records of population,
    whoever they were released to (all of history; what ``disclosure.release`` takes as
    ``history``). Two requesters who pool their answers, or one who asks under two
    names, are one adversary: a one-record difference between AU's answer and NZ's is
    as revealing as between two of AU's. ``requester`` is kept for the record only."""
    del requester  # across requesters, by design
    rows = conn.execute(
        "SELECT DISTINCT population FROM aggregate_query_history WHERE dataset = ?"
        " AND population BETWEEN ? AND ?",
        (dataset, population - within, population + within),
    ).fetchall()
    return tuple(int(r[0]) for r in rows)


def record_population_in(
    conn: sqlite3.Connection,
    *,
    requester: str,
    dataset: str,
    query_id: str,
    population: int,
    at_ms: int | None = None,
) -> None:
    """Remember a released answer's population (idempotent per requester and query id)."""
    conn.execute(
        "INSERT INTO aggregate_query_history (requester, dataset, query_id, population, at_ms)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (requester, query_id) DO NOTHING",
        (requester, dataset, query_id, population, now_ms() if at_ms is None else at_ms),
    )


class AggregateLedger:
    """The ledger on one SQLite connection; every method is one transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        if conn.isolation_level is not None:
            raise ValueError("the ledger needs a connection opened with isolation_level=None")
        self.conn = conn
        with self._transaction():
            create_schema(conn)

    @classmethod
    def open(cls, path: Path) -> AggregateLedger:
        """Open (creating if needed) the ledger in the SQLite file at path, in WAL mode."""
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return cls(conn)

    def close(self) -> None:
        self.conn.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate(self.conn)

    def populations_near(
        self, requester: str, dataset: str, population: int, within: int
    ) -> tuple[int, ...]:
        return populations_near_in(self.conn, requester, dataset, population, within)

    def record_population(
        self,
        *,
        requester: str,
        dataset: str,
        query_id: str,
        population: int,
        at_ms: int | None = None,
    ) -> None:
        with self._transaction() as conn:
            record_population_in(
                conn,
                requester=requester,
                dataset=dataset,
                query_id=query_id,
                population=population,
                at_ms=at_ms,
            )
