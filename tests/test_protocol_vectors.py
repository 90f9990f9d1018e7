"""protos/PROTOCOL.md's byte-exact vectors: the file, the code and an independent
re-derivation (PyNaCl and hashlib directly, no project code) must all agree."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from rcf.protos.v1 import envelope_pb2, federation_pb2
from rcf.trust.vectors import ping_vectors

VECTORS = Path(__file__).parent / "vectors" / "protocol" / "ping.json"


@pytest.fixture(scope="module")
def stored() -> Any:
    return json.loads(VECTORS.read_text())


def test_the_code_rebuilds_the_stored_vectors_byte_for_byte(stored: Any) -> None:
    assert ping_vectors() == stored


def test_key_ids_are_the_sha256_prefix_of_the_public_key(stored: Any) -> None:
    for key in stored["keys"].values():
        seed = bytes.fromhex(key["ed25519_seed_hex"])
        public = bytes(nacl.signing.SigningKey(seed).verify_key)
        assert public.hex() == key["public_key_hex"]
        assert key["key_id"] == "ed25519:" + hashlib.sha256(public).hexdigest()[:32]


@pytest.mark.parametrize(("side", "signer"), [("request", "AU"), ("response", "TH")])
def test_pae_envelope_and_signature_follow_the_document(
    stored: Any, side: str, signer: str
) -> None:
    v = stored[side]
    payload, ptype = bytes.fromhex(v["payload_hex"]), v["payload_type"]
    expected_pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype.encode(), len(payload), payload)
    assert bytes.fromhex(v["pae_hex"]) == expected_pae
    public = bytes.fromhex(stored["keys"][signer]["public_key_hex"])
    nacl.signing.VerifyKey(public).verify(expected_pae, bytes.fromhex(v["signature_hex"]))
    envelope = envelope_pb2.Envelope.FromString(bytes.fromhex(v["envelope_hex"]))
    assert envelope.payload == payload and envelope.payload_type == ptype
    assert [(s.key_id, s.sig.hex()) for s in envelope.signatures] == [
        (stored["keys"][signer]["key_id"], v["signature_hex"])
    ]


def test_the_response_binds_the_request(stored: Any) -> None:
    request = federation_pb2.PingRequest.FromString(bytes.fromhex(stored["request"]["payload_hex"]))
    response = federation_pb2.PingResponse.FromString(
        bytes.fromhex(stored["response"]["payload_hex"])
    )
    digest = hashlib.sha256(bytes.fromhex(stored["request"]["payload_hex"])).digest()
    assert digest.hex() == stored["request"]["payload_sha256_hex"]
    assert response.header.request_sha256 == digest
    assert response.header.query_id == request.header.query_id
    assert (response.header.requester, response.header.responder) == ("AU", "TH")
    assert (request.header.requester, request.header.responder) == ("AU", "TH")
    assert len(request.header.nonce) == 16


def test_a_changed_byte_breaks_the_signature(stored: Any) -> None:
    v = stored["request"]
    tampered = bytearray(bytes.fromhex(v["pae_hex"]))
    tampered[-1] ^= 1
    public = bytes.fromhex(stored["keys"]["AU"]["public_key_hex"])
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl.signing.VerifyKey(public).verify(bytes(tampered), bytes.fromhex(v["signature_hex"]))
