"""The node's local audit log: append-only, hash-chained, signed by the node.

A record says who asked whom for what kind of query, why, what was decided and
the digests of both messages; never the query's contents. Each record's hash
covers the previous one, so removing or editing a record breaks the chain.

The node signs the chain head once per committed batch (table
``audit_signatures``) rather than every record: through the chain that
signature covers every earlier record, and a batch under load holds dozens of
records, so signing cost stays flat while each record is still signed before
any response that depends on it leaves the node.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

from rcf.node.ops.state import StateDB, Write
from rcf.trust.audit_record import GENESIS, AuditEvent, AuditRecord, record_hash, verify_chain
from rcf.trust.clock import now_ms
from rcf.trust.errors import ConfigError
from rcf.trust.keys import SigningKey

# Re-exported: the record format and its verification live in trust/ so the hub reads them too.
__all__ = [
    "GENESIS",
    "AuditEvent",
    "AuditLog",
    "AuditRecord",
    "local_event",
    "record_hash",
    "verify_chain",
]

PAGE = 5_000  # records per read when streaming the log
_SELECT = (
    "SELECT a.seq, ts_ms, query_id, query_type, purpose, requester, responder, side,"
    " decision, reason, request_sha256, response_sha256, prev_hash, record_hash,"
    " COALESCE(s.key_id, a.key_id), s.signature"
    " FROM audit a LEFT JOIN audit_signatures s ON s.seq = a.seq"
)


class AuditLog:
    def __init__(self, state: StateDB, signing_key: SigningKey | None) -> None:
        """signing_key None: a read-only view (the CLI's), which cannot append."""
        self._state = state
        self.state = state
        self._key = signing_key
        # Events of the transaction being built; only touched under the commit lock.
        # They are written together when the batch ends: one head lookup, one
        # multi-row insert and one head signature per commit.
        self._batch: list[tuple[AuditEvent, int]] = []
        state.on_batch_end(self._write_batch, on_rollback=self._forget)

    def _forget(self) -> None:
        self._batch.clear()

    def _write_batch(self, conn: sqlite3.Connection) -> None:
        if not self._batch:
            return
        assert self._key is not None  # append() refuses without a key
        # The head is read inside the transaction: an offline operator command may
        # have appended to the same file since the last batch.
        last = conn.execute(
            "SELECT seq, record_hash FROM audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        rows = []
        for e, ts in self._batch:
            seq += 1
            digest = record_hash(seq, ts, e, prev)
            rows.append(
                (
                    seq, ts, e.query_id, e.query_type, e.purpose, e.requester, e.responder,
                    e.side, e.decision, e.reason, e.request_sha256, e.response_sha256, prev,
                    digest, self._key.key_id,
                )
            )  # fmt: skip
            prev = digest
        conn.executemany(
            "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        conn.execute(
            "INSERT INTO audit_signatures VALUES (?, ?, ?)",
            (seq, self._key.key_id, self._key.sign(bytes.fromhex(prev))),
        )
        self._batch.clear()

    def append(self, event: AuditEvent, *, with_write: Write | None = None) -> None:
        """Append and wait until the record is committed; with_write commits in the same
        transaction (what an operation records to show it was audited)."""
        if self._key is None:
            raise ConfigError("This audit log was opened read-only; only the node appends.")

        def write(conn: sqlite3.Connection) -> None:
            if with_write is not None:
                with_write(conn)
            self._batch.append((event, now_ms()))

        self._state.run(write)

    def records(self, *, limit: int | None = None) -> list[AuditRecord]:
        """The newest limit records (all if None), oldest first; for display."""
        sql = _SELECT + " ORDER BY a.seq DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._state.read(sql)[::-1]
        return [_record_from_row(r) for r in rows]

    def iter_records(self, *, page: int = PAGE) -> Iterator[AuditRecord]:
        """Every record in seq order, read page by page (seq ranges): constant memory."""
        after = 0
        while True:
            rows = self._state.read(
                _SELECT + " WHERE a.seq > ? ORDER BY a.seq LIMIT ?", (after, int(page))
            )
            if not rows:
                return
            for r in rows:
                yield _record_from_row(r)
            after = int(str(rows[-1][0]))

    @property
    def can_append(self) -> bool:
        return self._key is not None

    def records_after(self, seq: int, limit: int) -> list[AuditRecord]:
        """Up to limit records with seq greater than seq, in seq order."""
        rows = self._state.read(
            _SELECT + " WHERE a.seq > ? ORDER BY a.seq LIMIT ?", (int(seq), int(limit))
        )
        return [_record_from_row(r) for r in rows]

    def record(self, seq: int) -> AuditRecord | None:
        """The record with this seq, if the database holds it."""
        rows = self._state.read(_SELECT + " WHERE a.seq = ?", (int(seq),))
        return _record_from_row(rows[0]) if rows else None

    def last_seq(self) -> int:
        """The newest seq in the database (0 if empty)."""
        (value,) = self._state.read("SELECT COALESCE(MAX(seq), 0) FROM audit")[0]
        return int(str(value))

    def stage(self, event: AuditEvent) -> None:
        """Add event to the batch being committed; only from inside a StateDB write,
        so it commits (chained and signed) in the same transaction as that write."""
        if self._key is None:
            raise ConfigError("This audit log was opened read-only; only the node appends.")
        self._batch.append((event, now_ms()))

    def last_of_type(self, query_type: str, *, side: str = "local") -> AuditRecord | None:
        """The newest record of query_type written on side, if any."""
        rows = self._state.read(
            _SELECT + " WHERE a.query_type = ? AND a.side = ? ORDER BY a.seq DESC LIMIT 1",
            (query_type, side),
        )
        return _record_from_row(rows[0]) if rows else None

    def quick_check(self) -> list[str]:
        """SQLite's PRAGMA quick_check on state.db: [] if the file's structure is sound."""
        rows = self._state.read("PRAGMA quick_check")
        lines = [line.strip() for r in rows for line in str(r[0]).splitlines()]
        if lines == ["ok"]:
            return []
        return [line for line in lines if line and not line.startswith("***")]

    def count(self) -> int:
        (value,) = self._state.read("SELECT COUNT(*) FROM audit")[0]
        return int(str(value))


def _record_from_row(r: tuple[Any, ...]) -> AuditRecord:
    event = AuditEvent(*[str(x) for x in r[2:12]])
    return AuditRecord(
        seq=int(r[0]),
        ts_ms=int(r[1]),
        event=event,
        prev_hash=str(r[12]),
        record_hash=str(r[13]),
        key_id=str(r[14]),
        signature=None if r[15] is None else bytes(r[15]),
    )


def local_event(
    member_id: str,
    *,
    action: str,
    purpose: str,
    decision: str,
    reason: str,
    subject_sha256: str,
    query_id: str = "",
) -> AuditEvent:
    """An audit event for what a node does to itself (policy change, import, purge)."""
    return AuditEvent(
        query_id=query_id or str(uuid.uuid4()),
        query_type=action,
        purpose=purpose,
        requester=member_id,
        responder=member_id,
        side="local",
        decision=decision,
        reason=reason,
        request_sha256=subject_sha256,
    )
