"""tests/vectors/protocol/identity.json: the code rebuilds it byte for byte, and every
byte is re-derived here from PROTOCOL-identity.md with hashlib, rbcl and protobuf only
(match keys, RFC 9497 OPRF, filter values, the three signed exchanges)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import rbcl

from rcf.node.identity.keys import document_key
from rcf.node.identity.vectors import identity_vectors
from rcf.protos.v1 import identity_pb2
from tests.test_protocol_vectors import (
    AU_SEED,
    TH_SEED,
    assert_part,
    request_header,
    response_header,
)

STORED = json.loads((Path(__file__).parent / "vectors" / "protocol" / "identity.json").read_text())
CONTEXT = b"OPRFV1-\x00-ristretto255-SHA512"
ORDER = 2**252 + 27742317777372353535851937790883648493


def lp(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def expand_message_xmd(msg: bytes, dst: bytes, n: int) -> bytes:
    """RFC 9380 5.3.1 with SHA-512."""
    dst_prime = dst + bytes([len(dst)])
    b0 = hashlib.sha512(bytes(128) + msg + n.to_bytes(2, "big") + b"\0" + dst_prime).digest()
    out = b = hashlib.sha512(b0 + b"\1" + dst_prime).digest()
    i = 2
    while len(out) < n:
        b = hashlib.sha512(bytes(x ^ y for x, y in zip(b0, b, strict=True)) + bytes([i])
                           + dst_prime).digest()  # fmt: skip
        out += b
        i += 1
    return out[:n]


def hash_to_group(msg: bytes) -> bytes:
    uniform = expand_message_xmd(msg, b"HashToGroup-" + CONTEXT, 64)
    return bytes(rbcl.crypto_core_ristretto255_from_hash(uniform))


def hash_to_scalar(msg: bytes, dst: bytes) -> bytes:
    wide = int.from_bytes(expand_message_xmd(msg, dst, 64), "little")
    return (wide % ORDER).to_bytes(32, "little")


def mult(scalar: bytes, element: bytes) -> bytes:
    return bytes(rbcl.crypto_scalarmult_ristretto255(scalar, element))


def test_the_code_rebuilds_the_stored_vectors_byte_for_byte() -> None:
    assert identity_vectors() == STORED


def test_oprf_and_filter_values_rederived() -> None:
    oprf = STORED["oprf"]
    seed, info = bytes.fromhex(oprf["derive_seed_hex"]), bytes.fromhex(oprf["derive_info_hex"])
    # RFC 9497 3.2.1 DeriveKeyPair (counter 0 gives a non-zero scalar here).
    sk = hash_to_scalar(seed + len(info).to_bytes(2, "big") + info + b"\0",
                        b"DeriveKeyPair" + CONTEXT)  # fmt: skip
    assert sk.hex() == oprf["secret_hex"]
    pk = bytes(rbcl.crypto_scalarmult_ristretto255_base(sk))
    assert pk.hex() == oprf["public_hex"]
    assert hashlib.sha256(pk).hexdigest()[:16] == oprf["key_id"]
    for doc in STORED["documents"]:
        x = b"rcf-identity-key-v1" + lp("document") + lp(doc["issuing_state"]) + lp(doc["number"])
        assert x.hex() == doc["match_key_hex"]
        assert document_key(doc["issuing_state"], doc["number"]).data == x  # and the code's
        element = hash_to_group(x)
        r = bytes.fromhex(doc["blind_scalar_hex"])
        assert mult(r, element).hex() == doc["blinded_element_hex"]
        assert mult(sk, mult(r, element)).hex() == doc["evaluated_element_hex"]
        unblinded = mult(sk, element)  # what unblinding the evaluated element gives
        token = hashlib.sha512(len(x).to_bytes(2, "big") + x + (32).to_bytes(2, "big")
                               + unblinded + b"Finalize").digest()  # fmt: skip
        assert token.hex() == doc["token_hex"] and doc["tag_hex"] == token[:16].hex()
        value = hashlib.sha256(b"rcf-identity-filter-v1" + token[:16]).digest()[:8]
        assert value.hex() == doc["filter_value_hex"]
    assert [d["in_filter"] for d in STORED["documents"]] == [True, False]


def test_the_three_exchanges_rederived() -> None:
    docs = STORED["documents"]
    version = STORED["filter_response"]
    key_id = STORED["oprf"]["key_id"]

    def req(message: Any, query_id: str, nonce: str) -> Any:
        message.header.CopyFrom(request_header(query_id, "border-control", bytes.fromhex(nonce)))
        return message

    f = req(identity_pb2.IdentityFilterRequest(), "5b2d9c7e-1f3a-4e6b-8d90-a1c2e3f40516",
            "303132333435363738393a3b3c3d3e3f")  # fmt: skip
    f.dataset = "documents"
    assert_part(STORED["filter_request"], f, AU_SEED)
    fr = identity_pb2.IdentityFilterResponse()
    fr.header.CopyFrom(response_header(f.header.query_id, STORED["filter_request"]["payload_hex"]))
    fr.dataset, fr.oprf_key_id, fr.value_bytes, fr.count, fr.pages = "documents", key_id, 8, 1, 1
    fr.version = identity_pb2.IdentityFilterResponse.FromString(
        bytes.fromhex(version["payload_hex"])
    ).version  # opaque to the asker
    assert len(fr.version) == 32
    fr.values = bytes.fromhex(docs[0]["filter_value_hex"])
    assert_part(STORED["filter_response"], fr, TH_SEED)

    check_id = "2c6e8a0b-4d1f-4e3a-b5c7-9d0e1f2a3b4c"
    e = req(identity_pb2.IdentityEvaluateRequest(), "7e4a1b3c-5d6f-4a8b-9c0d-1e2f3a4b5c6d",
            "404142434445464748494a4b4c4d4e4f")  # fmt: skip
    e.check_id, e.dataset, e.total_persons, e.chunk = check_id, "documents", 2, 0
    e.key_counts.extend([1, 1])
    e.blinded_elements = b"".join(bytes.fromhex(d["blinded_element_hex"]) for d in docs)
    assert_part(STORED["evaluate_request"], e, AU_SEED)
    er = identity_pb2.IdentityEvaluateResponse()
    er.header.CopyFrom(
        response_header(e.header.query_id, STORED["evaluate_request"]["payload_hex"])
    )
    er.check_id, er.chunk, er.oprf_key_id = check_id, 0, key_id
    er.evaluated_elements = b"".join(bytes.fromhex(d["evaluated_element_hex"]) for d in docs)
    er.check_expires_at_ms = 1_790_000_000_003 + 120_000
    er.filter_version = fr.version  # the filter the asker holds is current
    assert_part(STORED["evaluate_response"], er, TH_SEED)

    # Round 2: only the document in the filter.
    lk = req(identity_pb2.IdentityLookupRequest(), "8f5b2c4d-6e7a-4b9c-8d1e-2f3a4b5c6d7e",
             "505152535455565758595a5b5c5d5e5f")  # fmt: skip
    lk.check_id, lk.dataset = check_id, "documents"
    lk.persons.append(0)
    lk.key_counts.append(1)
    lk.tokens = bytes.fromhex(docs[0]["token_hex"])
    assert_part(STORED["lookup_request"], lk, AU_SEED)
    lr = identity_pb2.IdentityLookupResponse()
    lr.header.CopyFrom(response_header(lk.header.query_id, STORED["lookup_request"]["payload_hex"]))
    lr.check_id = check_id
    lr.outcomes.append(identity_pb2.IDENTITY_OUTCOME_HIT)
    mac = hmac.new(bytes.fromhex(STORED["reference_key_hex"]), b"documents:TH-D-1", hashlib.sha256)
    lr.references.append(mac.digest()[:16].hex())
    lr.contact.ncp_id, lr.contact.agency = "TH-ncp", "Immigration Bureau"
    assert_part(STORED["lookup_response"], lr, TH_SEED)
    # The unmatched document's token is in no message the responder receives.
    sent = ("filter_request", "evaluate_request", "lookup_request")
    received = b"".join(bytes.fromhex(STORED[k]["envelope_hex"]) for k in sent)
    assert bytes.fromhex(docs[1]["token_hex"])[:8] not in received
