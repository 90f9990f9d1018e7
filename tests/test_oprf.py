"""RFC 9497 OPRF(ristretto255, SHA-512): the published vectors, the round trip, bad elements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import rbcl
from hypothesis import given, settings
from hypothesis import strategies as st

from rcf.trust import oprf

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "rfc9497-oprf-ristretto255-sha512.json").read_text()
)


def _key() -> oprf.OprfKey:
    return oprf.derive_key_pair(bytes.fromhex(VECTORS["Seed"]), bytes.fromhex(VECTORS["KeyInfo"]))


def test_context_string_is_the_rfcs() -> None:
    assert oprf.CONTEXT_STRING.decode() == VECTORS["contextString"]


def test_derive_key_pair_matches_vector() -> None:
    assert _key().secret.hex() == VECTORS["skSm"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["Input"][:8])
def test_every_rfc9497_vector(vector: dict[str, str]) -> None:
    key = _key()
    data = bytes.fromhex(vector["Input"])
    blinded = oprf.blind(data, blind_scalar=bytes.fromhex(vector["Blind"]))
    assert blinded.blinded_element.hex() == vector["BlindedElement"]
    evaluated = oprf.blind_evaluate(key, blinded.blinded_element)
    assert evaluated.hex() == vector["EvaluationElement"]
    assert oprf.finalize(data, blinded, evaluated).hex() == vector["Output"]
    # The responder's own Evaluate gives the same output without blinding.
    assert oprf.evaluate(key, data).hex() == vector["Output"]


def test_batch_helpers_match_vectors() -> None:
    key = _key()
    inputs = [bytes.fromhex(v["Input"]) for v in VECTORS["vectors"]]
    blinded = [
        oprf.blind(x, blind_scalar=bytes.fromhex(v["Blind"]))
        for x, v in zip(inputs, VECTORS["vectors"], strict=True)
    ]
    evaluated = oprf.blind_evaluate_batch(key, [b.blinded_element for b in blinded])
    outputs = oprf.finalize_batch(inputs, blinded, evaluated)
    assert [o.hex() for o in outputs] == [v["Output"] for v in VECTORS["vectors"]]
    assert oprf.evaluate_batch(key, inputs) == outputs


def test_expand_message_xmd_sha512_rfc9380_vector() -> None:
    # RFC 9380 appendix K.3, expand_message_xmd(SHA-512), msg "", len_in_bytes 0x20.
    dst = b"QUUX-V01-CS02-with-expander-SHA512-256"
    assert (
        oprf.expand_message_xmd(b"", dst, 0x20).hex()
        == "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"
    )


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=200))
def test_blind_round_trip_equals_evaluate(data: bytes) -> None:
    key = oprf.OprfKey.generate()
    blinded = oprf.blind(data)
    output = oprf.finalize(data, blinded, oprf.blind_evaluate(key, blinded.blinded_element))
    assert output == oprf.evaluate(key, data)
    assert len(output) == oprf.OUTPUT_BYTES


def test_different_keys_give_different_tokens_and_rotation_changes_them() -> None:
    old, new = oprf.OprfKey.generate(), oprf.OprfKey.generate()
    assert old.key_id != new.key_id
    assert oprf.evaluate(old, b"key") != oprf.evaluate(new, b"key")
    assert oprf.OprfKey.from_secret(old.secret).public == old.public


def test_key_repr_hides_the_secret() -> None:
    key = oprf.OprfKey.generate()
    assert key.secret.hex() not in repr(key)
    assert key.key_id in repr(key)


# -- bad elements and scalars -------------------------------------------------------------


def _non_canonical() -> list[bytes]:
    p = 2**255 - 19
    return [
        (p).to_bytes(32, "little"),  # the field modulus itself: not reduced
        (p + 2).to_bytes(32, "little"),
        (1).to_bytes(32, "little"),  # odd s ("negative"): never canonical in ristretto255
        bytes(31) + b"\x80",  # the top bit set
        b"\xff" * 32,
    ]


def test_identity_element_is_rejected() -> None:
    with pytest.raises(oprf.InvalidElement, match="identity"):
        oprf.deserialize_element(oprf.IDENTITY)
    with pytest.raises(oprf.InvalidElement):
        oprf.blind_evaluate(_key(), oprf.IDENTITY)
    blinded = oprf.blind(b"x")
    with pytest.raises(oprf.InvalidElement):
        oprf.finalize(b"x", blinded, oprf.IDENTITY)


@pytest.mark.parametrize("element", _non_canonical(), ids=["p", "p+2", "odd", "top-bit", "ff"])
def test_non_canonical_elements_are_rejected(element: bytes) -> None:
    with pytest.raises(oprf.InvalidElement) as err:
        oprf.blind_evaluate(_key(), element)
    assert err.value.reason == "invalid_element"
    assert err.value.status == "INVALID_ARGUMENT"


@pytest.mark.parametrize("element", [b"", bytes(31), bytes(33)])
def test_wrong_length_elements_are_rejected(element: bytes) -> None:
    with pytest.raises(oprf.InvalidElement, match="32 bytes"):
        oprf.deserialize_element(element)


def test_valid_element_with_top_bit_set_is_rejected() -> None:
    # libsodium as bundled by rbcl decodes x | 2^255 as x; RFC 9496 says it is not canonical.
    good = oprf.hash_to_group(b"some input")
    flipped = good[:31] + bytes([good[31] | 0x80])
    assert rbcl.crypto_core_ristretto255_is_valid_point(flipped)  # why the check is ours
    with pytest.raises(oprf.InvalidElement, match="canonical"):
        oprf.blind_evaluate(_key(), flipped)
    assert oprf.deserialize_element(good) == good


def test_batch_with_one_bad_element_is_refused_whole() -> None:
    good = oprf.blind(b"a").blinded_element
    with pytest.raises(oprf.InvalidElement):
        oprf.blind_evaluate_batch(_key(), [good, oprf.IDENTITY])


def test_finalize_batch_needs_one_answer_per_input() -> None:
    blinded = oprf.blind_batch([b"a", b"b"])
    with pytest.raises(oprf.OprfError):
        oprf.finalize_batch([b"a", b"b"], blinded, [b.blinded_element for b in blinded[:1]])


@pytest.mark.parametrize(
    "scalar",
    [bytes(32), oprf.GROUP_ORDER.to_bytes(32, "little"), b"\xff" * 32, bytes(31)],
    ids=["zero", "order", "ff", "short"],
)
def test_bad_scalars_are_rejected(scalar: bytes) -> None:
    with pytest.raises(oprf.OprfError):
        oprf.OprfKey.from_secret(scalar)
    with pytest.raises(oprf.OprfError):
        oprf.blind(b"x", blind_scalar=scalar)


def test_oversized_input_is_rejected() -> None:
    with pytest.raises(oprf.OprfError, match="65535"):
        oprf.evaluate(_key(), bytes(70_000))


def test_derive_key_pair_needs_a_32_byte_seed() -> None:
    with pytest.raises(oprf.OprfError):
        oprf.derive_key_pair(bytes(16), b"")
