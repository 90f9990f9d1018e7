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

import hashlib
import json
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any

from node.state import StateDB, Write
from trust.clock import now_ms
from trust.errors import ConfigError, VerificationError
from trust.keys import SigningKey, verify_signature

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    query_id: str
    query_type: str
    purpose: str
    requester: str
    responder: str
    side: str  # "responder" or "requester"
    decision: str  # answered, refused, failed
    reason: str
    request_sha256: str
    response_sha256: str = ""


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    ts_ms: int
    event: AuditEvent
    prev_hash: str
    record_hash: str
    key_id: str
    signature: bytes | None  # present on the last record of each committed batch


def record_hash(seq: int, ts_ms: int, event: AuditEvent, prev_hash: str) -> str:
    """SHA-256 over a canonical encoding: a JSON array in fixed field order."""
    e = event
    body = [
        seq, ts_ms, prev_hash, e.query_id, e.query_type, e.purpose, e.requester, e.responder,
        e.side, e.decision, e.reason, e.request_sha256, e.response_sha256,
    ]  # fmt: skip
    canonical = json.dumps(body, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


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
        sql = (
            "SELECT a.seq, ts_ms, query_id, query_type, purpose, requester, responder, side,"
            " decision, reason, request_sha256, response_sha256, prev_hash, record_hash,"
            " COALESCE(s.key_id, a.key_id), s.signature"
            " FROM audit a LEFT JOIN audit_signatures s ON s.seq = a.seq ORDER BY a.seq DESC"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._state.read(sql)[::-1]
        return [_record_from_row(r) for r in rows]

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


def verify_chain(records: list[AuditRecord], public_keys: dict[str, bytes]) -> int:
    """Check sequence, hash chain and batch signatures from the first record; return the count.

    Every record must be covered by a signature on itself or a later record.
    """
    prev = GENESIS
    unsigned_since: int | None = None
    for expected_seq, rec in enumerate(records, start=1):
        if rec.seq != expected_seq:
            raise VerificationError(f"Audit record {expected_seq} is missing.", reason="audit_gap")
        if rec.prev_hash != prev:
            raise VerificationError(
                f"Audit record {rec.seq} does not chain to its predecessor.", reason="audit_chain"
            )
        if record_hash(rec.seq, rec.ts_ms, rec.event, rec.prev_hash) != rec.record_hash:
            raise VerificationError(
                f"Audit record {rec.seq} was altered after it was written.", reason="audit_chain"
            )
        if rec.signature is None:
            unsigned_since = unsigned_since or rec.seq
        else:
            key = public_keys.get(rec.key_id)
            if key is None:
                raise VerificationError(
                    f"Audit record {rec.seq} is signed by an unknown key.", reason="unknown_key"
                )
            try:
                verify_signature(
                    public_key=key, message=bytes.fromhex(rec.record_hash), signature=rec.signature
                )
            except VerificationError as exc:
                raise VerificationError(
                    f"The node signature on audit record {rec.seq} does not verify.",
                    reason="audit_signature",
                ) from exc
            unsigned_since = None
        prev = rec.record_hash
    if unsigned_since is not None:
        raise VerificationError(
            f"Audit records from {unsigned_since} on carry no node signature.",
            reason="audit_unsigned",
        )
    return len(records)


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
