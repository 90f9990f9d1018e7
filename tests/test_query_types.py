"""One registration per query type: a test-only type registered the way the real ones
are is served by a real node over mutual TLS, audited on both sides, with its operator
service; a node serves exactly the methods of the query types it was given."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from rcf.node.federation.binding import (
    NodeServices,
    OperatorService,
    QueryType,
    Served,
    served_as_is,
)
from rcf.node.federation.ping import PING
from rcf.node.federation.ping import QUERY_TYPE as PING_TYPE
from rcf.node.federation.protocol import Authorized, QuerySpec
from rcf.node.federation.registry import QUERY_TYPES, specs
from rcf.node.federation.server import NodeServer
from rcf.node.ops.config import NodeLayout
from rcf.node.ops.operator import TOKEN_HEADER, authenticate
from rcf.node.policy.model import QueryDescription
from rcf.protos.v1 import federation_pb2
from rcf.trust.errors import RcfError
from rcf.trust.status import abort_with
from tests.network import Network, reason_of

ECHO_OPERATOR = "rcf.test.EchoOperator"


@dataclass
class EchoPart:
    """What Echo keeps on the node that serves it."""

    member_id: str
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(
        self, authorized: Authorized[federation_pb2.PingRequest]
    ) -> federation_pb2.PingResponse:
        with self.lock:
            self.answered += 1
        # The node's member id comes from the services it was bound with.
        return federation_pb2.PingResponse(
            data=authorized.request.data + b"@" + self.member_id.encode()
        )


def _as_ping(request: federation_pb2.PingRequest) -> QueryDescription:
    return QueryDescription("Ping")  # governed by the policy's Ping rules


ECHO_SPEC = QuerySpec(
    name="Echo",
    request_cls=federation_pb2.PingRequest,
    response_cls=federation_pb2.PingResponse,
    answer=lambda authorized: federation_pb2.PingResponse(),  # unbound: a requester's view
    describe=_as_ping,
)


def _echo_operator(part: EchoPart, token: str) -> grpc.GenericRpcHandler[bytes, bytes]:
    def answered(raw: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            authenticate(context, token.encode())
        except RcfError as exc:
            abort_with(context, exc)
        return str(part.answered).encode()

    return grpc.method_handlers_generic_handler(
        ECHO_OPERATOR,
        {
            "Answered": grpc.unary_unary_rpc_method_handler(
                answered, request_deserializer=lambda b: b, response_serializer=lambda b: b
            )
        },
    )


def bind_echo(services: NodeServices) -> Served[EchoPart]:
    part = EchoPart(services.member_id)
    handler = _echo_operator(part, services.operator_token)
    return Served(
        specs=(replace(ECHO_SPEC, answer=part.answer),),
        part=part,
        operators=(
            OperatorService(
                ECHO_OPERATOR, lambda server: server.add_generic_rpc_handlers((handler,))
            ),
        ),
    )


ECHO = QueryType(name="Echo", specs=(ECHO_SPEC,), bind=bind_echo)


@pytest.fixture
def echo_net(tmp_path: Path) -> Iterator[Network]:
    """AU with the registry's query types; TH with Ping and Echo only."""
    net = Network(tmp_path)
    try:
        net.start_hub()
        net.enroll("AU")
        net.start_node("AU")
        net.enroll("TH")
        net.start_node("TH", query_types=(PING_TYPE, ECHO))
        net.refresh_all()
        yield net
    finally:
        net.close()


def _operator_channel(node: NodeServer) -> grpc.Channel:
    return grpc.insecure_channel(node.operator_address)


def _token(node: NodeServer) -> tuple[tuple[str, str]]:
    return ((TOKEN_HEADER, node.layout.operator_token.read_text().strip()),)


def _health(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND
        unknown: int = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        return unknown
    status: int = reply.status
    return status


def _reflected_services(channel: grpc.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    return {s.name for s in reply.list_services_response.service}


def test_a_registered_query_type_is_served_over_mutual_tls_and_audited_on_both_sides(
    echo_net: Network,
) -> None:
    au, th = echo_net.nodes["AU"], echo_net.nodes["TH"]
    answer = au.peers.call(
        ECHO_SPEC, responder="TH", purpose="connectivity-check",
        fill=lambda r: setattr(r, "data", b"hello"), timeout_s=5,
    )  # fmt: skip
    assert answer.response.data == b"hello@TH"
    assert th.served(ECHO).answered == 1
    (th_event,) = [r.event for r in th.audit.records() if r.event.query_type == "Echo"]
    (au_event,) = [r.event for r in au.audit.records() if r.event.query_type == "Echo"]
    assert (th_event.decision, th_event.requester, th_event.responder) == ("answered", "AU", "TH")
    assert (au_event.decision, au_event.requester, au_event.responder) == ("answered", "AU", "TH")
    assert th_event.query_id == au_event.query_id == answer.query_id
    assert th_event.request_sha256 == au_event.request_sha256
    assert th_event.response_sha256 == au_event.response_sha256 != ""


def test_the_operator_port_carries_exactly_the_registered_operator_services(
    echo_net: Network,
) -> None:
    au, th = echo_net.nodes["AU"], echo_net.nodes["TH"]
    with _operator_channel(th) as channel:
        assert _reflected_services(channel) == {
            "rcf.v1.Operator",
            ECHO_OPERATOR,
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        assert _health(channel, ECHO_OPERATOR) == health_pb2.HealthCheckResponse.SERVING
        assert (
            _health(channel, "rcf.v1.AggregateOperator")
            == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        )
        call = channel.unary_unary(
            f"/{ECHO_OPERATOR}/Answered",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        assert call(b"", metadata=_token(th), timeout=5) == b"0"
        with pytest.raises(grpc.RpcError) as info:
            call(b"", timeout=5)  # the operator token guards it as every operator service
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with _operator_channel(au) as channel:
        services = _reflected_services(channel)
        assert ECHO_OPERATOR not in services
        assert {
            "rcf.v1.AggregateOperator",
            "rcf.v1.IdentityOperator",
            "rcf.v1.AlertOperator",
        } <= services


def test_a_node_serves_exactly_the_methods_of_its_query_types(echo_net: Network) -> None:
    au, th = echo_net.nodes["AU"], echo_net.nodes["TH"]
    client = echo_net.client("AU")
    body = client.envelope(client.ping_request("TH")).SerializeToString()
    before = th.audit.count()
    for name in ("Aggregate", "IdentityEvaluate", "IdentityLookup", "Nonexistent"):
        with pytest.raises(grpc.RpcError) as info:
            client.raw(th, f"/rcf.v1.Federation/{name}", body)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, name
    assert th.audit.count() == before  # nothing reached the pipeline
    # AU serves the registry's methods and not Echo.
    with pytest.raises(grpc.RpcError) as info:
        client.raw(au, "/rcf.v1.Federation/Echo", body)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as info:
        client.raw(au, "/rcf.v1.Federation/Aggregate", body)
    # Served: the pipeline refuses a Ping envelope sent to Aggregate, and says so.
    assert info.value.code() != grpc.StatusCode.UNIMPLEMENTED
    assert reason_of(info.value) != ""
    client.close()


def test_the_registry_names_every_federation_method_of_the_protocol_once() -> None:
    names = [spec.name for spec in specs()]
    declared = federation_pb2.DESCRIPTOR.services_by_name["Federation"].methods_by_name
    assert sorted(names) == sorted(declared)
    for spec in specs():
        assert spec.streaming == declared[spec.name].server_streaming, spec.name
    assert len({t.name for t in QUERY_TYPES}) == len(QUERY_TYPES)


def test_two_query_types_claiming_one_name_or_method_are_refused(tmp_path: Path) -> None:
    # Refused before the node opens anything of its folder (there is none here).
    layout = NodeLayout(tmp_path / "none")
    with pytest.raises(ValueError, match="federation method Ping"):
        NodeServer(layout, query_types=(PING_TYPE, served_as_is("Again", PING)))
    with pytest.raises(ValueError, match="registered twice"):
        NodeServer(layout, query_types=(ECHO, ECHO))


def test_a_query_type_must_bind_the_methods_it_declares(echo_net: Network) -> None:
    sly = QueryType(name="Sly", specs=(ECHO_SPEC,), bind=lambda services: Served(
        specs=(replace(ECHO_SPEC, name="Unannounced"),), part=None
    ))  # fmt: skip
    echo_net.stop_node("TH")
    with pytest.raises(ValueError, match="other methods than it declares"):
        NodeServer(echo_net.layout("TH"), query_types=(PING_TYPE, sly))
