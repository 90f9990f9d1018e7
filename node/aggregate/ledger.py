"""The privacy-budget ledger and the query history, in SQLite (the node's state.db).

Two append-only tables (triggers refuse UPDATE and DELETE):

* ``aggregate_budget_ledger``: one row per noised answer — requester, dataset, budget
  window (``month:2026-11``, as the policy engine names periods), query id, mechanism,
  ε in integer micro-epsilon (so sums are exact), δ, and the limit in force. What a
  requester has spent in a window is the sum of its rows; a spend that would pass the
  limit is refused and writes nothing (check and write in one BEGIN IMMEDIATE
  transaction, so two concurrent spends cannot both fit).
* ``aggregate_query_history``: one row per released answer — requester, dataset,
  query id and population, kept for the requester's whole history, so that a later
  query whose population differs by 1 … k-1 records is caught (differencing).

The serving node uses the query history (``populations_near_in`` and
``record_population_in`` in the Aggregate release step). Budgets are charged once,
by the policy gate at authorisation (``policy_usage``, see ``node.policy.store``), so
the node does not call ``spend``: two ledgers charging the same query would halve
every budget. The per-query budget table stays for tools that want an itemised
record of spends.

``AggregateLedger`` owns a connection and wraps each operation in its own
transaction. The ``*_in(conn, …)`` functions do the same work inside a transaction
the caller already holds (``StateDB.run``), so a spend and an audit record can
commit together.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from node.policy.model import Charge, to_micro
from trust.clock import now_ms
from trust.errors import RequestRejected

BUDGET_EXHAUSTED = "budget_exhausted"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS aggregate_budget_ledger (entry_id INTEGER PRIMARY KEY,"
    " requester TEXT NOT NULL, dataset TEXT NOT NULL, period TEXT NOT NULL,"
    " query_id TEXT NOT NULL, mechanism TEXT NOT NULL,"
    " epsilon_micro INTEGER NOT NULL CHECK (epsilon_micro > 0),"
    " delta REAL NOT NULL CHECK (delta >= 0), limit_micro INTEGER NOT NULL,"
    " at_ms INTEGER NOT NULL, UNIQUE (requester, query_id))",
    "CREATE INDEX IF NOT EXISTS ix_aggregate_budget_window"
    " ON aggregate_budget_ledger (requester, dataset, period)",
    "CREATE TRIGGER IF NOT EXISTS aggregate_budget_no_update BEFORE UPDATE"
    " ON aggregate_budget_ledger"
    " BEGIN SELECT RAISE(ABORT, 'the budget ledger is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS aggregate_budget_no_delete BEFORE DELETE"
    " ON aggregate_budget_ledger"
    " BEGIN SELECT RAISE(ABORT, 'the budget ledger is append-only'); END",
    "CREATE TABLE IF NOT EXISTS aggregate_query_history (entry_id INTEGER PRIMARY KEY,"
    " requester TEXT NOT NULL, dataset TEXT NOT NULL, query_id TEXT NOT NULL,"
    " population INTEGER NOT NULL CHECK (population >= 0), at_ms INTEGER NOT NULL,"
    " UNIQUE (requester, query_id))",
    "CREATE INDEX IF NOT EXISTS ix_aggregate_history_population"
    " ON aggregate_query_history (requester, dataset, population)",
    "CREATE TRIGGER IF NOT EXISTS aggregate_history_no_update BEFORE UPDATE"
    " ON aggregate_query_history"
    " BEGIN SELECT RAISE(ABORT, 'the query history is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS aggregate_history_no_delete BEFORE DELETE"
    " ON aggregate_query_history"
    " BEGIN SELECT RAISE(ABORT, 'the query history is append-only'); END",
)


class BudgetExhausted(RequestRejected):
    """A noised answer would spend more than the requester has left in the window."""

    default_reason = BUDGET_EXHAUSTED
    default_status = "RESOURCE_EXHAUSTED"


@dataclass(frozen=True)
class Spend:
    """A recorded spend and what the window holds after it (micro-epsilon)."""

    requester: str
    dataset: str
    window: str
    epsilon_micro: int
    spent_micro: int
    limit_micro: int


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the ledger's tables, indexes and triggers (idempotent)."""
    for stmt in SCHEMA:
        conn.execute(stmt)


def spent_in(conn: sqlite3.Connection, requester: str, dataset: str, window: str) -> int:
    """Micro-epsilon requester has spent on dataset in window."""
    row = conn.execute(
        "SELECT COALESCE(SUM(epsilon_micro), 0) FROM aggregate_budget_ledger"
        " WHERE requester = ? AND dataset = ? AND period = ?",
        (requester, dataset, window),
    ).fetchone()
    return int(row[0])


def spend_in(
    conn: sqlite3.Connection,
    *,
    requester: str,
    dataset: str,
    window: str,
    epsilon: float,
    limit: float,
    query_id: str,
    mechanism: str,
    delta: float = 0.0,
    at_ms: int | None = None,
) -> Spend:
    """Record a spend inside the caller's transaction, or raise BudgetExhausted (nothing
    written). A query id already recorded for requester is not charged twice."""
    amount, limit_micro = to_micro(epsilon), to_micro(limit)
    if amount <= 0:
        raise ValueError("a spend must be above 0 epsilon")
    already = conn.execute(
        "SELECT epsilon_micro FROM aggregate_budget_ledger WHERE requester = ? AND query_id = ?",
        (requester, query_id),
    ).fetchone()
    spent = spent_in(conn, requester, dataset, window)
    if already is not None:
        return Spend(requester, dataset, window, int(already[0]), spent, limit_micro)
    if spent + amount > limit_micro:
        raise BudgetExhausted(
            "Refused: your privacy budget for this dataset is spent for this period.",
        )
    conn.execute(
        "INSERT INTO aggregate_budget_ledger (requester, dataset, period, query_id, mechanism,"
        " epsilon_micro, delta, limit_micro, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            requester,
            dataset,
            window,
            query_id,
            mechanism,
            amount,
            delta,
            limit_micro,
            now_ms() if at_ms is None else at_ms,
        ),
    )
    return Spend(requester, dataset, window, amount, spent + amount, limit_micro)


def populations_near_in(
    conn: sqlite3.Connection, requester: str, dataset: str, population: int, within: int
) -> tuple[int, ...]:
    """Earlier populations of requester on dataset within ``within`` records of population
    (all of history; what ``disclosure.release`` takes as ``history``)."""
    rows = conn.execute(
        "SELECT DISTINCT population FROM aggregate_query_history WHERE requester = ?"
        " AND dataset = ? AND population BETWEEN ? AND ?",
        (requester, dataset, population - within, population + within),
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

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def spent(self, requester: str, dataset: str, window: str) -> int:
        """Micro-epsilon spent by requester on dataset in window."""
        return spent_in(self.conn, requester, dataset, window)

    def used(self, requester: str, charge: Charge) -> int:
        """The policy engine's ``Usage`` for budget charges (rate charges are not kept here)."""
        if charge.kind != "budget":
            return 0
        return spent_in(self.conn, requester, charge.scope, charge.window)

    def spend(
        self,
        *,
        requester: str,
        dataset: str,
        window: str,
        epsilon: float,
        limit: float,
        query_id: str,
        mechanism: str,
        delta: float = 0.0,
        at_ms: int | None = None,
    ) -> Spend:
        """Charge epsilon, or raise BudgetExhausted and charge nothing."""
        with self._transaction() as conn:
            return spend_in(
                conn,
                requester=requester,
                dataset=dataset,
                window=window,
                epsilon=epsilon,
                limit=limit,
                query_id=query_id,
                mechanism=mechanism,
                delta=delta,
                at_ms=at_ms,
            )

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
