"""The one request pipeline every federation query passes through.

verify the envelope against the directory → the TLS peer must be the signer's
member → member active, request inside its time window, nonce never seen →
the sharing policy decides (node.policy, default deny) → handle → sign the
response, binding the request digest → audit. A refusal at any step is audited too, then raised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

import structlog
from google.protobuf.message import DecodeError

from node.audit import AuditEvent, AuditLog
from node.directory_cache import DirectoryCache
from node.policy.admin import PolicyGate
from node.policy.model import Decision, QueryDescription
from node.replay import ReplayGuard
from protos.rcf.v1 import envelope_pb2
from trust import pki
from trust.clock import now_ms
from trust.directory import Member, MemberStatus
from trust.dsse import Envelope, sign_envelope, verify_envelope
from trust.errors import RcfError, RequestRejected
from trust.keys import SigningKey

log = structlog.get_logger("rcf.node")

MIN_NONCE_BYTES = 16


class HasRequestHeader(Protocol):
    @property
    def header(self) -> envelope_pb2.RequestHeader: ...

    def ParseFromString(self, serialized: bytes, /) -> int: ...


class HasResponseHeader(Protocol):
    @property
    def header(self) -> envelope_pb2.ResponseHeader: ...

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


Req = TypeVar("Req", bound=HasRequestHeader)
Resp = TypeVar("Resp", bound=HasResponseHeader)


@dataclass(frozen=True)
class QuerySpec(Generic[Req, Resp]):
    """How one query type travels: its name, message classes and payload types."""

    query_type: str
    request_cls: Callable[[], Req]
    response_cls: Callable[[], Resp]
    # What the policy needs to know about a request (dataset, group-by …); the
    # header's purpose is added by the pipeline. None: the query type alone.
    describe: Callable[[Req], QueryDescription] | None = None

    def description(self, request: Req, purpose: str) -> QueryDescription:
        query = self.describe(request) if self.describe else QueryDescription(self.query_type)
        return replace(query, query_type=self.query_type, purpose=purpose)

    @property
    def request_type(self) -> str:
        return _full_name(self.request_cls)

    @property
    def response_type(self) -> str:
        return _full_name(self.response_cls)


def _full_name(cls: object) -> str:
    descriptor = getattr(cls, "DESCRIPTOR", None)
    return str(descriptor.full_name) if descriptor is not None else str(cls)


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int
    max_clock_skew_ms: int
    max_request_ttl_ms: int


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_active(member: Member) -> None:
    if member.status is not MemberStatus.ACTIVE:
        raise RequestRejected(
            f"Member {member.member_id} is {member.status.label} in the network directory.",
            reason=f"member_{member.status.label}",
        )


class Pipeline:
    def __init__(
        self,
        *,
        member_id: str,
        signing_key: SigningKey,
        directory: DirectoryCache,
        replay: ReplayGuard,
        audit: AuditLog,
        policy: PolicyGate,
        limits: Limits,
    ) -> None:
        self.member_id = member_id
        self._key = signing_key
        self._directory = directory
        self._replay = replay
        self._audit = audit
        self._policy = policy
        self._limits = limits

    def run(
        self,
        spec: QuerySpec[Req, Resp],
        envelope_msg: envelope_pb2.Envelope,
        peer_cert_pem: bytes | None,
        handler: Callable[[Req, Member, Decision], Resp],
    ) -> envelope_pb2.Envelope:
        """Decide, answer and audit one request; raise RcfError (audited) to refuse."""
        request_digest = sha256_hex(envelope_msg.payload)
        seen = _Seen(query_type=spec.query_type, request_sha256=request_digest)
        try:
            response = self._decide_and_answer(spec, envelope_msg, peer_cert_pem, handler, seen)
        except RcfError as exc:
            self._audit.append(seen.event(self.member_id, "refused", exc.reason, ""))
            log.info(
                "request_refused",
                query_id=seen.query_id,
                query_type=spec.query_type,
                requester=seen.requester,
                reason=exc.reason,
            )
            raise
        self._audit.append(
            seen.event(self.member_id, "answered", "ok", sha256_hex(response.payload))
        )
        return response

    def _decide_and_answer(
        self,
        spec: QuerySpec[Req, Resp],
        envelope_msg: envelope_pb2.Envelope,
        peer_cert_pem: bytes | None,
        handler: Callable[[Req, Member, Decision], Resp],
        seen: _Seen,
    ) -> envelope_pb2.Envelope:
        now = now_ms()
        if envelope_msg.ByteSize() > self._limits.max_message_bytes:
            raise RequestRejected(
                f"The request is larger than this node accepts ({self._limits.max_message_bytes} "
                "bytes).",
                reason="message_too_large",
                status="RESOURCE_EXHAUSTED",
            )
        if peer_cert_pem is None:
            raise RequestRejected(
                "No client certificate.", reason="no_client_certificate", status="UNAUTHENTICATED"
            )
        peer_member, peer_fingerprint = pki.peer_identity(peer_cert_pem)
        seen.requester = peer_member
        directory = self._directory.current()

        envelope = Envelope.from_proto(envelope_msg)
        verified = verify_envelope(
            envelope=envelope,
            expected_type=spec.request_type,
            resolve_key=directory.key_resolver(at_ms=now),
        )
        signers = {directory.signing_key(k)[0].member_id for k in verified.key_ids}  # type: ignore[index]
        if signers != {peer_member}:
            raise RequestRejected(
                f"The request is signed by {', '.join(sorted(signers))} but the TLS peer is "
                f"{peer_member}.",
                reason="signer_peer_mismatch",
            )
        requester = directory.member(peer_member)
        assert requester is not None  # it owns a listed key
        if not any(n.tls_cert_sha256 == peer_fingerprint for n in requester.nodes):
            raise RequestRejected(
                f"The TLS certificate is not the one enrolled for {peer_member}.",
                reason="tls_cert_not_enrolled",
            )
        # Parsed once verified, before the remaining checks, so that every refusal
        # from here on is audited under the requester's query id.
        request = spec.request_cls()
        try:
            request.ParseFromString(verified.payload)
        except DecodeError as exc:
            raise RequestRejected(
                "The signed request is malformed.", reason="malformed", status="INVALID_ARGUMENT"
            ) from exc
        header = request.header
        seen.query_id, seen.purpose = header.query_id, header.purpose
        check_active(requester)
        self._check_header(header, requester=peer_member, now=now)
        self._replay.remember(peer_member, header.nonce, header.expires_at_ms)
        decision = self._policy.check(requester, spec.description(request, header.purpose))

        response = handler(request, requester, decision)
        response.header.query_id = header.query_id
        response.header.responder = self.member_id
        response.header.requester = peer_member
        response.header.request_sha256 = bytes.fromhex(seen.request_sha256)
        response.header.issued_at_ms = now_ms()
        return sign_envelope(
            payload_type=spec.response_type,
            payload=response.SerializeToString(deterministic=True),
            signers=[self._key],
        ).to_proto()

    def _check_header(
        self, header: envelope_pb2.RequestHeader, *, requester: str, now: int
    ) -> None:
        if header.requester != requester:
            raise RequestRejected(
                f"The request names {header.requester or 'nobody'} as requester but is signed by "
                f"{requester}.",
                reason="requester_mismatch",
            )
        if header.responder != self.member_id:
            raise RequestRejected(
                f"The request is addressed to {header.responder or 'nobody'}, "
                f"not {self.member_id}.",
                reason="wrong_responder",
                status="INVALID_ARGUMENT",
            )
        if not header.query_id:
            raise RequestRejected(
                "The request has no query id.", reason="malformed", status="INVALID_ARGUMENT"
            )
        if len(header.nonce) < MIN_NONCE_BYTES:
            raise RequestRejected(
                f"The request nonce must be at least {MIN_NONCE_BYTES} bytes.",
                reason="malformed",
                status="INVALID_ARGUMENT",
            )
        if header.issued_at_ms > now + self._limits.max_clock_skew_ms:
            raise RequestRejected(
                "The request is dated in the future; check the requester's clock.",
                reason="request_from_future",
                status="FAILED_PRECONDITION",
            )
        if header.expires_at_ms <= now:
            raise RequestRejected(
                "The request has expired.", reason="request_expired", status="FAILED_PRECONDITION"
            )
        if header.expires_at_ms - header.issued_at_ms > self._limits.max_request_ttl_ms:
            raise RequestRejected(
                "The request's validity window is longer than this node accepts.",
                reason="request_window_too_long",
                status="INVALID_ARGUMENT",
            )


class _Seen:
    """What the pipeline has learnt about a request so far, for its audit record."""

    def __init__(self, *, query_type: str, request_sha256: str) -> None:
        self.query_type = query_type
        self.request_sha256 = request_sha256
        self.query_id = ""
        self.purpose = ""
        self.requester = ""

    def event(self, responder: str, decision: str, reason: str, response_sha256: str) -> AuditEvent:
        return AuditEvent(
            query_id=self.query_id,
            query_type=self.query_type,
            purpose=self.purpose,
            requester=self.requester,
            responder=responder,
            side="responder",
            decision=decision,
            reason=reason,
            request_sha256=self.request_sha256,
            response_sha256=response_sha256,
        )
