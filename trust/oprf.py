"""RFC 9497 OPRF, mode 0x00 (OPRF), suite ristretto255-SHA512, over libsodium through rbcl.

The asker blinds its match keys (``blind``), the responder evaluates the
blinded elements with its secret key (``blind_evaluate``), the asker unblinds
and hashes the answers into tokens (``finalize``). The responder computes the
same tokens for its own records directly with ``evaluate`` (RFC 9497 section
3.3.1, the server's "Evaluate"), which is how it builds its token index.

Everything here follows RFC 9497 section 3 and 4.1 and RFC 9380 (``expand_message_xmd``)
literally; the only primitives are libsodium's ristretto255 operations and
hashlib's SHA-512. Every element that arrives from elsewhere goes through
``deserialize_element``, which rejects non-canonical encodings and the
identity element (RFC 9497 section 2.1, DeserializeElement).

rbcl notes: ``crypto_scalarmult_ristretto255`` does not clamp despite its
docstring (libsodium only clears bit 255, which a reduced scalar never sets),
and it fails when the product is the identity; ``crypto_core_ristretto255_is_valid_point``
accepts the identity, so it is refused here explicitly; and rbcl's bundled
libsodium accepts encodings with bit 255 set (as the element without it), which
RFC 9496 calls non-canonical, so those are refused here too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import rbcl

from rcf.trust.errors import RcfError

MODE_OPRF = 0x00
SUITE_ID = b"ristretto255-SHA512"
CONTEXT_STRING = b"OPRFV1-" + bytes([MODE_OPRF]) + b"-" + SUITE_ID
ELEMENT_BYTES = 32  # Ne
SCALAR_BYTES = 32  # Ns
OUTPUT_BYTES = 64  # Nh
MAX_INPUT_BYTES = 0xFFFF  # inputs are length-prefixed with two bytes
# The order of the ristretto255 group (RFC 9496 section 4.1).
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
IDENTITY = bytes(ELEMENT_BYTES)

_HASH_TO_GROUP_DST = b"HashToGroup-" + CONTEXT_STRING
_HASH_TO_SCALAR_DST = b"HashToScalar-" + CONTEXT_STRING
_DERIVE_KEY_PAIR_DST = b"DeriveKeyPair" + CONTEXT_STRING


class OprfError(RcfError):
    """An OPRF input, element or scalar is unusable (RFC 9497 section 4.2 errors)."""

    default_reason = "oprf_invalid"
    default_status = "INVALID_ARGUMENT"


class InvalidElement(OprfError):
    """A group element is not a canonical ristretto255 encoding, or is the identity."""

    default_reason = "invalid_element"


def _i2osp(value: int, length: int) -> bytes:
    return value.to_bytes(length, "big")


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512 (b_in_bytes 64, s_in_bytes 128)."""
    b_in_bytes, s_in_bytes = 64, 128
    ell = -(-len_in_bytes // b_in_bytes)
    if ell > 255 or len_in_bytes > 65535 or len(dst) > 255:
        raise OprfError("expand_message_xmd was asked for too many bytes or a too long tag.")
    dst_prime = dst + _i2osp(len(dst), 1)
    msg_prime = bytes(s_in_bytes) + msg + _i2osp(len_in_bytes, 2) + b"\x00" + dst_prime
    b0 = hashlib.sha512(msg_prime).digest()
    b = [hashlib.sha512(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, b[-1], strict=True))
        b.append(hashlib.sha512(mixed + _i2osp(i, 1) + dst_prime).digest())
    return b"".join(b)[:len_in_bytes]


def hash_to_group(msg: bytes, dst: bytes = _HASH_TO_GROUP_DST) -> bytes:
    """HashToGroup: hash_to_ristretto255 (RFC 9380 appendix B) with the suite's tag."""
    uniform = expand_message_xmd(msg, dst, 64)
    return bytes(rbcl.crypto_core_ristretto255_from_hash(uniform))


def hash_to_scalar(msg: bytes, dst: bytes = _HASH_TO_SCALAR_DST) -> bytes:
    """HashToScalar: 64 uniform bytes read little-endian, reduced modulo the group order."""
    uniform = expand_message_xmd(msg, dst, 64)
    return bytes(rbcl.crypto_core_ristretto255_scalar_reduce(uniform))


def deserialize_element(data: bytes) -> bytes:
    """The element itself when it is a canonical, non-identity ristretto255 encoding."""
    if not isinstance(data, bytes | bytearray) or len(data) != ELEMENT_BYTES:
        raise InvalidElement("A ristretto255 element must be exactly 32 bytes.")
    data = bytes(data)
    if hmac.compare_digest(data, IDENTITY):
        raise InvalidElement("The identity element is not an acceptable OPRF element.")
    # rbcl's bundled libsodium ignores bit 255 when decoding (it takes x and x | 2^255
    # as the same element); RFC 9496 says such an encoding is not canonical.
    if data[31] & 0x80 or not rbcl.crypto_core_ristretto255_is_valid_point(data):
        raise InvalidElement("The bytes are not a canonical ristretto255 element encoding.")
    return data


def deserialize_scalar(data: bytes) -> bytes:
    """The scalar itself when it is a canonical (reduced), non-zero 32-byte encoding."""
    if not isinstance(data, bytes | bytearray) or len(data) != SCALAR_BYTES:
        raise OprfError("A ristretto255 scalar must be exactly 32 bytes.")
    value = int.from_bytes(data, "little")
    if value == 0 or value >= GROUP_ORDER:
        raise OprfError("The scalar is zero or not reduced modulo the group order.")
    return bytes(data)


def _scalar_mult(scalar: bytes, element: bytes) -> bytes:
    try:
        return bytes(rbcl.crypto_scalarmult_ristretto255(scalar, element))
    except RuntimeError:
        # libsodium refuses an invalid point or an identity product; both mean a bad element.
        raise InvalidElement("The scalar multiplication gave no valid element.") from None


def _check_input(data: bytes) -> bytes:
    if not isinstance(data, bytes | bytearray):
        raise OprfError("An OPRF input must be bytes.")
    if len(data) > MAX_INPUT_BYTES:
        raise OprfError("An OPRF input must be at most 65535 bytes.")
    return bytes(data)


@dataclass(frozen=True, repr=False)
class OprfKey:
    """A node's OPRF secret key skS and its public key pkS (both serialised)."""

    secret: bytes
    public: bytes

    def __repr__(self) -> str:  # never print the secret
        return f"OprfKey(key_id={self.key_id})"

    @property
    def key_id(self) -> str:
        """A short public name for the key: the first 8 bytes of SHA-256(pkS), hex."""
        return hashlib.sha256(self.public).hexdigest()[:16]

    @classmethod
    def from_secret(cls, secret: bytes) -> OprfKey:
        """The key pair of a stored secret scalar (checked to be canonical and non-zero)."""
        sk = deserialize_scalar(secret)
        return cls(sk, bytes(rbcl.crypto_scalarmult_ristretto255_base(sk)))

    @classmethod
    def generate(cls) -> OprfKey:
        """A fresh random key pair (RFC 9497 section 3.2: random scalar); also how to rotate."""
        return derive_key_pair(secrets.token_bytes(32), b"rcf node oprf key")


def derive_key_pair(seed: bytes, info: bytes) -> OprfKey:
    """RFC 9497 section 3.2.1 DeriveKeyPair(seed, info)."""
    if len(seed) != 32:
        raise OprfError("DeriveKeyPair needs a 32-byte seed.")
    if len(info) > 0xFFFF:
        raise OprfError("DeriveKeyPair info must be at most 65535 bytes.")
    derive_input = seed + _i2osp(len(info), 2) + info
    for counter in range(256):
        sk = hash_to_scalar(derive_input + _i2osp(counter, 1), _DERIVE_KEY_PAIR_DST)
        if int.from_bytes(sk, "little") != 0:
            return OprfKey.from_secret(sk)
    raise OprfError("DeriveKeyPair found no non-zero scalar.", reason="derive_key_pair_error")


def random_scalar() -> bytes:
    """A uniformly random non-zero scalar (RFC 9497 RandomScalar)."""
    while True:
        s = bytes(rbcl.crypto_core_ristretto255_scalar_random())
        if int.from_bytes(s, "little") != 0:
            return s


@dataclass(frozen=True, repr=False)
class Blinded:
    """The asker's state for one input: the blind (kept) and the blinded element (sent)."""

    blind: bytes
    blinded_element: bytes

    def __repr__(self) -> str:
        return "Blinded(…)"


def blind(data: bytes, *, blind_scalar: bytes | None = None) -> Blinded:
    """Blind(input); ``blind_scalar`` is for test vectors only (random otherwise)."""
    data = _check_input(data)
    r = random_scalar() if blind_scalar is None else deserialize_scalar(blind_scalar)
    element = hash_to_group(data)
    if hmac.compare_digest(element, IDENTITY):
        raise OprfError("The input maps to the identity element.", reason="invalid_input")
    return Blinded(r, _scalar_mult(r, element))


def blind_evaluate(key: OprfKey, blinded_element: bytes) -> bytes:
    """BlindEvaluate(skS, blindedElement): the evaluated element, after checking the input."""
    return _scalar_mult(key.secret, deserialize_element(blinded_element))


def _finalize_hash(data: bytes, unblinded: bytes) -> bytes:
    return hashlib.sha512(
        _i2osp(len(data), 2) + data + _i2osp(len(unblinded), 2) + unblinded + b"Finalize"
    ).digest()


def finalize(data: bytes, blinded: Blinded, evaluated_element: bytes) -> bytes:
    """Finalize(input, blind, evaluatedElement): the 64-byte OPRF output."""
    data = _check_input(data)
    element = deserialize_element(evaluated_element)
    inverse = bytes(rbcl.crypto_core_ristretto255_scalar_invert(blinded.blind))
    return _finalize_hash(data, _scalar_mult(inverse, element))


def evaluate(key: OprfKey, data: bytes) -> bytes:
    """The server's own Evaluate(skS, input): the output without blinding (RFC 9497 3.3.1)."""
    data = _check_input(data)
    element = hash_to_group(data)
    if hmac.compare_digest(element, IDENTITY):
        raise OprfError("The input maps to the identity element.", reason="invalid_input")
    return _finalize_hash(data, _scalar_mult(key.secret, element))


# -- batches: checks come as manifests of many keys ---------------------------------------


def blind_batch(inputs: Sequence[bytes]) -> list[Blinded]:
    """Blind each input with its own fresh blind."""
    return [blind(x) for x in inputs]


def blind_evaluate_batch(key: OprfKey, blinded_elements: Sequence[bytes]) -> list[bytes]:
    """BlindEvaluate each element; one invalid element refuses the whole batch."""
    return [blind_evaluate(key, e) for e in blinded_elements]


def finalize_batch(
    inputs: Sequence[bytes], blinded: Sequence[Blinded], evaluated: Sequence[bytes]
) -> list[bytes]:
    """Finalize each (input, blind, evaluated element) triple, in order."""
    if not len(inputs) == len(blinded) == len(evaluated):
        raise OprfError("The batch answer does not have one element per input.")
    return [finalize(x, b, e) for x, b, e in zip(inputs, blinded, evaluated, strict=True)]


def evaluate_batch(key: OprfKey, inputs: Sequence[bytes]) -> list[bytes]:
    """The server's Evaluate for each input, in order."""
    return [evaluate(key, x) for x in inputs]


def blind_inverse(blinded: Blinded) -> bytes:
    """The inverse of blinded's blind scalar: computed once, it finalises the answers of
    every responder the same blinded element went to."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_invert(blinded.blind))


def finalize_with_inverse(data: bytes, inverse: bytes, evaluated_element: bytes) -> bytes:
    """Finalize with a precomputed ``blind_inverse``: the same output as ``finalize``."""
    data = _check_input(data)
    element = deserialize_element(evaluated_element)
    return _finalize_hash(data, _scalar_mult(inverse, element))
