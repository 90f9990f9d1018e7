"""DSSE v1 signed envelopes: sign and verify over PAE(type, payload).

Verification works on the bytes as received and hands back the payload only
once every signature on it holds; callers parse it after that, never before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rcf.protos.v1 import envelope_pb2
from rcf.trust.errors import VerificationError
from rcf.trust.keys import SigningKey, key_id_for, verify_signature


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding (DSSE protocol v1)."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    key_id: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]

    def to_proto(self) -> envelope_pb2.Envelope:
        return envelope_pb2.Envelope(
            payload=self.payload,
            payload_type=self.payload_type,
            signatures=[
                envelope_pb2.Signature(key_id=s.key_id, sig=s.sig) for s in self.signatures
            ],
        )

    @classmethod
    def from_proto(cls, msg: envelope_pb2.Envelope) -> Envelope:
        return cls(
            payload=msg.payload,
            payload_type=msg.payload_type,
            signatures=tuple(Signature(key_id=s.key_id, sig=s.sig) for s in msg.signatures),
        )


@dataclass(frozen=True)
class Verified:
    """A payload whose signatures held, with the key ids that signed it."""

    payload: bytes
    payload_type: str
    key_ids: tuple[str, ...]


def sign_envelope(*, payload_type: str, payload: bytes, signers: Sequence[SigningKey]) -> Envelope:
    """Sign payload with each signer over PAE(payload_type, payload)."""
    if not signers:
        raise ValueError("at least one signer is required")
    message = pae(payload_type, payload)
    return Envelope(
        payload=payload,
        payload_type=payload_type,
        signatures=tuple(Signature(key_id=k.key_id, sig=k.sign(message)) for k in signers),
    )


def verify_envelope(
    *,
    envelope: Envelope,
    expected_type: str,
    resolve_key: Callable[[str], bytes],
) -> Verified:
    """Check the type and every signature; return the payload only if all hold.

    ``resolve_key`` maps a key id to a trusted public key or raises
    VerificationError for a key it does not trust.
    """
    if envelope.payload_type != expected_type:
        raise VerificationError(
            f"Expected a signed {expected_type}, got {envelope.payload_type or 'no type'}.",
            reason="wrong_payload_type",
        )
    if not envelope.signatures:
        raise VerificationError("The envelope is not signed.", reason="unsigned")
    message = pae(envelope.payload_type, envelope.payload)
    for signature in envelope.signatures:
        public_key = resolve_key(signature.key_id)
        try:
            verify_signature(public_key=public_key, message=message, signature=signature.sig)
        except VerificationError as exc:
            raise VerificationError(
                f"The signature by key {signature.key_id} does not verify.", reason="bad_signature"
            ) from exc
    return Verified(
        payload=envelope.payload,
        payload_type=envelope.payload_type,
        key_ids=tuple(s.key_id for s in envelope.signatures),
    )


def verify_pinned(
    *, envelope: Envelope, expected_type: str, public_key: bytes, signer: str = "the hub key"
) -> Verified:
    """verify_envelope for documents that only one pinned key (signer) may sign."""
    pinned_id = key_id_for(public_key)

    def resolve(key_id: str) -> bytes:
        if key_id != pinned_id:
            raise VerificationError(
                f"It is signed by {key_id}, not {signer}.", reason="unknown_key"
            )
        return public_key

    return verify_envelope(envelope=envelope, expected_type=expected_type, resolve_key=resolve)
