"""Retention: moving old audit records out of state.db into compressed segment files.

Only records already covered by a final checkpoint (hub-signed, quorum-cosigned)
move, and a segment always ends at a shipped batch's last record, so it carries
that batch's inclusion proof (and every earlier batch's in its range). A
segment is gzip'd JSON lines: a header, then one record per line with its
node signature if it has one. The newest record never moves, so the chain
continues in state.db from the segment's last hash.

``rcf audit verify`` reads segments (in seq order, listed in ``audit_segments``
and found in the node's ``audit-segments/`` folder) before the database, so the
whole chain is verified across them in constant memory.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcf.node.audit.anchor import AnchorStore, ShippedBatch
from rcf.node.audit.chain import AuditLog
from rcf.node.ops.state import SCHEMA as STATE_SCHEMA
from rcf.node.ops.state import StateDB
from rcf.trust import checkpoint as cp
from rcf.trust.audit_record import AuditEvent, AuditRecord
from rcf.trust.errors import ConfigError, VerificationError
from rcf.trust.files import private_dir

SEGMENT_FORMAT = "rcf-audit-segment/1"
SEGMENTS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit_segments (last_seq INTEGER PRIMARY KEY,"
    " first_seq INTEGER NOT NULL, file TEXT NOT NULL, sha256 TEXT NOT NULL,"
    " last_hash TEXT NOT NULL)"
)


@dataclass(frozen=True)
class Segment:
    first_seq: int
    last_seq: int
    path: Path
    sha256: str
    last_hash: str


@dataclass(frozen=True)
class SegmentHeader:
    member_id: str
    first_seq: int
    last_seq: int
    final_checkpoint: str
    batches: tuple[ShippedBatch, ...]


def segments_dir(root: Path) -> Path:
    return root / "audit-segments"


def ensure_schema(state: StateDB) -> None:
    state.run(lambda conn: conn.execute(SEGMENTS_SCHEMA))


def list_segments(state: StateDB, root: Path) -> list[Segment]:
    """The segments state.db lists, oldest first."""
    ensure_schema(state)
    rows = state.read(
        "SELECT first_seq, last_seq, file, sha256, last_hash FROM audit_segments ORDER BY last_seq"
    )
    return [
        Segment(
            int(str(r[0])), int(str(r[1])), segments_dir(root) / str(r[2]), str(r[3]), str(r[4])
        )
        for r in rows
    ]


def _batch_json(b: ShippedBatch) -> dict[str, Any]:
    return {
        "first_seq": b.first_seq,
        "last_seq": b.last_seq,
        "last_index": b.last_index,
        "tree_size": b.tree_size,
        "checkpoint": b.checkpoint,
        "proof": [h.hex() for h in b.proof],
    }


def _record_json(r: AuditRecord) -> list[Any]:
    e = r.event
    return [
        r.seq, r.ts_ms, r.prev_hash, e.query_id, e.query_type, e.purpose, e.requester,
        e.responder, e.side, e.decision, e.reason, e.request_sha256, e.response_sha256,
        r.record_hash, r.key_id, r.signature.hex() if r.signature is not None else None,
    ]  # fmt: skip


def _damaged(path: Path) -> VerificationError:
    return VerificationError(f"The audit segment {path.name} is damaged.", reason="segment_damaged")


def read_segment(path: Path) -> tuple[SegmentHeader, Iterator[AuditRecord]]:
    """The header and a streaming iterator over the records of a segment file."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as first:
            head = json.loads(first.readline())
        header = SegmentHeader(
            member_id=str(head["member_id"]),
            first_seq=int(head["first_seq"]),
            last_seq=int(head["last_seq"]),
            final_checkpoint=str(head["final_checkpoint"]),
            batches=tuple(
                ShippedBatch(
                    first_seq=int(b["first_seq"]),
                    last_seq=int(b["last_seq"]),
                    last_index=int(b["last_index"]),
                    tree_size=int(b["tree_size"]),
                    checkpoint=str(b["checkpoint"]),
                    proof=[bytes.fromhex(h) for h in b["proof"]],
                )
                for b in head["batches"]
            ),
        )
        if head.get("format") != SEGMENT_FORMAT:
            raise _damaged(path)
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise _damaged(path) from exc

    def records() -> Iterator[AuditRecord]:
        with gzip.open(path, "rt", encoding="utf-8") as stream:
            try:
                stream.readline()
                for line in stream:
                    r = json.loads(line)
                    yield AuditRecord(
                        seq=int(r[0]),
                        ts_ms=int(r[1]),
                        event=AuditEvent(*[str(x) for x in r[3:13]]),
                        prev_hash=str(r[2]),
                        record_hash=str(r[13]),
                        key_id=str(r[14]),
                        signature=bytes.fromhex(r[15]) if r[15] is not None else None,
                    )
            except (OSError, ValueError, IndexError, TypeError, EOFError) as exc:
                raise _damaged(path) from exc

    return header, records()


@dataclass(frozen=True)
class Archived:
    segment: Segment
    records: int


def archive_before(
    *,
    root: Path,
    member_id: str,
    state: StateDB,
    audit: AuditLog,
    anchor: AnchorStore,
    origin: str,
    before_ms: int,
) -> Archived | None:
    """Move records older than before_ms that a final checkpoint covers into a segment.

    Returns None when nothing qualifies. The segment file is written and synced
    before the rows are deleted, in one transaction, so a crash leaves them in
    state.db, in the segment, or (harmlessly, the segment unlisted) both.
    """
    ensure_schema(state)
    final_note = anchor.final(origin)
    if not final_note:
        raise ConfigError(
            "No final audit checkpoint is known yet: the node must ship its records and the "
            "witnesses cosign before anything can be archived.",
            reason="no_final_checkpoint",
        )
    final = cp.parse_checkpoint_body(cp.parse_note(final_note).text)
    done = max((s.last_seq for s in list_segments(state, root)), default=0)
    newest = audit.last_seq()
    cut = 0
    for batch in anchor.batches(after=done):
        if batch.last_index >= final.size or batch.last_seq >= newest:
            break
        rec = audit.record(batch.last_seq)
        if rec is None or rec.ts_ms >= before_ms:
            break
        cut = batch.last_seq
    if cut == 0:
        return None
    first = done + 1
    batches = tuple(anchor.batches(after=0, upto=cut))
    folder = private_dir(segments_dir(root))
    name = f"audit-{first:012d}-{cut:012d}.jsonl.gz"
    tmp = folder / (name + ".tmp")
    header = {
        "format": SEGMENT_FORMAT,
        "member_id": member_id,
        "first_seq": first,
        "last_seq": cut,
        "final_checkpoint": final_note,
        "batches": [_batch_json(b) for b in batches if b.last_seq >= first],
    }
    last_hash = ""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as out:
        out.write((json.dumps(header) + "\n").encode())
        seq = done
        while seq < cut:
            page = audit.records_after(seq, min(5_000, cut - seq))
            if not page:
                break
            for rec in page:
                out.write((json.dumps(_record_json(rec)) + "\n").encode())
                last_hash = rec.record_hash
            seq = page[-1].seq
        out.close()
        raw.flush()
        os.fsync(raw.fileno())
    if seq != cut:
        tmp.unlink(missing_ok=True)
        raise ConfigError("The audit log changed while it was being archived; try again.")
    path = folder / name
    tmp.replace(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    def move(conn: sqlite3.Connection) -> None:
        # The append-only triggers are lifted for this one transaction only.
        for table in ("audit", "audit_sig"):
            conn.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        conn.execute("DELETE FROM audit_signatures WHERE seq <= ?", (cut,))
        conn.execute("DELETE FROM audit WHERE seq <= ?", (cut,))
        for stmt in STATE_SCHEMA:
            if "TRIGGER" in stmt:
                conn.execute(stmt)
        conn.execute(
            "INSERT INTO audit_segments VALUES (?, ?, ?, ?, ?)",
            (cut, first, name, digest, last_hash),
        )

    state.run(move)
    return Archived(Segment(first, cut, path, digest, last_hash), cut - done)


def iter_all_records(state: StateDB, root: Path, audit: AuditLog) -> Iterator[AuditRecord]:
    """Every record of the node's log, archived segments first, in seq order."""
    for segment in list_segments(state, root):
        _, records = read_segment(segment.path)
        yield from records
    yield from audit.iter_records()


def segment_batches(state: StateDB, root: Path) -> list[ShippedBatch]:
    """The batch proofs the archived segments carry."""
    found: list[ShippedBatch] = []
    for segment in list_segments(state, root):
        header, _ = read_segment(segment.path)
        found.extend(header.batches)
    return found
