"""A real network for tests: a hub and nodes on 127.0.0.1, mutual TLS, SQLite files.

Servers run in this process (real gRPC servers on ephemeral ports); the CLI
tests start them as subprocesses instead.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from rcf.hub.layout import HubLayout
from rcf.hub.registry import Registry
from rcf.hub.server import HubServer
from rcf.hub.setup import init_hub, open_registry
from rcf.node.aggregate.registration import QUERY_TYPE as AGGREGATE
from rcf.node.aggregate.responder import AggregateResponder
from rcf.node.alerts.registration import QUERY_TYPE as ALERTS
from rcf.node.alerts.service import AlertService
from rcf.node.alerts.subscriber import AlertSubscriptions
from rcf.node.federation.binding import QueryType
from rcf.node.federation.registry import QUERY_TYPES
from rcf.node.federation.server import NodeServer
from rcf.node.identity.registration import QUERY_TYPE as IDENTITY
from rcf.node.identity.responder import IdentityResponder
from rcf.node.ops.config import NodeLayout
from rcf.node.ops.enrollment import init_with_token
from rcf.protos.v1 import envelope_pb2, federation_pb2, federation_pb2_grpc
from rcf.trust import pki
from rcf.trust.clock import now_ms
from rcf.trust.dsse import sign_envelope
from rcf.trust.join_token import JoinToken
from rcf.trust.keys import SigningKey
from rcf.trust.status import read_refusal
from rcf.trust.tls import TlsMaterial, secure_channel


class NetNode(NodeServer):
    """A node as the tests reach into it: the registered query types' parts by name."""

    @property
    def identity(self) -> IdentityResponder:
        return self.served(IDENTITY)

    @property
    def alerts(self) -> AlertService:
        return self.served(ALERTS).service

    @property
    def alert_subscriptions(self) -> AlertSubscriptions:
        return self.served(ALERTS).subscriptions

    @property
    def aggregates(self) -> AggregateResponder:
        return self.served(AGGREGATE)


def set_node_config(layout: NodeLayout, **values: Any) -> None:
    """Rewrite top-level settings in node.toml (as an operator would by hand)."""
    text = layout.config.read_text()
    for key, value in values.items():
        rendered = f'"{value}"' if isinstance(value, str) else repr(value)
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {rendered}", text, flags=re.M)
        assert n == 1, key
    layout.config.write_text(text)


@dataclass
class Network:
    root: Path
    directory_ttl_s: int = 3600
    # Nodes take in peers' alerts in the background only where a test asks: their
    # subscription attempts would add audit records to tests that count them.
    subscribe_alerts: bool = False
    hub_layout: HubLayout = field(init=False)
    registry: Registry = field(init=False)
    hub: HubServer | None = None
    nodes: dict[str, NetNode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hub_layout = init_hub(
            self.root / "hub", network="test", directory_ttl_s=self.directory_ttl_s
        )
        self.registry = open_registry(self.hub_layout)
        self.hub_address = "127.0.0.1:0"
        self.enroll_address = "127.0.0.1:0"

    # -- hub ------------------------------------------------------------------

    def start_hub(self) -> HubServer:
        hub = HubServer(self.hub_layout)
        hub.start(listen=self.hub_address, enroll_listen=self.enroll_address)
        # A restart keeps the same ports, as a real deployment would.
        self.hub_address, self.enroll_address = hub.address, hub.enroll_address
        self.hub = hub
        return hub

    def stop_hub(self) -> None:
        if self.hub is not None:
            self.hub.stop(grace=0)
            self.hub = None

    # -- nodes ----------------------------------------------------------------

    def layout(self, member_id: str) -> NodeLayout:
        return NodeLayout(self.root / member_id)

    def enroll(
        self,
        member_id: str,
        *,
        groups: tuple[str, ...] = (),
        roles: tuple[str, ...] = (),
        **config: Any,
    ) -> NodeLayout:
        assert self.hub is not None, "start the hub first"
        self.registry.add_member(member_id, name=member_id, groups=groups, roles=roles)
        token = JoinToken(
            secret=self.registry.create_join_token(member_id),
            member_id=member_id,
            hub_address=self.hub.address,
            enroll_address=self.hub.enroll_address,
            ca_pem=self.hub_layout.ca_cert.read_bytes(),
            hub_public_key=self.hub_layout.load_signing_key().public_key,
        )
        layout = init_with_token(
            self.root / member_id, member_id=member_id, token_text=token.encode()
        )
        if config:
            set_node_config(layout, **config)
        return layout

    def start_node(
        self, member_id: str, *, query_types: tuple[QueryType[Any], ...] = QUERY_TYPES
    ) -> NetNode:
        node = NetNode(
            self.layout(member_id),
            query_types=query_types,
            pull_from_peers=self.subscribe_alerts,
        )
        node.start()
        self.nodes[member_id] = node
        return node

    def add_node(self, member_id: str, **kwargs: Any) -> NetNode:
        self.enroll(member_id, **kwargs)
        return self.start_node(member_id)

    def stop_node(self, member_id: str) -> None:
        self.nodes.pop(member_id).stop(grace=0)

    def refresh_all(self) -> None:
        for node in self.nodes.values():
            node.refresh_directory()

    def close(self) -> None:
        for member_id in list(self.nodes):
            self.stop_node(member_id)
        self.stop_hub()
        self.registry.close()

    def client(self, member_id: str) -> RawClient:
        return RawClient(self.layout(member_id))


def enrolled_folder(root: Path, member_id: str) -> Path:
    """A node folder enrolled with a hub under root, hub stopped: for CLI tests."""
    net = Network(root)
    try:
        net.start_hub()
        net.enroll(member_id)
    finally:
        net.close()
    return root / member_id


def reason_of(exc: BaseException) -> str:
    """The reason code a refused call carries in its ErrorInfo ("" if none)."""
    assert isinstance(exc, grpc.RpcError), exc
    return read_refusal(exc).reason


class RawClient:
    """Crafts and sends federation requests by hand, to test what a node refuses."""

    def __init__(self, layout: NodeLayout) -> None:
        self.layout = layout
        self.member_id = layout.load_config().member_id
        self.key = layout.load_signing_key()
        self.tls = layout.load_tls()
        self._channels: list[grpc.Channel] = []

    def stub(self, target: NodeServer, tls: TlsMaterial | None = None) -> Any:
        channel = secure_channel(
            target=target.address,
            tls=tls or self.tls,
            server_name=pki.node_server_name(target.config.member_id),
            max_message_bytes=16 * 1024 * 1024,
        )
        self._channels.append(channel)
        return federation_pb2_grpc.FederationStub(channel)

    def ping_request(self, responder: str = "", **header: Any) -> federation_pb2.PingRequest:
        now = now_ms()
        fields: dict[str, Any] = {
            "query_id": str(uuid.uuid4()),
            "requester": self.member_id,
            "responder": responder,
            "purpose": "connectivity-check",
            "issued_at_ms": now,
            "expires_at_ms": now + 60_000,
            "nonce": secrets.token_bytes(16),
        }
        fields.update(header)
        return federation_pb2.PingRequest(header=envelope_pb2.RequestHeader(**fields), data=b"hi")

    def envelope(
        self, request: federation_pb2.PingRequest, *, key: SigningKey | None = None
    ) -> envelope_pb2.Envelope:
        return sign_envelope(
            payload_type="rcf.v1.PingRequest",
            payload=request.SerializeToString(),
            signers=[key or self.key],
        ).to_proto()

    def raw(self, target: NodeServer, method: str, body: bytes) -> bytes:
        """Send body as the request bytes of method, exactly as given."""
        channel = secure_channel(
            target=target.address,
            tls=self.tls,
            server_name=pki.node_server_name(target.config.member_id),
            max_message_bytes=16 * 1024 * 1024,
        )
        self._channels.append(channel)
        call = channel.unary_unary(
            method, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        reply: bytes = call(body, timeout=10)
        return reply

    def ping(self, target: NodeServer, **header: Any) -> envelope_pb2.Envelope:
        header.setdefault("responder", target.config.member_id)
        request = self.ping_request(**header)
        result: envelope_pb2.Envelope = self.stub(target).Ping(self.envelope(request), timeout=10)
        return result

    def close(self) -> None:
        for c in self._channels:
            c.close()
