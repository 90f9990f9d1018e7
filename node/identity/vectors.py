"""Byte-exact vectors of an identity check (PROTOCOL-identity.md): the filter, round 1 and
round 2 of a document check of two documents, one held by the responder and one not.

Written to ``tests/vectors/protocol/identity.json`` by ``scripts/gen_protocol_vectors.py``
beside the envelope vectors of ``trust.vectors`` (same keys, same headers); the OPRF
key is DeriveKeyPair of a fixed seed and the blinds are fixed scalars, so every byte
is reproducible. Test-only secrets: never use them for a real node.
"""

from __future__ import annotations

from typing import Any

from rcf.node.identity.filter import VALUE_BYTES, filter_value, filter_version
from rcf.node.identity.keys import document_key
from rcf.node.identity.node_keys import hit_reference
from rcf.protos.v1 import identity_pb2
from rcf.trust import vectors as base
from rcf.trust.oprf import blind, blind_evaluate, derive_key_pair, finalize, hash_to_scalar

OPRF_SEED = bytes(range(64, 96))
OPRF_INFO = b"rcf test vector oprf key"
REFERENCE_KEY = bytes(range(96, 128))
BLIND_LABELS = (b"rcf vector blind 0", b"rcf vector blind 1")
DOCUMENTS = (("IDN", "C1234567"), ("IRQ", "A7654321"))  # held by TH, not held
HELD_RECORD = "TH-D-1"
FILTER_QUERY_ID = "5b2d9c7e-1f3a-4e6b-8d90-a1c2e3f40516"
EVALUATE_QUERY_ID = "7e4a1b3c-5d6f-4a8b-9c0d-1e2f3a4b5c6d"
LOOKUP_QUERY_ID = "8f5b2c4d-6e7a-4b9c-8d1e-2f3a4b5c6d7e"
CHECK_ID = "2c6e8a0b-4d1f-4e3a-b5c7-9d0e1f2a3b4c"
FILTER_NONCE = bytes.fromhex("303132333435363738393a3b3c3d3e3f")
EVALUATE_NONCE = bytes.fromhex("404142434445464748494a4b4c4d4e4f")
LOOKUP_NONCE = bytes.fromhex("505152535455565758595a5b5c5d5e5f")
INDEX_SERIAL = 1
CHECK_TTL_MS = 120_000


def identity_vectors() -> dict[str, Any]:
    """The filter fetch, round 1 and round 2 of one document check AU -> TH, signed."""
    keys = base._keys()
    oprf_key = derive_key_pair(OPRF_SEED, OPRF_INFO)
    inputs = [document_key(state, number).data for state, number in DOCUMENTS]
    scalars = [hash_to_scalar(label) for label in BLIND_LABELS]
    blinds = [blind(x, blind_scalar=s) for x, s in zip(inputs, scalars, strict=True)]
    evaluated = [blind_evaluate(oprf_key, b.blinded_element) for b in blinds]
    tokens = [finalize(x, b, e) for x, b, e in zip(inputs, blinds, evaluated, strict=True)]
    values = [filter_value(t) for t in tokens]
    held = values[:1]  # the responder's index holds the first document only
    version = filter_version(oprf_key.key_id, INDEX_SERIAL, "documents", ("", ""))

    def header(query_id: str, nonce: bytes) -> Any:
        return base._request_header(query_id, "border-control", nonce)

    filter_request = identity_pb2.IdentityFilterRequest(
        header=header(FILTER_QUERY_ID, FILTER_NONCE), dataset="documents", version="", page=0
    )
    filter_request_part, filter_payload = base._signed(filter_request, "AU", keys["AU"])
    filter_response = identity_pb2.IdentityFilterResponse(
        header=base._response_header(FILTER_QUERY_ID, filter_payload),
        dataset="documents", version=version, oprf_key_id=oprf_key.key_id,
        value_bytes=VALUE_BYTES, count=len(held), page=0, pages=1, values=b"".join(held),
    )  # fmt: skip
    filter_response_part, _ = base._signed(filter_response, "TH", keys["TH"])

    evaluate_request = identity_pb2.IdentityEvaluateRequest(
        header=header(EVALUATE_QUERY_ID, EVALUATE_NONCE), check_id=CHECK_ID,
        dataset="documents", total_persons=2, chunk=0, key_counts=[1, 1],
        blinded_elements=b"".join(b.blinded_element for b in blinds),
    )  # fmt: skip
    evaluate_request_part, evaluate_payload = base._signed(evaluate_request, "AU", keys["AU"])
    evaluate_response = identity_pb2.IdentityEvaluateResponse(
        header=base._response_header(EVALUATE_QUERY_ID, evaluate_payload),
        check_id=CHECK_ID, chunk=0, evaluated_elements=b"".join(evaluated),
        oprf_key_id=oprf_key.key_id, check_expires_at_ms=base.ANSWERED_AT_MS + CHECK_TTL_MS,
        filter_version=version,
    )  # fmt: skip
    evaluate_response_part, _ = base._signed(evaluate_response, "TH", keys["TH"])

    # Round 2 lists only the person whose token is in the filter (position 0).
    lookup_request = identity_pb2.IdentityLookupRequest(
        header=header(LOOKUP_QUERY_ID, LOOKUP_NONCE), check_id=CHECK_ID, dataset="documents",
        persons=[0], key_counts=[1], tokens=tokens[0],
    )  # fmt: skip
    lookup_request_part, lookup_payload = base._signed(lookup_request, "AU", keys["AU"])
    lookup_response = identity_pb2.IdentityLookupResponse(
        header=base._response_header(LOOKUP_QUERY_ID, lookup_payload),
        check_id=CHECK_ID, outcomes=[identity_pb2.IDENTITY_OUTCOME_HIT],
        references=[hit_reference(REFERENCE_KEY, "documents", HELD_RECORD)],
        contact=identity_pb2.IdentityContact(ncp_id="TH-ncp", agency="Immigration Bureau"),
    )  # fmt: skip
    lookup_response_part, _ = base._signed(lookup_response, "TH", keys["TH"])
    return {
        "description": (
            "A document check AU -> TH of two documents (PROTOCOL-identity.md): the filter"
            " (TH holds the first only), round 1 for both, round 2 for the match only."
        ),
        "keys": base._keys_json(),
        "oprf": {
            "suite": "ristretto255-SHA512, mode 0x00",
            "derive_seed_hex": OPRF_SEED.hex(),
            "derive_info_hex": OPRF_INFO.hex(),
            "secret_hex": oprf_key.secret.hex(),
            "public_hex": oprf_key.public.hex(),
            "key_id": oprf_key.key_id,
        },
        "reference_key_hex": REFERENCE_KEY.hex(),
        "documents": [
            {
                "issuing_state": state,
                "number": number,
                "match_key_hex": x.hex(),
                "blind_scalar_hex": s.hex(),
                "blinded_element_hex": b.blinded_element.hex(),
                "evaluated_element_hex": e.hex(),
                "token_hex": t.hex(),
                "tag_hex": t[:16].hex(),
                "filter_value_hex": v.hex(),
                "in_filter": v in held,
            }
            for (state, number), x, s, b, e, t, v in zip(
                DOCUMENTS, inputs, scalars, blinds, evaluated, tokens, values, strict=True
            )
        ],
        "filter_request": filter_request_part,
        "filter_response": filter_response_part,
        "evaluate_request": evaluate_request_part,
        "evaluate_response": evaluate_response_part,
        "lookup_request": lookup_request_part,
        "lookup_response": lookup_response_part,
    }


VECTORS = {"identity": identity_vectors}
