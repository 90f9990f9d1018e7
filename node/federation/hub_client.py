"""The node's calls to the hub: enrol, fetch the directory, publish its endpoint."""

from __future__ import annotations

import grpc

from rcf.protos.v1 import hub_pb2, hub_pb2_grpc
from rcf.trust import pki
from rcf.trust.clock import now_ms
from rcf.trust.dsse import Envelope
from rcf.trust.errors import PeerError
from rcf.trust.keys import SigningKey
from rcf.trust.signed import sign_document
from rcf.trust.status import read_refusal, transport_failure
from rcf.trust.tls import TlsMaterial, channel_options, secure_channel

HUB_MAX_BYTES = 8 * 1024 * 1024


def hub_error(exc: grpc.RpcError) -> PeerError:
    """A failed hub call as a PeerError with a reason code."""
    refusal = read_refusal(exc)
    if refusal.code == grpc.StatusCode.UNAVAILABLE and not refusal.reason:
        return PeerError(
            f"The hub is unreachable ({transport_failure(refusal.message)}); try again later.",
            reason="hub_unreachable",
        )
    if refusal.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return PeerError("The hub did not answer in time.", reason="hub_timeout")
    # A refusal is final (a used or expired token, an unknown member): not "try later".
    return PeerError(
        f"The hub refused: {refusal.message}",
        reason=refusal.reason or "hub_refused",
        status=refusal.code.name,
    )


def enroll_over_wire(
    *,
    enroll_address: str,
    ca_pem: bytes,
    secret: str,
    member_id: str,
    csr_pem: bytes,
    signing_public_key: bytes,
    timeout_s: float = 10.0,
) -> hub_pb2.EnrollResponse:
    """Enrol on the hub's server-authenticated port; we have no client certificate yet."""
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    options = channel_options(server_name=pki.HUB_NAME, max_message_bytes=HUB_MAX_BYTES)
    with grpc.secure_channel(enroll_address, creds, options=options) as channel:
        stub = hub_pb2_grpc.HubStub(channel)
        try:
            return stub.Enroll(
                hub_pb2.EnrollRequest(
                    join_token=secret,
                    member_id=member_id,
                    csr_pem=csr_pem,
                    signing_public_key=signing_public_key,
                ),
                timeout=timeout_s,
            )
        except grpc.RpcError as exc:
            raise hub_error(exc) from exc


class HubClient:
    """A long-lived mutual-TLS channel to the hub."""

    def __init__(self, *, address: str, tls: TlsMaterial) -> None:
        self._channel = secure_channel(
            target=address, tls=tls, server_name=pki.HUB_NAME, max_message_bytes=HUB_MAX_BYTES
        )
        self._stub = hub_pb2_grpc.HubStub(self._channel)

    @property
    def channel(self) -> grpc.Channel:
        """The mutual-TLS channel, for the hub's other services (the audit log)."""
        return self._channel

    def get_directory(
        self, *, have_serial: int, timeout_s: float = 10.0, wait_for_ready: bool = False
    ) -> Envelope:
        """The hub's current signed directory; wait_for_ready rides through a reconnect."""
        try:
            reply = self._stub.GetDirectory(
                hub_pb2.GetDirectoryRequest(have_serial=have_serial),
                timeout=timeout_s,
                wait_for_ready=wait_for_ready,
            )
        except grpc.RpcError as exc:
            raise hub_error(exc) from exc
        return Envelope.from_proto(reply)

    def get_dictionary(self, *, version: str = "", timeout_s: float = 10.0) -> Envelope:
        """The hub's signed data dictionary of version (the latest if empty)."""
        try:
            reply = self._stub.GetDictionary(
                hub_pb2.GetDictionaryRequest(version=version), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            raise hub_error(exc) from exc
        return Envelope.from_proto(reply)

    def update_endpoint(
        self,
        *,
        member_id: str,
        endpoint: str,
        key: SigningKey,
        timeout_s: float = 10.0,
        wait_for_ready: bool = False,
    ) -> Envelope:
        update = hub_pb2.EndpointUpdate(
            member_id=member_id, endpoint=endpoint, issued_at_ms=now_ms()
        )
        signed = sign_document(update, [key])
        try:
            reply = self._stub.UpdateEndpoint(
                signed.to_proto(), timeout=timeout_s, wait_for_ready=wait_for_ready
            )
        except grpc.RpcError as exc:
            raise hub_error(exc) from exc
        return Envelope.from_proto(reply)

    def close(self) -> None:
        self._channel.close()
