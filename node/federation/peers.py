"""Calling peers: build and sign a request, send it over mutual TLS, verify the answer.

The answer must be signed by a current key of the member we asked, bind the
SHA-256 of our request payload and repeat our query id; anything else is a
PeerError. The requester side audits every call too.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic

import grpc

from rcf.node.audit.chain import AuditLog
from rcf.node.federation.directory_cache import DirectoryCache
from rcf.node.federation.pipeline import STALE_DIRECTORY_REASONS, check_active, sha256_hex
from rcf.node.federation.protocol import QuerySpec, Req, Resp
from rcf.protos.v1 import envelope_pb2
from rcf.trust import pki
from rcf.trust.audit_record import AuditEvent
from rcf.trust.clock import now_ms
from rcf.trust.dsse import Envelope, sign_envelope
from rcf.trust.errors import PeerError, RcfError
from rcf.trust.keys import SigningKey
from rcf.trust.signed import open_document
from rcf.trust.status import read_refusal
from rcf.trust.tls import TlsMaterial, secure_channel

# How long to give a peer that refused us for a stale directory to fetch a new one.
PEER_CATCH_UP_S = 0.5


@dataclass(frozen=True)
class _Outgoing:
    envelope: envelope_pb2.Envelope
    channel: grpc.Channel
    query_id: str
    digest: bytes


@dataclass(frozen=True)
class PeerAnswer(Generic[Resp]):
    response: Resp
    query_id: str
    latency_ms: float
    signer_member: str
    signer_key_id: str


class PeerClient:
    def __init__(
        self,
        *,
        member_id: str,
        signing_key: SigningKey,
        tls: TlsMaterial,
        directory: DirectoryCache,
        audit: AuditLog,
        request_ttl_ms: int,
        max_message_bytes: int,
    ) -> None:
        self.member_id = member_id
        self._key = signing_key
        self._tls = tls
        self._directory = directory
        self._audit = audit
        self._ttl_ms = request_ttl_ms
        self._max_bytes = max_message_bytes
        self._lock = threading.Lock()
        self._channels: dict[tuple[str, str], grpc.Channel] = {}
        self._inflight = 0
        # Set by the node: fetch the newest directory now (rate-limited); called when
        # a failure suggests that this side or the peer has not caught up yet.
        self.refresh_directory: Callable[[], None] | None = None
        # Set by the node: (query type, responder, outcome) of every finished call.
        self.observe: Callable[[str, str, str], None] | None = None

    @property
    def inflight(self) -> int:
        """Calls sent and not yet audited: how many audit writes may come soon."""
        return self._inflight

    def _count(self, delta: int) -> None:
        with self._lock:
            self._inflight += delta

    def _channel(self, member_id: str, endpoint: str) -> grpc.Channel:
        with self._lock:
            key = (member_id, endpoint)
            channel = self._channels.get(key)
            if channel is None:
                channel = secure_channel(
                    target=endpoint,
                    tls=self._tls,
                    server_name=pki.node_server_name(member_id),
                    max_message_bytes=self._max_bytes * 2,
                )
                self._channels[key] = channel
            return channel

    def prune(self) -> int:
        """Close channels to endpoints the current directory no longer lists; return how many."""
        directory = self._directory.peek()
        listed = {
            (m.member_id, n.endpoint) for m in directory.members for n in m.nodes if n.endpoint
        }
        with self._lock:
            stale = [key for key in self._channels if key not in listed]
            closing = [self._channels.pop(key) for key in stale]
        for channel in closing:
            channel.close()
        return len(closing)

    @property
    def open_channels(self) -> int:
        with self._lock:
            return len(self._channels)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()

    def _prepare(
        self,
        spec: QuerySpec[Req, Resp],
        responder: str,
        purpose: str,
        fill: Callable[[Req], None],
    ) -> _Outgoing:
        """Build, sign and describe one request to responder."""
        directory = self._directory.current()
        member = directory.member(responder)
        if member is None:
            raise PeerError(
                f"{responder} is not a member of this network.", reason="unknown_member"
            )
        check_active(member)
        endpoints = [n.endpoint for n in member.nodes if n.endpoint]
        if not endpoints:
            raise PeerError(
                f"{responder} has no node endpoint in the directory yet.", reason="no_endpoint"
            )
        request = spec.request_cls()
        now = now_ms()
        h = request.header
        h.query_id = str(uuid.uuid4())
        h.requester = self.member_id
        h.responder = responder
        h.purpose = purpose
        h.issued_at_ms = now
        h.expires_at_ms = now + self._ttl_ms
        h.nonce = secrets.token_bytes(16)
        fill(request)
        payload = request.SerializeToString(deterministic=True)
        envelope = sign_envelope(
            payload_type=spec.request_type, payload=payload, signers=[self._key]
        )
        return _Outgoing(
            envelope=envelope.to_proto(),
            channel=self._channel(responder, endpoints[0]),
            query_id=h.query_id,
            digest=hashlib.sha256(payload).digest(),
        )

    def _audit_call(
        self,
        spec: QuerySpec[Req, Resp],
        out: _Outgoing,
        responder: str,
        purpose: str,
        decision: str,
        reason: str,
        response_sha256: str = "",
    ) -> None:
        if self.observe is not None and decision != "streaming":
            self.observe(spec.name, responder, "answered" if decision == "answered" else reason)
        self._audit.append(
            AuditEvent(
                query_id=out.query_id,
                query_type=spec.name,
                purpose=purpose,
                requester=self.member_id,
                responder=responder,
                side="requester",
                decision=decision,
                reason=reason,
                request_sha256=out.digest.hex(),
                response_sha256=response_sha256,
            )
        )

    def call(
        self,
        spec: QuerySpec[Req, Resp],
        *,
        responder: str,
        purpose: str,
        fill: Callable[[Req], None],
        timeout_s: float,
    ) -> PeerAnswer[Resp]:
        """Send one signed query to responder and return its verified answer.

        A failure that a stale directory explains (the peer unknown here, its endpoint
        moved, or the peer not knowing our key yet) is retried once after this node
        fetched the newest directory, or after the peer had a moment to fetch its own.
        """
        try:
            return self._call_once(spec, responder, purpose, fill, timeout_s)
        except PeerError as exc:
            if not self._caught_up_after(exc, responder):
                raise
        return self._call_once(spec, responder, purpose, fill, timeout_s)

    def _call_once(
        self,
        spec: QuerySpec[Req, Resp],
        responder: str,
        purpose: str,
        fill: Callable[[Req], None],
        timeout_s: float,
    ) -> PeerAnswer[Resp]:
        out = self._prepare(spec, responder, purpose, fill)
        self._count(1)
        try:
            return self._call(spec, out, responder, purpose, timeout_s)
        finally:
            self._count(-1)

    def _caught_up_after(self, error: PeerError, responder: str) -> bool:
        """Whether a retry may now succeed; rewords error when the peer is behind."""
        ours = self._directory.peek().serial
        theirs = error.metadata.get("directory_serial", "")
        if error.reason.removeprefix("refused:") in STALE_DIRECTORY_REASONS and theirs.isdigit():
            if int(theirs) < ours:
                # The peer refused because it has not seen our key or certificate yet;
                # refusing made it fetch the newest directory. Give it a moment.
                time.sleep(PEER_CATCH_UP_S)
                error.message = (
                    f"{responder} does not know this node's current key or certificate yet: "
                    f"its directory (serial {theirs}) is older than ours (serial {ours}); it "
                    "fetches the newest one at once and at every refresh (each minute by "
                    "default), so try again shortly."
                )
                error.args = (error.message,)
                return True
        elif error.reason not in ("unknown_member", "no_endpoint", "unreachable"):
            return False
        if self.refresh_directory is None:
            return False
        self.refresh_directory()
        return self._directory.peek().serial != ours

    def _call(
        self,
        spec: QuerySpec[Req, Resp],
        out: _Outgoing,
        responder: str,
        purpose: str,
        timeout_s: float,
    ) -> PeerAnswer[Resp]:
        method = out.channel.unary_unary(
            spec.method,
            request_serializer=envelope_pb2.Envelope.SerializeToString,
            response_deserializer=envelope_pb2.Envelope.FromString,
        )
        started = time.perf_counter()
        try:
            reply: envelope_pb2.Envelope = method(out.envelope, timeout=timeout_s)
            latency_ms = (time.perf_counter() - started) * 1000
            answer = self._verify_answer(
                spec, reply, responder, out.query_id, out.digest, latency_ms
            )
        except grpc.RpcError as exc:
            error = _peer_error(responder, exc)
            self._audit_call(spec, out, responder, purpose, "failed", error.reason)
            raise error from exc
        except RcfError as exc:
            self._audit_call(spec, out, responder, purpose, "failed", exc.reason)
            raise
        self._audit_call(spec, out, responder, purpose, "answered", "ok", sha256_hex(reply.payload))
        return answer

    def stream(
        self,
        spec: QuerySpec[Req, Resp],
        *,
        responder: str,
        purpose: str,
        fill: Callable[[Req], None],
        timeout_s: float | None,
    ) -> Iterator[PeerAnswer[Resp]]:
        """Open a server stream to responder; yield each message once verified.

        Every message must bind our request and carry the next sequence number;
        each is audited as it arrives, like the responder audits it as it leaves.
        """
        if not spec.streaming:
            raise TypeError(f"{spec.name} is not a streaming query type")
        out = self._prepare(spec, responder, purpose, fill)
        method = out.channel.unary_stream(
            spec.method,
            request_serializer=envelope_pb2.Envelope.SerializeToString,
            response_deserializer=envelope_pb2.Envelope.FromString,
        )
        started = time.perf_counter()
        self._audit_call(spec, out, responder, purpose, "streaming", "ok")
        call = method(out.envelope, timeout=timeout_s)
        expected = 0
        try:
            for reply in call:
                latency_ms = (time.perf_counter() - started) * 1000
                answer = self._verify_answer(
                    spec, reply, responder, out.query_id, out.digest, latency_ms
                )
                if answer.response.header.sequence != expected:
                    raise PeerError(
                        f"{responder}'s stream skipped or repeated a message.",
                        reason="bad_answer",
                    )
                expected += 1
                self._audit_call(
                    spec, out, responder, purpose, "answered", "ok", sha256_hex(reply.payload)
                )
                yield answer
        except grpc.RpcError as exc:
            error = _peer_error(responder, exc)
            self._audit_call(spec, out, responder, purpose, "failed", error.reason)
            if error.reason == "unreachable" and self.refresh_directory is not None:
                # Refused or dropped: the peer may have come back elsewhere. The
                # caller's retry then dials the endpoint the newest directory lists.
                self.refresh_directory()
            raise error from exc
        except RcfError as exc:
            self._audit_call(spec, out, responder, purpose, "failed", exc.reason)
            raise
        finally:
            call.cancel()  # type: ignore[no-untyped-call]

    def _verify_answer(
        self,
        spec: QuerySpec[Req, Resp],
        reply: envelope_pb2.Envelope,
        responder: str,
        query_id: str,
        request_digest: bytes,
        latency_ms: float,
    ) -> PeerAnswer[Resp]:
        directory = self._directory.current()
        try:
            opened = open_document(
                Envelope.from_proto(reply),
                spec.response_cls,  # type: ignore[type-var]
                what="answer",
                resolve_key=directory.key_resolver(at_ms=now_ms(), member_id=responder),
            )
        except RcfError as exc:
            raise PeerError(
                f"{responder}'s answer failed verification: {exc}", reason="bad_answer"
            ) from exc
        response: Resp = opened.message
        rh = response.header
        if rh.request_sha256 != request_digest or rh.query_id != query_id:
            raise PeerError(
                f"{responder}'s answer does not answer our request (digest or query id differs).",
                reason="bad_answer",
            )
        if rh.responder != responder or rh.requester != self.member_id:
            raise PeerError(f"{responder}'s answer names the wrong parties.", reason="bad_answer")
        return PeerAnswer(
            response=response,
            query_id=query_id,
            latency_ms=latency_ms,
            signer_member=responder,
            signer_key_id=opened.key_ids[0],
        )


def _peer_error(responder: str, exc: grpc.RpcError) -> PeerError:
    refusal = read_refusal(exc)
    code = refusal.code
    if code == grpc.StatusCode.UNAVAILABLE and not refusal.reason:
        return PeerError(f"{responder} is unreachable ({refusal.message}).", reason="unreachable")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return PeerError(f"{responder} did not answer in time.", reason="timeout")
    return PeerError(
        f"{responder} refused the request ({code.name}): {refusal.message}",
        reason=f"refused:{refusal.reason}" if refusal.reason else "refused",
        status=code.name,
        metadata={k: v for k, v in refusal.metadata.items() if k == "directory_serial"},
    )
