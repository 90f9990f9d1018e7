"""Signed protobuf documents: the one way to sign, verify, parse and store them.

A signed document is a DSSE envelope whose payload is one protobuf message and
whose payload type is that message's full name (``rcf.v1.Directory``). The
directory, the data dictionary, endpoint updates, and every federation request
and response travel this way. Verification works on the received bytes and the
message is parsed only after every signature holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from google.protobuf.message import DecodeError, Message

from rcf.protos.v1 import envelope_pb2
from rcf.trust.dsse import Envelope, sign_envelope, verify_envelope, verify_pinned
from rcf.trust.errors import RcfError, VerificationError
from rcf.trust.files import write_private
from rcf.trust.keys import SigningKey

M = TypeVar("M", bound=Message)
KeyResolver = Callable[[str], bytes]


def payload_type(message_cls: type[Message]) -> str:
    """The payload type of a document of this class: its protobuf full name."""
    return str(message_cls.DESCRIPTOR.full_name)


def sign_document(message: Message, signers: Sequence[SigningKey]) -> Envelope:
    """Sign the deterministic serialisation of message with every signer."""
    return sign_envelope(
        payload_type=payload_type(type(message)),
        payload=message.SerializeToString(deterministic=True),
        signers=signers,
    )


@dataclass(frozen=True)
class Opened(Generic[M]):
    """A verified, parsed document with the key ids that signed it."""

    message: M
    envelope: Envelope
    key_ids: tuple[str, ...]


def open_document(
    envelope: Envelope,
    message_cls: type[M],
    *,
    what: str,
    resolve_key: KeyResolver | None = None,
    pinned_key: bytes | None = None,
    pinned_signer: str = "the hub key",
    error: type[RcfError] = VerificationError,
    bad_signature_reason: str | None = None,
) -> Opened[M]:
    """Verify envelope (with resolve_key, or against one pinned key) then parse it.

    Failures raise ``error`` with one sentence naming ``what`` (e.g. "directory");
    the reason code of a failed signature is kept unless bad_signature_reason
    replaces it.
    """
    try:
        if pinned_key is not None:
            verified = verify_pinned(
                envelope=envelope,
                expected_type=payload_type(message_cls),
                public_key=pinned_key,
                signer=pinned_signer,
            )
        elif resolve_key is not None:
            verified = verify_envelope(
                envelope=envelope,
                expected_type=payload_type(message_cls),
                resolve_key=resolve_key,
            )
        else:
            raise TypeError("open_document needs resolve_key or pinned_key")
    except VerificationError as exc:
        if error is VerificationError and bad_signature_reason is None:
            raise
        raise error(
            f"The {what}'s signature does not verify: {exc}",
            reason=bad_signature_reason or exc.reason,
            status="UNAUTHENTICATED",
        ) from exc
    message = message_cls()
    try:
        message.ParseFromString(verified.payload)
    except DecodeError as exc:
        raise error(
            f"The signed {what} is malformed.", reason="malformed", status="INVALID_ARGUMENT"
        ) from exc
    return Opened(message=message, envelope=envelope, key_ids=verified.key_ids)


def envelope_from_bytes(
    raw: bytes, *, what: str, error: type[RcfError] = VerificationError
) -> Envelope:
    """Parse serialised Envelope bytes (from a file or the wire) or raise error."""
    msg = envelope_pb2.Envelope()
    try:
        msg.ParseFromString(raw)
    except DecodeError as exc:
        raise error(
            f"The {what} is not a signed envelope.", reason="malformed", status="INVALID_ARGUMENT"
        ) from exc
    return Envelope.from_proto(msg)


def read_envelope(path: Path, *, what: str, error: type[RcfError] = VerificationError) -> Envelope:
    """Read a stored signed document; a missing or damaged file raises error."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"No {what} at {path}: {exc.strerror}.", reason="missing") from exc
    try:
        return envelope_from_bytes(raw, what=what, error=error)
    except RcfError as exc:
        raise error(f"The stored {what} {path} is damaged.", reason="damaged") from exc


def store_envelope(path: Path, envelope: Envelope) -> None:
    """Replace path with the envelope so a crash leaves the old or the new file; mode 0600."""
    write_private(path, envelope.to_proto().SerializeToString())
