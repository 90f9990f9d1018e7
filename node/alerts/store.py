"""Where a node keeps alerts: tables in its state.db, written through its group commit.

- ``alert_log``: this node's own alert versions, whole and signed, in the order
  raised. ``position`` is the resume cursor subscribers hold; it only grows.
- ``alerts_held``: versions received from others, as delivered (a signed,
  possibly redacted copy), idempotent on (alert id, version).
- ``alert_cursors``: per peer, the highest position of its log this node holds.
- ``alert_rejections``: what was refused and why (no alert content).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from rcf.node.ops.state import StateDB

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS alert_log (position INTEGER PRIMARY KEY AUTOINCREMENT,"
    " alert_id TEXT NOT NULL, version INTEGER NOT NULL, envelope BLOB NOT NULL,"
    " at_ms INTEGER NOT NULL, UNIQUE (alert_id, version))",
    "CREATE TABLE IF NOT EXISTS alerts_held (alert_id TEXT NOT NULL, version INTEGER NOT NULL,"
    " raised_by TEXT NOT NULL, via TEXT NOT NULL, envelope BLOB NOT NULL,"
    " received_at_ms INTEGER NOT NULL, PRIMARY KEY (alert_id, version)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS alert_cursors (member_id TEXT PRIMARY KEY,"
    " position INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS alert_rejections (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,"
    " via TEXT NOT NULL, reason TEXT NOT NULL, alert_id TEXT NOT NULL)",
    # The log is what subscribers resume from: rows are never changed or removed.
    "CREATE TRIGGER IF NOT EXISTS alert_log_no_update BEFORE UPDATE ON alert_log"
    " BEGIN SELECT RAISE(ABORT, 'the alert log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS alert_log_no_delete BEFORE DELETE ON alert_log"
    " BEGIN SELECT RAISE(ABORT, 'the alert log is append-only'); END",
)


@dataclass(frozen=True)
class LogEntry:
    position: int
    alert_id: str
    version: int
    envelope: bytes


@dataclass(frozen=True)
class HeldRow:
    alert_id: str
    version: int
    raised_by: str
    via: str
    envelope: bytes
    received_at_ms: int


def _blob(value: object) -> bytes:
    assert isinstance(value, bytes)
    return value


def _entry(r: tuple[object, ...]) -> LogEntry:
    return LogEntry(int(str(r[0])), str(r[1]), int(str(r[2])), _blob(r[3]))


class AlertStore:
    def __init__(self, state: StateDB) -> None:
        self.state = state
        state.run(self._create)

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        for stmt in SCHEMA:
            conn.execute(stmt)

    # -- own log --------------------------------------------------------------------

    def log_after(self, position: int, limit: int = 100) -> list[LogEntry]:
        rows = self.state.read(
            "SELECT position, alert_id, version, envelope FROM alert_log WHERE position > ?"
            " ORDER BY position LIMIT ?",
            (position, limit),
        )
        return [_entry(r) for r in rows]

    def log_head(self) -> int:
        (value,) = self.state.read("SELECT COALESCE(MAX(position), 0) FROM alert_log")[0]
        return int(str(value))

    def own_versions(self, alert_id: str) -> list[LogEntry]:
        rows = self.state.read(
            "SELECT position, alert_id, version, envelope FROM alert_log WHERE alert_id = ?"
            " ORDER BY version",
            (alert_id,),
        )
        return [_entry(r) for r in rows]

    @staticmethod
    def append_sql(
        conn: sqlite3.Connection, alert_id: str, version: int, envelope: bytes, at_ms: int
    ) -> int:
        cur = conn.execute(
            "INSERT INTO alert_log (alert_id, version, envelope, at_ms) VALUES (?, ?, ?, ?)",
            (alert_id, version, envelope, at_ms),
        )
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    # -- received -------------------------------------------------------------------

    def held(self, alert_id: str | None = None) -> list[HeldRow]:
        sql = "SELECT alert_id, version, raised_by, via, envelope, received_at_ms FROM alerts_held"
        params: tuple[object, ...] = ()
        if alert_id is not None:
            sql += " WHERE alert_id = ?"
            params = (alert_id,)
        rows = self.state.read(sql + " ORDER BY alert_id, version", params)
        return [
            HeldRow(str(r[0]), int(str(r[1])), str(r[2]), str(r[3]), _blob(r[4]), int(str(r[5])))
            for r in rows
        ]

    def held_version(self, alert_id: str, version: int) -> bool:
        rows = self.state.read(
            "SELECT 1 FROM alerts_held WHERE alert_id = ? AND version = ?", (alert_id, version)
        )
        return bool(rows)

    def cursor(self, member_id: str) -> int:
        rows = self.state.read(
            "SELECT position FROM alert_cursors WHERE member_id = ?", (member_id,)
        )
        return int(str(rows[0][0])) if rows else 0

    def cursors(self) -> dict[str, int]:
        return {
            str(r[0]): int(str(r[1]))
            for r in self.state.read("SELECT member_id, position FROM alert_cursors")
        }

    @staticmethod
    def advance_sql(conn: sqlite3.Connection, member_id: str, position: int) -> None:
        conn.execute(
            "INSERT INTO alert_cursors VALUES (?, ?) ON CONFLICT (member_id) DO UPDATE"
            " SET position = MAX(position, excluded.position)",
            (member_id, position),
        )

    def rejections(self) -> list[tuple[int, str, str, str]]:
        rows = self.state.read(
            "SELECT at_ms, via, reason, alert_id FROM alert_rejections ORDER BY id"
        )
        return [(int(str(r[0])), str(r[1]), str(r[2]), str(r[3])) for r in rows]
