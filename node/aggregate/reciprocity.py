"""Reciprocity: only members that contribute a dataset receive others' aggregates of it.

A policy rule with ``reciprocity = true`` answers a requester only if the requester
contributes the dataset. Who contributes is what this node has itself seen
(``ContributorRegistry``): members whose nodes answered one of this node's own
queries of the dataset with a signed table in the last year. It is tit for tat on
verified evidence: no directory field to maintain, nothing a member can merely
claim. Two members that both require reciprocity of each other must let one side
go first (a rule without reciprocity for the other, or a query by the one that
does not require it); ``policies/README.md`` says so.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence

from rcf.node.aggregate.merge import ANSWERED, MemberResult
from rcf.node.ops.state import StateDB
from rcf.trust.clock import now_ms
from rcf.trust.errors import RequestRejected

RECIPROCITY_REQUIRED = "reciprocity_required"


def check_reciprocity(requester: str, dataset: str, contributors: Collection[str]) -> None:
    """Refuse (reason ``reciprocity_required``) unless requester contributes dataset."""
    if requester not in contributors:
        raise RequestRejected(
            f"Refused: only members that contribute {dataset} receive aggregates of it.",
            reason=RECIPROCITY_REQUIRED,
        )


def contributors_of(results: Sequence[MemberResult]) -> frozenset[str]:
    """The members whose answer in a regional query carried a table (they contribute)."""
    return frozenset(r.member for r in results if r.outcome == ANSWERED)


# -- who contributes: what this node has seen ------------------------------------------

# A member counts as a contributor of a dataset for this long after its node last
# answered one of this node's queries of it with a signed table.
CONTRIBUTION_WINDOW_MS = 366 * 24 * 3600 * 1000

CONTRIBUTORS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS aggregate_contributors (member TEXT NOT NULL,"
    " dataset TEXT NOT NULL, last_answered_ms INTEGER NOT NULL,"
    " PRIMARY KEY (member, dataset)) WITHOUT ROWID",
)


def create_contributors_schema(conn: sqlite3.Connection) -> None:
    for stmt in CONTRIBUTORS_SCHEMA:
        conn.execute(stmt)


def record_contributors_in(
    conn: sqlite3.Connection, members: Collection[str], dataset: str, at_ms: int
) -> None:
    """Remember that members answered this node's query of dataset with a table at at_ms."""
    conn.executemany(
        "INSERT INTO aggregate_contributors VALUES (?, ?, ?) ON CONFLICT (member, dataset)"
        " DO UPDATE SET last_answered_ms = MAX(last_answered_ms, excluded.last_answered_ms)",
        [(m, dataset, at_ms) for m in members],
    )


class ContributorRegistry:
    """The members this node has seen contribute each dataset, kept in its state.db.

    The source is this node's own verified experience: a member contributes a dataset
    if its node answered one of this node's queries of that dataset (regional or to
    chosen members) with a signed table within ``CONTRIBUTION_WINDOW_MS``. No one
    else's word is needed, and a member cannot claim it: only its signed answers count.
    """

    def __init__(self, state: StateDB) -> None:
        self._state = state
        state.run(create_contributors_schema)

    def record(self, members: Collection[str], dataset: str) -> None:
        if members:
            at = now_ms()
            self._state.run(lambda conn: record_contributors_in(conn, members, dataset, at))

    def contributors(self, dataset: str) -> frozenset[str]:
        since = now_ms() - CONTRIBUTION_WINDOW_MS
        rows = self._state.read(
            "SELECT member FROM aggregate_contributors WHERE dataset = ? AND last_answered_ms >= ?",
            (dataset, since),
        )
        return frozenset(str(r[0]) for r in rows)

    def check(self, requester: str, dataset: str) -> None:
        """Refuse (``reciprocity_required``) unless requester contributes dataset."""
        check_reciprocity(requester, dataset, self.contributors(dataset))
