"""The one request pipeline every federation query passes through, in stages.

``authorize`` (size → TLS identity → envelope and signatures over the received
bytes → signer = TLS peer → enrolled certificate → header bounds and purpose →
member status → time window → replay of nonce and query id → field bounds →
sharing policy) → the query type's handler → its ``release`` step (disclosure
control) → ``seal`` (sign, binding the request digest and query id) → audit.

A refusal at any stage is audited, then raised; so is an unexpected failure,
which the requester sees only as ``internal``. A streaming query is authorised
once; every message it sends is released, sealed and audited on its own.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import NoReturn

import structlog

from rcf.node.audit.chain import AuditLog
from rcf.node.federation.directory_cache import DirectoryCache
from rcf.node.federation.protocol import (
    MAX_NONCE_BYTES,
    MIN_NONCE_BYTES,
    Authorized,
    QuerySpec,
    Req,
    Resp,
    valid_purpose_form,
    valid_query_id,
)
from rcf.node.federation.replay import ReplayGuard
from rcf.node.policy.admin import PolicyGate
from rcf.protos.v1 import envelope_pb2
from rcf.trust import pki
from rcf.trust.audit_record import AuditEvent
from rcf.trust.clock import now_ms
from rcf.trust.directory import Member, MemberStatus
from rcf.trust.dsse import sign_envelope
from rcf.trust.errors import RcfError, RequestRejected
from rcf.trust.keys import SigningKey
from rcf.trust.serving import internal_error
from rcf.trust.signed import envelope_from_bytes, open_document

log = structlog.get_logger("rcf.node")

# query type, requester, decision, reason, seconds: for the node's metrics.
Observer = Callable[[str, str, str, str, float], None]

# Refusals that a directory one side has not refreshed yet explains.
STALE_DIRECTORY_REASONS = frozenset(
    {"unknown_key", "key_not_valid", "tls_cert_not_enrolled", "wrong_signer"}
)


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


class _Seen:
    """What the pipeline has learnt about a request so far, for its audit record.

    Only values already checked against their bounds are kept here: nothing a
    requester sends reaches the audit log unchecked.
    """

    __slots__ = ("purpose", "query_id", "query_type", "request_sha256", "requester", "started")

    def __init__(self, *, query_type: str, request_sha256: str) -> None:
        self.started = time.perf_counter()
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
        purposes: Callable[[], Collection[str]],
        on_stale_directory: Callable[[], None] | None = None,
        observe: Observer | None = None,
    ) -> None:
        self.member_id = member_id
        self._key = signing_key
        self._directory = directory
        self._replay = replay
        self._audit = audit
        self._policy = policy
        self._limits = limits
        self._purposes = purposes
        self._on_stale = on_stale_directory
        self._observe = observe
        self._inflight = 0
        self._inflight_lock = threading.Lock()

    @property
    def inflight(self) -> int:
        """Requests between arrival and their audit record: how many audit writes may come."""
        return self._inflight

    def _enter(self) -> None:
        with self._inflight_lock:
            self._inflight += 1

    def _leave(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1

    # -- unary ------------------------------------------------------------

    def run(
        self, spec: QuerySpec[Req, Resp], raw: bytes, peer_cert_pem: bytes | None
    ) -> envelope_pb2.Envelope:
        """Authorize, answer, release, seal and audit one request; raise RcfError to refuse."""
        seen = _Seen(query_type=spec.name, request_sha256="")
        self._enter()
        try:
            try:
                authorized = self.authorize(spec, raw, peer_cert_pem, seen)
                assert spec.answer is not None
                response = spec.release(spec.answer(authorized), authorized)
                sealed = self.seal(spec, authorized, response)
            except Exception as exc:
                self._raise_refused(seen, exc)
            self._audit.append(
                seen.event(self.member_id, "answered", "ok", sha256_hex(sealed.payload))
            )
            self._observed(seen, "answered", "ok")
            return sealed
        finally:
            self._leave()

    # -- server streaming --------------------------------------------------

    def run_stream(
        self, spec: QuerySpec[Req, Resp], raw: bytes, peer_cert_pem: bytes | None
    ) -> Iterator[envelope_pb2.Envelope]:
        """Authorize once (audited as ``streaming``), then release, seal and audit each message."""
        seen = _Seen(query_type=spec.name, request_sha256="")
        self._enter()
        try:
            try:
                authorized = self.authorize(spec, raw, peer_cert_pem, seen)
            except Exception as exc:
                self._raise_refused(seen, exc)
            self._audit.append(seen.event(self.member_id, "streaming", "ok", ""))
            self._observed(seen, "streaming", "ok")
        finally:
            self._leave()
        assert spec.stream is not None
        messages = spec.stream(authorized)
        sequence = 0
        while True:
            try:
                response = next(messages, None)
                if response is None:
                    return
                released = spec.release(response, authorized)
                released.header.sequence = sequence
                sealed = self.seal(spec, authorized, released)
            except Exception as exc:
                self._raise_refused(seen, exc)
            self._audit.append(
                seen.event(self.member_id, "answered", "ok", sha256_hex(sealed.payload))
            )
            sequence += 1
            yield sealed

    # -- stages -------------------------------------------------------------

    def authorize(
        self,
        spec: QuerySpec[Req, Resp],
        raw: bytes,
        peer_cert_pem: bytes | None,
        seen: _Seen | None = None,
    ) -> Authorized[Req]:
        """Every check before a handler may see the request; raise RequestRejected."""
        seen = seen or _Seen(query_type=spec.name, request_sha256="")
        now = now_ms()
        if peer_cert_pem is None:
            raise RequestRejected(
                "No client certificate.", reason="no_client_certificate", status="UNAUTHENTICATED"
            )
        peer_member, peer_fingerprint = pki.peer_identity(peer_cert_pem)
        seen.requester = peer_member
        if len(raw) > self._limits.max_message_bytes:
            raise RequestRejected(
                f"The request is larger than this node accepts ({self._limits.max_message_bytes} "
                "bytes).",
                reason="message_too_large",
                status="RESOURCE_EXHAUSTED",
            )
        envelope = envelope_from_bytes(raw, what="request", error=RequestRejected)
        seen.request_sha256 = sha256_hex(envelope.payload)
        directory = self._directory.current()
        opened = open_document(
            envelope,
            spec.request_cls,  # type: ignore[type-var]
            what="request",
            resolve_key=directory.key_resolver(at_ms=now),
        )
        signers = {directory.signing_key(k)[0].member_id for k in opened.key_ids}  # type: ignore[index]
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
        request: Req = opened.message
        header = request.header
        self._check_identifiers(header, seen)
        check_active(requester)
        self._check_header(header, requester=peer_member, now=now)
        spec.validate(request)
        self._replay.remember(peer_member, header.nonce, header.query_id, header.expires_at_ms)
        decision = self._policy.check(requester, spec.description(request, header.purpose))
        return Authorized(
            request=request,
            requester=requester,
            decision=decision,
            query_id=header.query_id,
            purpose=header.purpose,
            request_sha256=bytes.fromhex(seen.request_sha256),
        )

    def seal(
        self, spec: QuerySpec[Req, Resp], authorized: Authorized[Req], response: Resp
    ) -> envelope_pb2.Envelope:
        """Bind the response to its request and sign it."""
        h = response.header
        h.query_id = authorized.query_id
        h.responder = self.member_id
        h.requester = authorized.requester.member_id
        h.request_sha256 = authorized.request_sha256
        h.issued_at_ms = now_ms()
        return sign_envelope(
            payload_type=spec.response_type,
            payload=response.SerializeToString(deterministic=True),
            signers=[self._key],
        ).to_proto()

    # -- checks -------------------------------------------------------------

    def _check_identifiers(self, header: envelope_pb2.RequestHeader, seen: _Seen) -> None:
        """Query id and purpose, bounded before they are kept anywhere (the audit log too)."""
        if not valid_query_id(header.query_id):
            raise RequestRejected(
                "The request's query id is not a UUID in canonical lower-case form.",
                reason="invalid_query_id",
                status="INVALID_ARGUMENT",
            )
        seen.query_id = header.query_id
        if not valid_purpose_form(header.purpose) or header.purpose not in self._purposes():
            raise RequestRejected(
                "The request's purpose is not one the data dictionary lists.",
                reason="unknown_purpose",
                status="INVALID_ARGUMENT",
            )
        seen.purpose = header.purpose

    def _check_header(
        self, header: envelope_pb2.RequestHeader, *, requester: str, now: int
    ) -> None:
        if header.requester != requester:
            raise RequestRejected(
                f"The request names another requester than its signer {requester}.",
                reason="requester_mismatch",
            )
        if header.responder != self.member_id:
            raise RequestRejected(
                f"The request is addressed to another member than {self.member_id}.",
                reason="wrong_responder",
                status="INVALID_ARGUMENT",
            )
        if not MIN_NONCE_BYTES <= len(header.nonce) <= MAX_NONCE_BYTES:
            raise RequestRejected(
                f"The request nonce must be {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes.",
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

    def _observed(self, seen: _Seen, decision: str, reason: str) -> None:
        if self._observe is not None:
            elapsed = time.perf_counter() - seen.started
            self._observe(seen.query_type, seen.requester, decision, reason, elapsed)

    def _raise_refused(self, seen: _Seen, exc: Exception) -> NoReturn:
        error = self._refused(seen, exc)
        if error is exc:
            raise exc
        raise error from exc

    def _refused(self, seen: _Seen, exc: Exception) -> RcfError:
        """Audit a refusal or failure and return what the requester may see of it."""
        if isinstance(exc, RcfError):
            error, audited = exc, exc.audit_reason
            if exc.reason in STALE_DIRECTORY_REASONS:
                # Perhaps the requester is newer than our directory: say which serial we
                # hold, and fetch the newest one now rather than at the next refresh.
                error.metadata["directory_serial"] = str(self._directory.peek().serial)
                if self._on_stale is not None:
                    self._on_stale()
            log.info(
                "request_refused", query_id=seen.query_id, query_type=seen.query_type,
                requester=seen.requester, reason=audited,
            )  # fmt: skip
            decision = "refused"
        else:
            error, audited, decision = internal_error(), "internal", "failed"
            log.exception(
                "request_failed", query_id=seen.query_id, query_type=seen.query_type,
                requester=seen.requester, error=type(exc).__name__,
            )  # fmt: skip
        self._observed(seen, decision, audited)
        try:
            self._audit.append(seen.event(self.member_id, decision, audited, ""))
        except Exception:
            # The log itself cannot be written (disk full): the request still ends
            # cleanly, and the operator has the log line above and this one.
            log.exception("audit_write_failed", query_id=seen.query_id)
            return internal_error()
        return error
