"""The staged pipeline over real mutual TLS: bounded requester text, structured refusals,
streaming, and failures that stay inside the responder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from rcf.node.federation.binding import served_as_is
from rcf.node.federation.ping import PING
from rcf.node.federation.protocol import Authorized, QuerySpec
from rcf.node.federation.registry import QUERY_TYPES
from rcf.node.federation.server import NodeServer
from rcf.node.policy.model import QueryDescription
from rcf.protos.v1 import federation_pb2
from rcf.trust.errors import PeerError
from rcf.trust.status import DOMAIN, read_refusal
from tests.network import Network, reason_of


def audited(node: NodeServer) -> tuple[str, str, str, str, str]:
    e = node.audit.records(limit=1)[0].event
    return e.decision, e.reason, e.requester, e.query_id, e.purpose


def refused(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_oversized_purpose_is_refused_and_never_stored(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    purpose = "x" * 8192
    err = refused(lambda: client.ping(th, purpose=purpose))
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "unknown_purpose")
    decision, reason, requester, query_id, stored = audited(th)
    assert (decision, reason, requester, stored) == ("refused", "unknown_purpose", "AU", "")
    assert uuid.UUID(query_id)
    assert purpose.encode() not in th.layout.state_db.read_bytes()


def test_purpose_not_in_the_dictionary_is_refused(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    err = refused(lambda: client.ping(th, purpose="curiosity"))
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "unknown_purpose")
    assert audited(th)[:3] == ("refused", "unknown_purpose", "AU")


@pytest.mark.parametrize(
    "query_id", ["", "42", "not-a-uuid", "6F1C1E4E-3B8A-4D55-9A51-2B7C0F3D9E10"]
)
def test_query_id_must_be_a_canonical_uuid(net: Network, query_id: str) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    err = refused(lambda: client.ping(th, query_id=query_id))
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_query_id")
    decision, reason, requester, stored_id, _ = audited(th)
    assert (decision, reason, requester, stored_id) == ("refused", "invalid_query_id", "AU", "")


def test_reused_query_id_with_a_fresh_nonce_is_refused_like_a_replay(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    query_id = str(uuid.uuid4())
    client.ping(th, query_id=query_id)
    err = refused(lambda: client.ping(th, query_id=query_id))  # new nonce, same query id
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.ALREADY_EXISTS, "replayed_query_id")
    # Another requester may use the same id: uniqueness is per requester.
    net.client("NZ").ping(th, query_id=query_id)


def test_oversize_envelope_is_audited_with_its_requester(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    request = client.ping_request("TH")
    request.data = b"\0" * (th.config.max_message_bytes + 1)
    err = refused(lambda: client.stub(th).Ping(client.envelope(request), timeout=10))
    assert (err.code(), reason_of(err)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "message_too_large",
    )
    # Refused before the envelope is read: no digest, no query id, no purpose (PROTOCOL.md §10).
    assert audited(th) == ("refused", "message_too_large", "AU", "", "")
    assert th.audit.records(limit=1)[0].event.request_sha256 == ""


def test_bytes_that_are_not_an_envelope_are_invalid_argument(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    err = refused(lambda: client.raw(th, PING.method, b"\xff\xff\xff not protobuf"))
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "malformed")
    assert audited(th) == ("refused", "malformed", "AU", "", "")
    assert th.audit.records(limit=1)[0].event.request_sha256 == ""


def test_ping_data_over_its_bound_is_refused(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    request = client.ping_request("TH")
    request.data = b"x" * 1025
    err = refused(lambda: client.stub(th).Ping(client.envelope(request), timeout=10))
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_field")


def test_refusal_reason_travels_as_error_info(net: Network) -> None:
    th = net.nodes["TH"]
    client = net.client("AU")
    request = client.ping_request("TH")
    env = client.envelope(request)
    del env.signatures[:]
    err = refused(lambda: client.stub(th).Ping(env, timeout=5))
    refusal = read_refusal(err)
    assert refusal.reason == "unsigned"
    assert refusal.message == "The envelope is not signed."
    # The raw trailer is a google.rpc.Status holding one ErrorInfo in our domain.
    metadata: Any = err.trailing_metadata()
    trailers = dict(metadata)
    assert DOMAIN.encode() in trailers["grpc-status-details-bin"]
    # The peer client maps it back to one error with the code intact.
    with pytest.raises(PeerError) as info:
        net.nodes["AU"].peers.call(
            PING, responder="TH", purpose="unknown-but-well-formed", fill=lambda r: None,
            timeout_s=5,
        )  # fmt: skip
    assert info.value.reason == "refused:unknown_purpose"
    assert info.value.status == "INVALID_ARGUMENT"


# -- streaming and failures, with query types registered only for these tests ---------


def _count_stream(authorized: Authorized[federation_pb2.PingRequest]) -> Iterator[Any]:
    for i in range(3):
        yield federation_pb2.PingResponse(data=authorized.request.data + bytes([i]))


def _explode(authorized: Authorized[federation_pb2.PingRequest]) -> federation_pb2.PingResponse:
    raise RuntimeError("database or disk is full at /secret/path")


def _as_ping(request: federation_pb2.PingRequest) -> QueryDescription:
    return QueryDescription("Ping")  # governed by the Ping rules of the policy


PING_STREAM = QuerySpec(
    name="PingStream",
    request_cls=federation_pb2.PingRequest,
    response_cls=federation_pb2.PingResponse,
    stream=_count_stream,
    describe=_as_ping,
)
EXPLODE = QuerySpec(
    name="Explode",
    request_cls=federation_pb2.PingRequest,
    response_cls=federation_pb2.PingResponse,
    answer=_explode,
    describe=_as_ping,
)
# Registered as every query type is, beside the registry's.
TEST_ONLY = served_as_is("TestOnly", PING_STREAM, EXPLODE)


@pytest.fixture
def extra_net(tmp_path: Path) -> Iterator[Network]:
    net = Network(tmp_path)
    try:
        net.start_hub()
        for member in ("AU", "TH"):
            net.enroll(member)
            net.start_node(member, query_types=(*QUERY_TYPES, TEST_ONLY))
        net.refresh_all()
        yield net
    finally:
        net.close()


def test_stream_is_authorised_once_and_every_message_sealed_and_audited(
    extra_net: Network,
) -> None:
    au, th = extra_net.nodes["AU"], extra_net.nodes["TH"]
    before = th.audit.count()
    answers = list(
        au.peers.stream(
            PING_STREAM,
            responder="TH",
            purpose="connectivity-check",
            fill=lambda r: setattr(r, "data", b"x"),
            timeout_s=5,
        )
    )
    assert [a.response.data for a in answers] == [b"x\0", b"x\1", b"x\2"]
    assert [a.response.header.sequence for a in answers] == [0, 1, 2]
    assert {a.query_id for a in answers} == {answers[0].query_id}
    th_records = [r.event for r in th.audit.records()][before:]
    assert [e.decision for e in th_records] == ["streaming", "answered", "answered", "answered"]
    assert len({e.response_sha256 for e in th_records[1:]}) == 3
    au_records = [r.event for r in au.audit.records() if r.event.query_type == "PingStream"]
    assert [e.decision for e in au_records] == ["streaming", "answered", "answered", "answered"]
    assert [e.response_sha256 for e in au_records[1:]] == [
        e.response_sha256 for e in th_records[1:]
    ]


def test_stream_refusal_is_audited_once_and_reaches_the_client(extra_net: Network) -> None:
    au, th = extra_net.nodes["AU"], extra_net.nodes["TH"]
    with pytest.raises(PeerError) as info:
        list(
            au.peers.stream(
                PING_STREAM,
                responder="TH",
                purpose="bad purpose!",
                fill=lambda r: None,
                timeout_s=5,
            )
        )
    assert info.value.reason == "refused:unknown_purpose"
    assert audited(th)[:3] == ("refused", "unknown_purpose", "AU")


def test_unexpected_failure_is_internal_audited_and_reveals_nothing(extra_net: Network) -> None:
    au, th = extra_net.nodes["AU"], extra_net.nodes["TH"]
    with pytest.raises(PeerError) as info:
        au.peers.call(
            EXPLODE, responder="TH", purpose="connectivity-check", fill=lambda r: None,
            timeout_s=5,
        )  # fmt: skip
    assert info.value.reason == "refused:internal" and info.value.status == "INTERNAL"
    assert "disk" not in str(info.value) and "secret" not in str(info.value)
    assert audited(th)[:3] == ("failed", "internal", "AU")
    extra_net.client("AU").ping(th)  # the node is still up


def test_full_disk_fails_cleanly_and_the_node_recovers(net: Network) -> None:
    th, client = net.nodes["TH"], net.client("AU")
    client.ping(th)
    conn = th.state._writer_conn  # the real SQLite connection: cap its file at its size
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    try:
        # Records fill the free space of the last pages first; then the file is full.
        for _ in range(2000):
            try:
                client.ping(th)
            except grpc.RpcError as exc:
                err = exc
                break
        else:
            pytest.fail("the capped database never filled up")
        assert (err.code(), reason_of(err)) == (grpc.StatusCode.INTERNAL, "internal")
        assert "disk" not in (err.details() or "")
        assert refused(lambda: client.ping(th)).code() == grpc.StatusCode.INTERNAL
    finally:
        conn.execute("PRAGMA max_page_count = 1073741823")
    client.ping(th)
    assert audited(th)[:3] == ("answered", "ok", "AU")


def test_channels_to_moved_peers_are_closed(net: Network) -> None:
    au = net.nodes["AU"]
    for _ in range(2):
        au.peers.call(
            PING, responder="TH", purpose="connectivity-check", fill=lambda r: None, timeout_s=5
        )
        net.stop_node("TH")
        net.start_node("TH")  # a new ephemeral port: the directory moves TH
        au.refresh_directory()
    au.peers.call(
        PING, responder="TH", purpose="connectivity-check", fill=lambda r: None, timeout_s=5
    )
    assert au.peers.open_channels == 1
