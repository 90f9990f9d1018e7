"""The byte-exact protocol test vectors of protos/PROTOCOL*.md, built from fixed inputs.

Each ``tests/vectors/protocol/<name>.json`` is the output of ``VECTORS[name]``; the
test suite rebuilds every file and compares byte for byte, and re-derives each one
independently (PyNaCl, hashlib, protobuf messages built field by field), so the
documents, the vectors and the code cannot drift apart. Another implementation
checks itself against the files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.message import Message

from rcf.protos.v1 import aggregate_pb2, alerts_pb2, audit_pb2, envelope_pb2, federation_pb2
from rcf.trust.audit_leaf import encode_leaf
from rcf.trust.audit_record import GENESIS, AuditEvent, AuditRecord, record_hash
from rcf.trust.dsse import pae, sign_envelope
from rcf.trust.keys import SigningKey

# Fixed inputs. Seeds are test-only: never use them for a real node.
REQUESTER_SEED = bytes(range(32))
RESPONDER_SEED = bytes(range(32, 64))
QUERY_ID = "6f1c1e4e-3b8a-4d55-9a51-2b7c0f3d9e10"
NONCE = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
ISSUED_AT_MS = 1_790_000_000_000
EXPIRES_AT_MS = ISSUED_AT_MS + 60_000
ANSWERED_AT_MS = ISSUED_AT_MS + 3
DATA = b"ping"

# The Aggregate, Alerts and audit vectors: their own query ids and nonces.
AGGREGATE_QUERY_ID = "0b5e7c2a-91d4-4f3e-8c6a-5d2f1e0a9b38"
AGGREGATE_NONCE = bytes.fromhex("101112131415161718191a1b1c1d1e1f")
ALERTS_QUERY_ID = "3d8f0a61-7c2e-4b95-a1d0-6e4c2b9f8a17"
ALERTS_NONCE = bytes.fromhex("202122232425262728292a2b2c2d2e2f")
ALERT_ID = "9a3c5e71-2b4d-4f60-8e1a-7c9b0d2f4e63"
ALERT_ISSUED_AT_MS = ISSUED_AT_MS - 86_400_000
CAVEAT = "RESTRICTED - Bali Process members only; not for publication."
# The field set of a recipient whose rule names fewer fields (PROTOCOL-alerts.md §1).
REDACTED_FIELDS = ("document_type", "issuing_state", "series")

_KEYS = (("AU", REQUESTER_SEED), ("TH", RESPONDER_SEED))


def _keys() -> dict[str, SigningKey]:
    return {member: SigningKey.from_seed(seed) for member, seed in _KEYS}


def _keys_json() -> dict[str, Any]:
    return {
        member: {
            "ed25519_seed_hex": seed.hex(),
            "public_key_hex": SigningKey.from_seed(seed).public_key.hex(),
            "key_id": SigningKey.from_seed(seed).key_id,
        }
        for member, seed in _KEYS
    }


def _signed(message: Message, signer: str, key: SigningKey) -> tuple[dict[str, Any], bytes]:
    """The signed envelope of message's deterministic bytes, as the vector files show it."""
    payload = message.SerializeToString(deterministic=True)
    ptype = message.DESCRIPTOR.full_name
    env = sign_envelope(payload_type=ptype, payload=payload, signers=[key]).to_proto()
    part = {
        "signer": signer,
        "payload_type": ptype,
        "payload_hex": payload.hex(),
        "pae_hex": pae(ptype, payload).hex(),
        "signature_hex": env.signatures[0].sig.hex(),
        "envelope_hex": env.SerializeToString().hex(),
        "payload_sha256_hex": hashlib.sha256(payload).hexdigest(),
    }
    return part, payload


def _request_header(query_id: str, purpose: str, nonce: bytes) -> envelope_pb2.RequestHeader:
    return envelope_pb2.RequestHeader(
        query_id=query_id,
        requester="AU",
        responder="TH",
        purpose=purpose,
        issued_at_ms=ISSUED_AT_MS,
        expires_at_ms=EXPIRES_AT_MS,
        nonce=nonce,
    )


def _response_header(query_id: str, request_payload: bytes, sequence: int = 0) -> Any:
    return envelope_pb2.ResponseHeader(
        query_id=query_id,
        responder="TH",
        requester="AU",
        request_sha256=hashlib.sha256(request_payload).digest(),
        issued_at_ms=ANSWERED_AT_MS + sequence,
        sequence=sequence,
    )


def ping_vectors() -> dict[str, Any]:
    """A signed Ping request from AU to TH and TH's signed response, as hex and text."""
    keys = _keys()
    request = federation_pb2.PingRequest(
        header=_request_header(QUERY_ID, "connectivity-check", NONCE), data=DATA
    )
    request_part, request_payload = _signed(request, "AU", keys["AU"])
    response = federation_pb2.PingResponse(
        header=_response_header(QUERY_ID, request_payload), data=DATA
    )
    response_part, _ = _signed(response, "TH", keys["TH"])
    return {
        "description": "A signed Ping request AU -> TH and TH's signed response (PROTOCOL.md).",
        "keys": _keys_json(),
        "request": request_part,
        "response": response_part,
    }


def aggregate_vectors() -> dict[str, Any]:
    """A signed Aggregate query AU -> TH and TH's signed table (PROTOCOL-aggregate.md)."""
    keys = _keys()
    query = aggregate_pb2.AggregateQuery(
        dataset="irregular_movements",
        dictionary_version="1.0",
        filters=[
            aggregate_pb2.AggregateFilter(
                dimension="month", between=aggregate_pb2.ValueRange(low="2025-01", high="2025-12")
            ),
            aggregate_pb2.AggregateFilter(
                dimension="nationality",
                one_of=aggregate_pb2.ValueSet(values=["AFG", "LKA", "MMR"]),
            ),
        ],
        group_by=["nationality"],
    )
    request = aggregate_pb2.AggregateRequest(
        header=_request_header(AGGREGATE_QUERY_ID, "regional-analysis", AGGREGATE_NONCE),
        query=query,
    )
    request_part, request_payload = _signed(request, "AU", keys["AU"])
    # k = 5: AFG's 3 records are suppressed, LKA with them (else the total gives AFG away).
    primary, secondary = (
        aggregate_pb2.CELL_STATUS_SUPPRESSED_PRIMARY,
        aggregate_pb2.CELL_STATUS_SUPPRESSED_SECONDARY,
    )
    exact = aggregate_pb2.CELL_STATUS_EXACT
    table = aggregate_pb2.AggregateTable(
        dataset="irregular_movements",
        dimensions=["nationality"],
        cells=[
            aggregate_pb2.AggregateCell(key=["AFG"], status=primary, value=0),
            aggregate_pb2.AggregateCell(key=["LKA"], status=secondary, value=0),
            aggregate_pb2.AggregateCell(key=["MMR"], status=exact, value=70),
            aggregate_pb2.AggregateCell(key=[""], status=exact, value=81),
        ],
        caveat=CAVEAT,
        min_cell_size=5,
        noise="none",
        dictionary_version="1.0",
    )
    response = aggregate_pb2.AggregateResponse(
        header=_response_header(AGGREGATE_QUERY_ID, request_payload), table=table
    )
    response_part, _ = _signed(response, "TH", keys["TH"])
    return {
        "description": (
            "A signed Aggregate request AU -> TH (irregular_movements by nationality, 2025, "
            "three nationalities) and TH's signed table with a primary and a secondary "
            "suppression (PROTOCOL-aggregate.md)."
        ),
        "keys": _keys_json(),
        "request": request_part,
        "response": response_part,
    }


def _alert(fields: Sequence[str]) -> alerts_pb2.Alert:
    """Version 1 of TH's alert, reduced to fields (the copy for that field set)."""
    full = {
        "issuing_state": {"issuing_state": "THA"},
        "document_type": {"document_type": "passport"},
        "document_number": {"document_number": "AA1234567"},
        "series": {"series": "AA12"},
        "modus_operandi": {"modus_operandi": "Laminate replaced; data page reprinted."},
        "detection_place": {"detection_place": "THBKK"},
        "detection_date": {"detection_date": "2026-09-20"},
    }
    alert = alerts_pb2.Alert(
        alert_id=ALERT_ID,
        version=1,
        raised_by="TH",
        issued_at_ms=ALERT_ISSUED_AT_MS,
        category="counterfeit",
        severity="high",
        handling_caveat=CAVEAT,
        disclosed_fields=sorted(fields),
    )
    for name in fields:
        for attr, value in full.get(name, {}).items():
            setattr(alert, attr, value)
    return alert


ALL_ALERT_FIELDS = (
    "detection_date",
    "detection_place",
    "document_number",
    "document_type",
    "issuing_state",
    "modus_operandi",
    "ncp",
    "security_features",
    "series",
    "valid_until",
)


def alert_vectors() -> dict[str, Any]:
    """TH's signed alert version (whole and redacted), and AU's subscription carrying it."""
    keys = _keys()
    alert_part, _ = _signed(_alert(ALL_ALERT_FIELDS), "TH", keys["TH"])
    redacted_part, _ = _signed(_alert(REDACTED_FIELDS), "TH", keys["TH"])
    request = alerts_pb2.AlertsRequest(
        header=_request_header(ALERTS_QUERY_ID, "alert-distribution", ALERTS_NONCE),
        after_position=0,
    )
    request_part, request_payload = _signed(request, "AU", keys["AU"])
    alert_envelope = envelope_pb2.Envelope.FromString(bytes.fromhex(alert_part["envelope_hex"]))
    delivery = alerts_pb2.AlertsResponse(
        header=_response_header(ALERTS_QUERY_ID, request_payload, 0),
        position=1,
        alert=alert_envelope,
    )
    delivery_part, _ = _signed(delivery, "TH", keys["TH"])
    confirmation = alerts_pb2.AlertsResponse(
        header=_response_header(ALERTS_QUERY_ID, request_payload, 1), position=1
    )
    confirmation_part, _ = _signed(confirmation, "TH", keys["TH"])
    return {
        "description": (
            "Version 1 of an alert raised by TH, signed as a document: the whole copy and "
            "the copy for the field set document_type, issuing_state, series; AU's signed "
            "subscription from position 0; TH's stream: the whole copy at position 1 "
            "(sequence 0), then the end of the backlog (sequence 1) (PROTOCOL-alerts.md)."
        ),
        "keys": _keys_json(),
        "alert": alert_part,
        "alert_redacted": redacted_part,
        "request": request_part,
        "response_0": delivery_part,
        "response_1": confirmation_part,
    }


def _audit_records(key: SigningKey) -> list[AuditRecord]:
    """Two records of AU's log: its side of the Aggregate vector, a refusal it made."""
    aggregate = aggregate_vectors()
    events = [
        (
            ANSWERED_AT_MS + 5,
            AuditEvent(
                query_id=AGGREGATE_QUERY_ID,
                query_type="Aggregate",
                purpose="regional-analysis",
                requester="AU",
                responder="TH",
                side="requester",
                decision="answered",
                reason="ok",
                request_sha256=aggregate["request"]["payload_sha256_hex"],
                response_sha256=aggregate["response"]["payload_sha256_hex"],
            ),
        ),
        (
            ANSWERED_AT_MS + 9,
            # Refused before the envelope was read: no query id, purpose or digest.
            AuditEvent(
                query_id="",
                query_type="Ping",
                purpose="",
                requester="TH",
                responder="AU",
                side="responder",
                decision="refused",
                reason="message_too_large",
                request_sha256="",
            ),
        ),
    ]
    records, prev = [], GENESIS
    for seq, (ts, event) in enumerate(events, start=1):
        digest = record_hash(seq, ts, event, prev)
        signature = key.sign(bytes.fromhex(digest)) if seq == len(events) else None
        records.append(AuditRecord(seq, ts, event, prev, digest, key.key_id, signature))
        prev = digest
    return records


def audit_batch_vectors() -> dict[str, Any]:
    """AU's first two audit records, their leaves, and the signed batch it ships to the hub."""
    keys = _keys()
    records = _audit_records(keys["AU"])
    leaves = [encode_leaf("AU", r) for r in records]
    batch = audit_pb2.AuditBatch(
        member_id="AU", first_seq=1, leaves=leaves, issued_at_ms=ANSWERED_AT_MS + 10
    )
    batch_part, _ = _signed(batch, "AU", keys["AU"])
    leaf_hashes = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    last = records[-1]
    assert last.signature is not None
    return {
        "description": (
            "AU's audit records 1 and 2 (its side of the Aggregate vector; a refusal made "
            "before an envelope was read), their hub-log leaves, the chain signature on the "
            "last record hash, and the signed AuditBatch sent with SubmitAudit; the Merkle "
            "leaf hashes and the root of a log holding just these two (PROTOCOL-audit.md)."
        ),
        "keys": _keys_json(),
        "records": [
            {
                "seq": r.seq,
                "ts_ms": r.ts_ms,
                "prev_hash": r.prev_hash,
                "query_id": r.event.query_id,
                "query_type": r.event.query_type,
                "purpose": r.event.purpose,
                "requester": r.event.requester,
                "responder": r.event.responder,
                "side": r.event.side,
                "decision": r.event.decision,
                "reason": r.event.reason,
                "request_sha256": r.event.request_sha256,
                "response_sha256": r.event.response_sha256,
                "record_hash": r.record_hash,
                "key_id": r.key_id,
            }
            for r in records
        ],
        "chain_signature": {"seq": last.seq, "signature_hex": last.signature.hex()},
        "leaves_text": [leaf.decode() for leaf in leaves],
        "merkle_leaf_hashes_hex": [h.hex() for h in leaf_hashes],
        "merkle_root_hex": hashlib.sha256(b"\x01" + leaf_hashes[0] + leaf_hashes[1]).hexdigest(),
        "batch": batch_part,
    }


# Every vector file: tests/vectors/protocol/<name>.json.
VECTORS: dict[str, Callable[[], dict[str, Any]]] = {
    "ping": ping_vectors,
    "aggregate": aggregate_vectors,
    "alert": alert_vectors,
    "audit_batch": audit_batch_vectors,
}
