"""The audit record format, its canonical hash, and chain verification.

Shared by the node (which writes the log) and everyone who reads one: the hub
and auditors check the same bytes with the same code. Verification streams:
it takes records in seq order from any iterable and keeps only the previous
hash and the start of the unsigned tail, so a log of any length verifies in
constant memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rcf.trust.errors import VerificationError
from rcf.trust.keys import verify_signature

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    query_id: str
    query_type: str
    purpose: str
    requester: str
    responder: str
    side: str  # "responder", "requester" or "local"
    decision: str  # answered, refused, failed, applied …
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


Progress = Callable[[int], None]  # records checked so far
PROGRESS_EVERY = 50_000


def verify_chain(
    records: Iterable[AuditRecord],
    public_keys: dict[str, bytes],
    *,
    progress: Progress | None = None,
) -> int:
    """Check sequence, hash chain and batch signatures from the first record; return the count.

    records must come in seq order from seq 1; they are consumed one at a time.
    Every record must be covered by a signature on itself or a later record.
    progress, if given, is called every PROGRESS_EVERY records.
    """
    prev = GENESIS
    unsigned_since: int | None = None
    count = 0
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
        count = expected_seq
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(count)
    if unsigned_since is not None:
        raise VerificationError(
            f"Audit records from {unsigned_since} on carry no node signature.",
            reason="audit_unsigned",
        )
    return count
