"""trust/: Ed25519 against RFC 8032, DSSE against its published example, tampering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rcf.trust.dsse import Envelope, Signature, pae, sign_envelope, verify_envelope
from rcf.trust.errors import ConfigError, VerificationError
from rcf.trust.keys import SigningKey, key_id_for, verify_signature

VECTORS = Path(__file__).parent / "vectors"
RFC8032 = json.loads((VECTORS / "rfc8032-ed25519.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", RFC8032, ids=[v["name"] for v in RFC8032])
def test_ed25519_rfc8032_vectors(vector: dict[str, str]) -> None:
    key = SigningKey.from_seed(bytes.fromhex(vector["secret"]))
    message = bytes.fromhex(vector["message"])
    assert key.public_key.hex() == vector["public"]
    assert key.sign(message).hex() == vector["signature"]
    verify_signature(
        public_key=key.public_key, message=message, signature=bytes.fromhex(vector["signature"])
    )


@pytest.mark.parametrize("vector", RFC8032, ids=[v["name"] for v in RFC8032])
def test_ed25519_rejects_flipped_bits(vector: dict[str, str]) -> None:
    public = bytes.fromhex(vector["public"])
    message = bytes.fromhex(vector["message"])
    sig = bytearray(bytes.fromhex(vector["signature"]))
    sig[10] ^= 0x01
    with pytest.raises(VerificationError):
        verify_signature(public_key=public, message=message, signature=bytes(sig))
    with pytest.raises(VerificationError):
        verify_signature(
            public_key=public,
            message=message + b"x",
            signature=bytes.fromhex(vector["signature"]),
        )


def test_dsse_pae_matches_published_example() -> None:
    vector = json.loads((VECTORS / "dsse-v1.json").read_text())
    got = pae(vector["payloadType"], vector["payload_utf8"].encode())
    assert got == vector["PAE_utf8"].encode()


def test_key_ids_are_stable_and_distinct() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    assert a.key_id == key_id_for(a.public_key)
    assert a.key_id != b.key_id
    with pytest.raises(VerificationError):
        key_id_for(b"short")


def test_key_file_round_trip_and_bad_files(tmp_path: Path) -> None:
    key = SigningKey.generate()
    key.save(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert SigningKey.load(tmp_path / "k").public_key == key.public_key
    with pytest.raises(FileExistsError):
        key.save(tmp_path / "k")
    (tmp_path / "bad").write_text("hello")
    with pytest.raises(ConfigError, match="not an rcf signing key"):
        SigningKey.load(tmp_path / "bad")
    (tmp_path / "bad2").write_text("rcf-ed25519-seed:zz")
    with pytest.raises(ConfigError, match="malformed"):
        SigningKey.load(tmp_path / "bad2")
    with pytest.raises(ConfigError, match="Cannot read"):
        SigningKey.load(tmp_path / "missing")


TYPE = "rcf.v1.PingRequest"


def _signed(key: SigningKey, payload: bytes = b"payload") -> Envelope:
    return sign_envelope(payload_type=TYPE, payload=payload, signers=[key])


def _resolver(*keys: SigningKey):  # type: ignore[no-untyped-def]
    table = {k.key_id: k.public_key for k in keys}

    def resolve(key_id: str) -> bytes:
        if key_id not in table:
            raise VerificationError("unknown key", reason="unknown_key")
        return table[key_id]

    return resolve


def test_envelope_round_trip_through_protobuf() -> None:
    key = SigningKey.generate()
    env = _signed(key)
    again = Envelope.from_proto(env.to_proto())
    assert again == env
    verified = verify_envelope(envelope=again, expected_type=TYPE, resolve_key=_resolver(key))
    assert verified.payload == b"payload"
    assert verified.key_ids == (key.key_id,)


def test_envelope_tampering_of_every_signed_field_is_detected() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    env = _signed(key)
    sig = env.signatures[0]
    tampered = {
        "payload": Envelope(b"payloaX", env.payload_type, env.signatures),
        "payload_type": Envelope(env.payload, "rcf.v1.PingResponse", env.signatures),
        "signature": Envelope(
            env.payload,
            env.payload_type,
            (Signature(sig.key_id, bytes([sig.sig[0] ^ 1]) + sig.sig[1:]),),
        ),
        "key_id": Envelope(env.payload, env.payload_type, (Signature(other.key_id, sig.sig),)),
        "unsigned": Envelope(env.payload, env.payload_type, ()),
        "extra_bad_signature": Envelope(
            env.payload, env.payload_type, (sig, Signature(other.key_id, sig.sig))
        ),
    }
    reasons = {}
    for name, bad in tampered.items():
        with pytest.raises(VerificationError) as info:
            verify_envelope(envelope=bad, expected_type=TYPE, resolve_key=_resolver(key, other))
        reasons[name] = info.value.reason
    assert reasons == {
        "payload": "bad_signature",
        "payload_type": "wrong_payload_type",
        "signature": "bad_signature",
        "key_id": "bad_signature",
        "unsigned": "unsigned",
        "extra_bad_signature": "bad_signature",
    }


def test_unknown_signer_is_refused() -> None:
    key, stranger = SigningKey.generate(), SigningKey.generate()
    with pytest.raises(VerificationError) as info:
        verify_envelope(envelope=_signed(stranger), expected_type=TYPE, resolve_key=_resolver(key))
    assert info.value.reason == "unknown_key"


def test_pae_length_prefix_prevents_type_payload_confusion() -> None:
    # Moving bytes between type and payload must change the signed message.
    assert pae("a b", b"c") != pae("a", b"b c")
