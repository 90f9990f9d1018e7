"""The byte-exact protocol test vectors of protos/PROTOCOL.md, built from fixed inputs.

``tests/vectors/protocol/ping.json`` is this function's output; the test suite
rebuilds it and compares byte for byte, so the document, the vectors and the
code cannot drift apart. Another implementation checks itself against the file.
"""

from __future__ import annotations

import hashlib
from typing import Any

from rcf.protos.v1 import envelope_pb2, federation_pb2
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


def ping_vectors() -> dict[str, Any]:
    """A signed Ping request from AU to TH and TH's signed response, as hex and text."""
    au, th = SigningKey.from_seed(REQUESTER_SEED), SigningKey.from_seed(RESPONDER_SEED)
    request = federation_pb2.PingRequest(
        header=envelope_pb2.RequestHeader(
            query_id=QUERY_ID,
            requester="AU",
            responder="TH",
            purpose="connectivity-check",
            issued_at_ms=ISSUED_AT_MS,
            expires_at_ms=EXPIRES_AT_MS,
            nonce=NONCE,
        ),
        data=DATA,
    )
    request_payload = request.SerializeToString(deterministic=True)
    request_type = federation_pb2.PingRequest.DESCRIPTOR.full_name
    request_env = sign_envelope(payload_type=request_type, payload=request_payload, signers=[au])
    request_digest = hashlib.sha256(request_payload).digest()
    response = federation_pb2.PingResponse(
        header=envelope_pb2.ResponseHeader(
            query_id=QUERY_ID,
            responder="TH",
            requester="AU",
            request_sha256=request_digest,
            issued_at_ms=ANSWERED_AT_MS,
        ),
        data=DATA,
    )
    response_payload = response.SerializeToString(deterministic=True)
    response_type = federation_pb2.PingResponse.DESCRIPTOR.full_name
    response_env = sign_envelope(payload_type=response_type, payload=response_payload, signers=[th])
    return {
        "description": "A signed Ping request AU -> TH and TH's signed response (PROTOCOL.md).",
        "keys": {
            member: {
                "ed25519_seed_hex": key_seed.hex(),
                "public_key_hex": key.public_key.hex(),
                "key_id": key.key_id,
            }
            for member, key, key_seed in (
                ("AU", au, REQUESTER_SEED),
                ("TH", th, RESPONDER_SEED),
            )
        },
        "request": {
            "payload_type": request_type,
            "payload_hex": request_payload.hex(),
            "pae_hex": pae(request_type, request_payload).hex(),
            "signature_hex": request_env.signatures[0].sig.hex(),
            "envelope_hex": request_env.to_proto().SerializeToString().hex(),
            "payload_sha256_hex": request_digest.hex(),
        },
        "response": {
            "payload_type": response_type,
            "payload_hex": response_payload.hex(),
            "pae_hex": pae(response_type, response_payload).hex(),
            "signature_hex": response_env.signatures[0].sig.hex(),
            "envelope_hex": response_env.to_proto().SerializeToString().hex(),
        },
    }
