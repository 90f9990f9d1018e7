"""How one audit record becomes one leaf of the hub's Merkle log, and back.

A leaf is the record's canonical JSON array prefixed by a format tag and the
member whose log it comes from (the hub log mixes every member's records):

    ["rcf-audit-leaf/1", member, key_id, seq, ts_ms, prev_hash, query_id,
     query_type, purpose, requester, responder, side, decision, reason,
     request_sha256, response_sha256, record_hash]

Decoding is strict: the bytes must re-encode identically, the record hash
must be the one its fields give, so a leaf names exactly one record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from rcf.trust.audit_record import AuditEvent, AuditRecord, record_hash
from rcf.trust.directory import Directory, MemberStatus
from rcf.trust.errors import VerificationError

LEAF_TAG = "rcf-audit-leaf/1"
MAX_LEAF_BYTES = 4096
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class AuditLeaf:
    """One member's record as the hub log holds it (without the node's batch signature)."""

    member_id: str
    record: AuditRecord


def encode_leaf(member_id: str, rec: AuditRecord) -> bytes:
    """The canonical leaf bytes of rec in member_id's log."""
    e = rec.event
    body = [
        LEAF_TAG, member_id, rec.key_id, rec.seq, rec.ts_ms, rec.prev_hash, e.query_id,
        e.query_type, e.purpose, e.requester, e.responder, e.side, e.decision, e.reason,
        e.request_sha256, e.response_sha256, rec.record_hash,
    ]  # fmt: skip
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()


def _bad(message: str) -> VerificationError:
    return VerificationError(message, reason="bad_leaf")


def decode_leaf(data: bytes) -> AuditLeaf:
    """Parse leaf bytes; VerificationError unless canonical and self-consistent."""
    if len(data) > MAX_LEAF_BYTES:
        raise _bad(f"An audit leaf is larger than {MAX_LEAF_BYTES} bytes.")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad("An audit leaf is not JSON.") from exc
    if not isinstance(body, list) or len(body) != 17 or body[0] != LEAF_TAG:
        raise _bad("An audit leaf does not have the rcf-audit-leaf/1 layout.")
    strings = [body[i] for i in (1, 2, 5, *range(6, 17))]
    if not all(isinstance(s, str) for s in strings):
        raise _bad("An audit leaf has a field of the wrong type.")
    if not all(type(body[i]) is int and body[i] >= 0 for i in (3, 4)):
        raise _bad("An audit leaf has a bad sequence number or time.")
    if not (_HEX64.fullmatch(body[5]) and _HEX64.fullmatch(body[16])):
        raise _bad("An audit leaf has a malformed hash.")
    event = AuditEvent(*[str(x) for x in body[6:16]])
    rec = AuditRecord(
        seq=body[3],
        ts_ms=body[4],
        event=event,
        prev_hash=body[5],
        record_hash=body[16],
        key_id=body[2],
        signature=None,
    )
    if record_hash(rec.seq, rec.ts_ms, event, rec.prev_hash) != rec.record_hash:
        raise _bad(f"Audit leaf for record {rec.seq} does not hash to its record hash.")
    leaf = AuditLeaf(member_id=body[1], record=rec)
    if encode_leaf(leaf.member_id, rec) != data:
        raise _bad("An audit leaf is not in canonical form.")
    return leaf


def log_origin(network: str) -> str:
    """The checkpoint origin (and hub key name) of a network's audit log."""
    return "rcf-audit/" + (re.sub(r"[^A-Za-z0-9._~:@-]", "-", network) or "network")


def witness_keys(directory: Directory, *, at_ms: int) -> dict[str, bytes]:
    """Witness name (member id) → the member's newest signing key valid at at_ms.

    Every member that is not revoked witnesses; its cosignature/v1 key is its
    node signing key, under its member id.
    """
    keys: dict[str, bytes] = {}
    for m in directory.members:
        if m.status is MemberStatus.REVOKED:
            continue
        valid = [k for k in m.signing_keys if k.valid_at(at_ms)]
        if valid:
            keys[m.member_id] = max(valid, key=lambda k: k.valid_from_ms).public_key
    return keys
