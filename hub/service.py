"""gRPC adapter for the hub: translates protobuf to Registry calls and back."""

from __future__ import annotations

import threading
from collections import deque

import grpc

from rcf.hub.registry import Registry
from rcf.protos.v1 import envelope_pb2, hub_pb2, hub_pb2_grpc
from rcf.trust import pki
from rcf.trust.clock import now_ms
from rcf.trust.directory import Directory, MemberStatus
from rcf.trust.dsse import Envelope
from rcf.trust.errors import RegistryError, RequestRejected
from rcf.trust.keys import SigningKey
from rcf.trust.serving import refusals_as_status
from rcf.trust.signed import open_document
from rcf.trust.tls import peer_certificate_pem

ENDPOINT_UPDATE_MAX_AGE_MS = 5 * 60 * 1000
# A node publishes its endpoint when it starts; a few restarts a minute is plenty.
ENDPOINT_UPDATES_PER_WINDOW = 6
ENDPOINT_UPDATE_WINDOW_MS = 60 * 1000


class RateLimit:
    """At most limit calls per key in any window_ms; keys are enrolled members (bounded)."""

    def __init__(self, limit: int, window_ms: int) -> None:
        self._limit = limit
        self._window = window_ms
        self._calls: dict[str, deque[int]] = {}

    def allow(self, key: str, at_ms: int) -> bool:
        calls = self._calls.setdefault(key, deque())
        while calls and calls[0] <= at_ms - self._window:
            calls.popleft()
        if len(calls) >= self._limit:
            return False
        calls.append(at_ms)
        return True


class HubServicer(hub_pb2_grpc.HubServicer):
    def __init__(self, registry: Registry, signing_key: SigningKey) -> None:
        self._registry = registry
        self._key = signing_key
        # One SQLite connection serves every worker thread; calls take turns.
        self._lock = threading.Lock()
        self._endpoint_limit = RateLimit(ENDPOINT_UPDATES_PER_WINDOW, ENDPOINT_UPDATE_WINDOW_MS)

    def _peer_member(self, context: grpc.ServicerContext) -> str:
        """The enrolled member behind the caller's client certificate."""
        pem = peer_certificate_pem(context)
        if pem is None:
            raise RequestRejected(
                "This call needs the node's client certificate (use the mutual-TLS port).",
                reason="no_client_certificate",
                status="UNAUTHENTICATED",
            )
        member_id = pki.common_name(pem)
        if self._registry.node_fingerprint(member_id) != pki.fingerprint(pem):
            raise RequestRejected(
                f"The client certificate is not the one enrolled for {member_id}.",
                reason="tls_cert_not_enrolled",
            )
        return member_id

    def peer_member(self, context: grpc.ServicerContext) -> str:
        """The enrolled member behind the caller's client certificate (for other services)."""
        with self._lock:
            return self._peer_member(context)

    def snapshot(self) -> Directory:
        """The registry's current members and keys, read under the registry lock."""
        with self._lock:
            return self._registry.snapshot()

    @refusals_as_status
    def Enroll(
        self, request: hub_pb2.EnrollRequest, context: grpc.ServicerContext
    ) -> hub_pb2.EnrollResponse:
        with self._lock:
            result = self._registry.enroll_with_token(
                secret=request.join_token,
                member_id=request.member_id,
                csr_pem=request.csr_pem,
                signing_public_key=request.signing_public_key,
            )
        return hub_pb2.EnrollResponse(
            certificate_pem=result.certificate_pem,
            ca_certificate_pem=result.ca_certificate_pem,
            directory=result.directory.to_proto(),
        )

    @refusals_as_status
    def GetDirectory(
        self, request: hub_pb2.GetDirectoryRequest, context: grpc.ServicerContext
    ) -> envelope_pb2.Envelope:
        with self._lock:
            self._peer_member(context)
            return self._registry.current_directory().to_proto()

    @refusals_as_status
    def GetDictionary(
        self, request: hub_pb2.GetDictionaryRequest, context: grpc.ServicerContext
    ) -> envelope_pb2.Envelope:
        with self._lock:
            self._peer_member(context)
            return self._registry.signed_dictionary(request.version).to_proto()

    @refusals_as_status
    def UpdateEndpoint(
        self, request: envelope_pb2.Envelope, context: grpc.ServicerContext
    ) -> envelope_pb2.Envelope:
        with self._lock:
            member_id = self._peer_member(context)
            if not self._endpoint_limit.allow(member_id, now_ms()):
                raise RequestRejected(
                    f"Too many endpoint updates from {member_id}; try again in a minute.",
                    reason="rate_limited",
                    status="RESOURCE_EXHAUSTED",
                )
            snapshot = self._registry.snapshot()
            member = snapshot.member(member_id)
            if member is None or member.status is MemberStatus.REVOKED:
                raise RequestRejected(f"Member {member_id} may not publish an endpoint.")
            update = open_document(
                Envelope.from_proto(request),
                hub_pb2.EndpointUpdate,
                what="endpoint update",
                resolve_key=snapshot.key_resolver(at_ms=now_ms(), member_id=member_id),
                error=RegistryError,
            ).message
            if update.member_id != member_id:
                raise RequestRejected("An endpoint update must come from its own member.")
            if abs(now_ms() - update.issued_at_ms) > ENDPOINT_UPDATE_MAX_AGE_MS:
                raise RequestRejected("The endpoint update is stale.", reason="request_expired")
            return self._registry.update_endpoint(member_id, update.endpoint).to_proto()
