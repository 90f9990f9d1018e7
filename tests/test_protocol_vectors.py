"""The byte-exact vectors of protos/PROTOCOL*.md: each file, the code that builds it and
an independent re-derivation (PyNaCl, hashlib, json and the protobuf messages built field
by field, none of our signing, audit or alert code) must all agree."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import pytest

from rcf.node.aggregate.responder import validate_form
from rcf.node.aggregate.wire import table_from_proto
from rcf.node.alerts.model import Alert, check_shape, redact
from rcf.protos.v1 import aggregate_pb2, alerts_pb2, audit_pb2, envelope_pb2, federation_pb2
from rcf.trust.audit_leaf import decode_leaf
from rcf.trust.vectors import VECTORS

FOLDER = Path(__file__).parent / "vectors" / "protocol"
NAMES = sorted(VECTORS)

AU_SEED = bytes(range(32))
TH_SEED = bytes(range(32, 64))
ISSUED, EXPIRES, ANSWERED = 1_790_000_000_000, 1_790_000_060_000, 1_790_000_000_003
CAVEAT = "RESTRICTED - Bali Process members only; not for publication."


def load(name: str) -> Any:
    return json.loads((FOLDER / f"{name}.json").read_text())


def signed_parts(stored: Any) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in stored.items() if isinstance(v, dict) and "payload_hex" in v]


def pae(ptype: str, payload: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(ptype), ptype.encode(), len(payload), payload)


def key_id(seed: bytes) -> str:
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    return "ed25519:" + hashlib.sha256(public).hexdigest()[:32]


def envelope(ptype: str, payload: bytes, seed: bytes) -> bytes:
    """The DSSE envelope of payload signed with seed, built here without our code."""
    sig = nacl.signing.SigningKey(seed).sign(pae(ptype, payload)).signature
    env = envelope_pb2.Envelope(payload=payload, payload_type=ptype)
    env.signatures.add(key_id=key_id(seed), sig=sig)
    return env.SerializeToString()


def assert_part(part: Any, message: Any, seed: bytes) -> None:
    """part is message's deterministic bytes, signed with seed, byte for byte."""
    payload = message.SerializeToString(deterministic=True)
    ptype = message.DESCRIPTOR.full_name
    assert part["payload_type"] == ptype
    assert part["payload_hex"] == payload.hex()
    assert part["payload_sha256_hex"] == hashlib.sha256(payload).hexdigest()
    assert part["envelope_hex"] == envelope(ptype, payload, seed).hex()


def request_header(query_id: str, purpose: str, nonce: bytes) -> envelope_pb2.RequestHeader:
    h = envelope_pb2.RequestHeader()
    h.query_id, h.requester, h.responder, h.purpose = query_id, "AU", "TH", purpose
    h.issued_at_ms, h.expires_at_ms, h.nonce = ISSUED, EXPIRES, nonce
    return h


def response_header(query_id: str, request_payload_hex: str, sequence: int = 0) -> Any:
    h = envelope_pb2.ResponseHeader()
    h.query_id, h.responder, h.requester = query_id, "TH", "AU"
    h.request_sha256 = hashlib.sha256(bytes.fromhex(request_payload_hex)).digest()
    h.issued_at_ms, h.sequence = ANSWERED + sequence, sequence
    return h


# -- every file ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_code_rebuilds_the_stored_vectors_byte_for_byte(name: str) -> None:
    assert VECTORS[name]() == load(name)


@pytest.mark.parametrize("name", NAMES)
def test_key_ids_are_the_sha256_prefix_of_the_public_key(name: str) -> None:
    for key in load(name)["keys"].values():
        seed = bytes.fromhex(key["ed25519_seed_hex"])
        public = bytes(nacl.signing.SigningKey(seed).verify_key)
        assert public.hex() == key["public_key_hex"]
        assert key["key_id"] == key_id(seed)


@pytest.mark.parametrize("name", NAMES)
def test_pae_envelope_and_signature_follow_the_document(name: str) -> None:
    stored = load(name)
    parts = signed_parts(stored)
    assert parts
    for _, v in parts:
        payload, ptype = bytes.fromhex(v["payload_hex"]), v["payload_type"]
        assert bytes.fromhex(v["pae_hex"]) == pae(ptype, payload)
        signer = stored["keys"][v["signer"]]
        public = bytes.fromhex(signer["public_key_hex"])
        nacl.signing.VerifyKey(public).verify(
            pae(ptype, payload), bytes.fromhex(v["signature_hex"])
        )
        env = envelope_pb2.Envelope.FromString(bytes.fromhex(v["envelope_hex"]))
        assert env.payload == payload and env.payload_type == ptype
        assert [(s.key_id, s.sig.hex()) for s in env.signatures] == [
            (signer["key_id"], v["signature_hex"])
        ]
        assert hashlib.sha256(payload).hexdigest() == v["payload_sha256_hex"]


@pytest.mark.parametrize("name", NAMES)
def test_a_changed_byte_breaks_every_signature(name: str) -> None:
    stored = load(name)
    for _, v in signed_parts(stored):
        tampered = bytearray(bytes.fromhex(v["pae_hex"]))
        tampered[-1] ^= 1
        public = bytes.fromhex(stored["keys"][v["signer"]]["public_key_hex"])
        with pytest.raises(nacl.exceptions.BadSignatureError):
            nacl.signing.VerifyKey(public).verify(
                bytes(tampered), bytes.fromhex(v["signature_hex"])
            )


# -- Ping (PROTOCOL.md §8.1) ------------------------------------------------------------------


def test_ping_rederived() -> None:
    stored = load("ping")
    query_id = "6f1c1e4e-3b8a-4d55-9a51-2b7c0f3d9e10"
    request = federation_pb2.PingRequest()
    request.header.CopyFrom(
        request_header(
            query_id, "connectivity-check", bytes.fromhex("000102030405060708090a0b0c0d0e0f")
        )
    )
    request.data = b"ping"
    assert_part(stored["request"], request, AU_SEED)
    response = federation_pb2.PingResponse()
    response.header.CopyFrom(response_header(query_id, stored["request"]["payload_hex"]))
    response.data = b"ping"
    assert_part(stored["response"], response, TH_SEED)
    assert len(request.header.nonce) == 16


# -- Aggregate (PROTOCOL-aggregate.md) -----------------------------------------------------


def test_aggregate_rederived_and_accepted_by_the_code() -> None:
    stored = load("aggregate")
    query_id = "0b5e7c2a-91d4-4f3e-8c6a-5d2f1e0a9b38"
    request = aggregate_pb2.AggregateRequest()
    request.header.CopyFrom(
        request_header(
            query_id, "regional-analysis", bytes.fromhex("101112131415161718191a1b1c1d1e1f")
        )
    )
    q = request.query
    q.dataset, q.dictionary_version = "irregular_movements", "1.0"
    months = q.filters.add()
    months.dimension, months.between.low, months.between.high = "month", "2025-01", "2025-12"
    nationality = q.filters.add()
    nationality.dimension = "nationality"
    nationality.one_of.values.extend(["AFG", "LKA", "MMR"])
    q.group_by.append("nationality")
    assert_part(stored["request"], request, AU_SEED)

    response = aggregate_pb2.AggregateResponse()
    response.header.CopyFrom(response_header(query_id, stored["request"]["payload_hex"]))
    t = response.table
    t.dataset, t.dimensions[:] = "irregular_movements", ["nationality"]
    for key, status, value in (
        ("AFG", aggregate_pb2.CELL_STATUS_SUPPRESSED_PRIMARY, 0),
        ("LKA", aggregate_pb2.CELL_STATUS_SUPPRESSED_SECONDARY, 0),
        ("MMR", aggregate_pb2.CELL_STATUS_EXACT, 70),
        ("", aggregate_pb2.CELL_STATUS_EXACT, 81),
    ):
        cell = t.cells.add()
        cell.key.append(key)
        cell.status, cell.value = status, value
    t.caveat, t.min_cell_size, t.noise, t.dictionary_version = CAVEAT, 5, "none", "1.0"
    assert_part(stored["response"], response, TH_SEED)

    # The node's own form check takes the request, its requester side reads the table.
    validate_form(
        aggregate_pb2.AggregateRequest.FromString(bytes.fromhex(stored["request"]["payload_hex"]))
    )
    table = table_from_proto(response.table, [False])
    assert [c.value for c in table.cells] == [None, None, 70, 81]


# -- Alerts (PROTOCOL-alerts.md) ----------------------------------------------------------


def alert_v1(fields: list[str]) -> alerts_pb2.Alert:
    a = alerts_pb2.Alert()
    a.alert_id, a.version, a.raised_by = "9a3c5e71-2b4d-4f60-8e1a-7c9b0d2f4e63", 1, "TH"
    a.issued_at_ms = ISSUED - 86_400_000
    a.category, a.severity, a.handling_caveat = "counterfeit", "high", CAVEAT
    a.disclosed_fields.extend(sorted(fields))
    values = {
        "issuing_state": "THA",
        "document_type": "passport",
        "document_number": "AA1234567",
        "series": "AA12",
        "modus_operandi": "Laminate replaced; data page reprinted.",
        "detection_place": "THBKK",
        "detection_date": "2026-09-20",
    }
    for name in fields:
        if name in values:
            setattr(a, name, values[name])
    return a


ALL_FIELDS = [
    "detection_date", "detection_place", "document_number", "document_type", "issuing_state",
    "modus_operandi", "ncp", "security_features", "series", "valid_until",
]  # fmt: skip


def test_alert_version_and_its_stream_rederived() -> None:
    stored = load("alert")
    whole = alert_v1(ALL_FIELDS)
    assert_part(stored["alert"], whole, TH_SEED)
    assert_part(
        stored["alert_redacted"], alert_v1(["document_type", "issuing_state", "series"]), TH_SEED
    )

    query_id = "3d8f0a61-7c2e-4b95-a1d0-6e4c2b9f8a17"
    request = alerts_pb2.AlertsRequest()
    request.header.CopyFrom(
        request_header(
            query_id, "alert-distribution", bytes.fromhex("202122232425262728292a2b2c2d2e2f")
        )
    )
    request.after_position = 0
    assert_part(stored["request"], request, AU_SEED)
    delivery = alerts_pb2.AlertsResponse()
    delivery.header.CopyFrom(response_header(query_id, stored["request"]["payload_hex"], 0))
    delivery.position = 1
    # The raiser's envelope travels as it was signed, inside the responder's message.
    delivery.alert.ParseFromString(bytes.fromhex(stored["alert"]["envelope_hex"]))
    assert_part(stored["response_0"], delivery, TH_SEED)
    confirmation = alerts_pb2.AlertsResponse()
    confirmation.header.CopyFrom(response_header(query_id, stored["request"]["payload_hex"], 1))
    confirmation.position = 1
    assert_part(stored["response_1"], confirmation, TH_SEED)


def test_the_codes_redaction_and_bounds_agree_with_the_alert_vector() -> None:
    stored = load("alert")
    whole = Alert.from_proto(
        alerts_pb2.Alert.FromString(bytes.fromhex(stored["alert"]["payload_hex"]))
    )
    check_shape(whole, now_ms=ISSUED)
    copy = redact(whole, ("series", "issuing_state", "document_type"))
    assert (
        copy.to_proto().SerializeToString(deterministic=True).hex()
        == (stored["alert_redacted"]["payload_hex"])
    )


# -- the audit batch (PROTOCOL.md §10, PROTOCOL-audit.md) --------------------------------


def canonical(value: list[Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()


FIELDS = (
    "query_id", "query_type", "purpose", "requester", "responder", "side", "decision",
    "reason", "request_sha256", "response_sha256",
)  # fmt: skip


def test_audit_batch_rederived() -> None:
    stored = load("audit_batch")
    aggregate = load("aggregate")
    au_key_id = key_id(AU_SEED)
    rows = [
        (1, ANSWERED + 5, "0b5e7c2a-91d4-4f3e-8c6a-5d2f1e0a9b38", "Aggregate",
         "regional-analysis", "AU", "TH", "requester", "answered", "ok",
         aggregate["request"]["payload_sha256_hex"], aggregate["response"]["payload_sha256_hex"]),
        (2, ANSWERED + 9, "", "Ping", "", "TH", "AU", "responder", "refused",
         "message_too_large", "", ""),
    ]  # fmt: skip
    prev, leaves = "0" * 64, []
    for (seq, ts, *event), record in zip(rows, stored["records"], strict=True):
        digest = hashlib.sha256(canonical([seq, ts, prev, *event])).hexdigest()
        assert record == {
            "seq": seq, "ts_ms": ts, "prev_hash": prev, **dict(zip(FIELDS, event, strict=True)),
            "record_hash": digest, "key_id": au_key_id,
        }  # fmt: skip
        leaves.append(
            canonical(["rcf-audit-leaf/1", "AU", au_key_id, seq, ts, prev, *event, digest])
        )
        prev = digest
    assert stored["leaves_text"] == [leaf.decode() for leaf in leaves]
    # The chain signature: Ed25519 over the 32 bytes of the last record hash.
    signature = nacl.signing.SigningKey(AU_SEED).sign(bytes.fromhex(prev)).signature
    assert stored["chain_signature"] == {"seq": 2, "signature_hex": signature.hex()}
    hashes = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    assert stored["merkle_leaf_hashes_hex"] == [h.hex() for h in hashes]
    assert stored["merkle_root_hex"] == hashlib.sha256(b"\x01" + hashes[0] + hashes[1]).hexdigest()

    batch = audit_pb2.AuditBatch()
    batch.member_id, batch.first_seq, batch.issued_at_ms = "AU", 1, ANSWERED + 10
    batch.leaves.extend(leaves)
    assert_part(stored["batch"], batch, AU_SEED)
    # The hub's leaf check takes every leaf.
    assert [decode_leaf(leaf).record.seq for leaf in leaves] == [1, 2]
