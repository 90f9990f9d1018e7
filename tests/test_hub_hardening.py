"""The hub refuses what it must not accept: bad endpoints, floods of updates, tokens
without bounds, enrolment of suspended members, a second certificate by accident;
and its enrolment port serves nothing but Enroll and health."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from rcf.hub.registry import Registry
from rcf.hub.setup import init_hub, open_registry
from rcf.node.federation.hub_client import HubClient
from rcf.protos.v1 import hub_pb2, hub_pb2_grpc
from rcf.trust import pki
from rcf.trust.directory import MemberStatus
from rcf.trust.endpoints import check_endpoint
from rcf.trust.errors import PeerError, RegistryError
from rcf.trust.keys import SigningKey
from tests.cli_helpers import fails, ok
from tests.network import Network


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return open_registry(init_hub(tmp_path / "hub", network="t"))


GOOD_ENDPOINTS = ["127.0.0.1:7443", "10.1.2.3:1", "node.th.example:443", "[2001:db8::1]:7443",
                  "localhost:65535", "[::1]:80"]  # fmt: skip
BAD_ENDPOINTS = [
    "", "host", "host:", ":80", "host:0", "host:65536", "host:08", "a b:80", "::1:80",
    "0.0.0.0:7443", "[::]:7443", "[::ffff:0.0.0.0]:1", "169.254.10.1:80", "[fe80::1]:80",
    "224.0.0.1:80", "[ff02::1]:80", "999.1.1.1:80", "-bad.example:80", "x" * 300 + ":1",
    "nödé.example:80", "[2001:db8::1]80", "[notip]:80",
]  # fmt: skip


@pytest.mark.parametrize("endpoint", GOOD_ENDPOINTS)
def test_good_endpoints_pass(endpoint: str) -> None:
    assert check_endpoint(endpoint) == endpoint


@pytest.mark.parametrize("endpoint", BAD_ENDPOINTS)
def test_bad_endpoints_are_refused(endpoint: str) -> None:
    with pytest.raises(RegistryError) as info:
        check_endpoint(endpoint)
    assert info.value.reason == "bad_endpoint" and info.value.status == "INVALID_ARGUMENT"


def test_endpoint_updates_are_validated_deduplicated_and_rate_limited(net: Network) -> None:
    th = net.nodes["TH"]
    client = HubClient(address=net.hub_address, tls=th.tls)
    key, endpoint = th.signing_key, th.address
    try:
        serial = net.registry.current_serial()
        # TH published its endpoint once at start; the same again publishes nothing.
        for _ in range(3):
            client.update_endpoint(member_id="TH", endpoint=endpoint, key=key)
        assert net.registry.current_serial() == serial
        with pytest.raises(PeerError) as info:
            client.update_endpoint(member_id="TH", endpoint="0.0.0.0:7443", key=key)
        assert info.value.reason == "bad_endpoint"
        assert net.registry.current_serial() == serial
        client.update_endpoint(member_id="TH", endpoint="127.0.0.1:1", key=key)
        assert net.registry.current_serial() == serial + 1
        # Six calls in a minute (the one at start included); the seventh is refused.
        with pytest.raises(PeerError) as info:
            client.update_endpoint(member_id="TH", endpoint=endpoint, key=key)
        assert info.value.reason == "rate_limited"
        assert net.registry.current_serial() == serial + 1
        # Other members have their own allowance.
        au = net.nodes["AU"]
        au_client = HubClient(address=net.hub_address, tls=au.tls)
        try:
            au_client.update_endpoint(member_id="AU", endpoint=au.address, key=au.signing_key)
        finally:
            au_client.close()
    finally:
        client.close()


def test_the_enrolment_port_serves_only_enroll_and_health(net: Network) -> None:
    assert net.hub is not None
    ca = net.hub_layout.ca_cert.read_bytes()
    creds = grpc.ssl_channel_credentials(root_certificates=ca)
    options = [("grpc.ssl_target_name_override", pki.HUB_NAME)]
    with grpc.secure_channel(net.hub.enroll_address, creds, options=options) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service="rcf.v1.Hub"), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        hub = hub_pb2_grpc.HubStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            hub.GetDirectory(hub_pb2.GetDirectoryRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as info:
            hub.Enroll(hub_pb2.EnrollRequest(join_token="nope", member_id="TH"), timeout=5)
        assert "not known to this hub" in (info.value.details() or "")
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(reflect.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            ))  # fmt: skip
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as info:
            hub.Enroll(hub_pb2.EnrollRequest(join_token="x" * 100_000), timeout=5)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_join_tokens_have_a_bounded_positive_lifetime(registry: Registry) -> None:
    registry.add_member("TH", name="Thailand")
    for ttl in (0, -1, 30 * 24 * 3600 * 1000 + 1):
        with pytest.raises(RegistryError, match="more than zero and at most 30 days"):
            registry.create_join_token("TH", ttl_ms=ttl)
    assert registry.create_join_token("TH", ttl_ms=30 * 24 * 3600 * 1000)


def test_suspended_and_revoked_members_get_no_token_and_cannot_enrol(
    registry: Registry,
) -> None:
    registry.add_member("TH", name="Thailand")
    token = registry.create_join_token("TH")
    registry.set_status("TH", MemberStatus.SUSPENDED)
    with pytest.raises(RegistryError, match="TH is suspended; join tokens are only for active"):
        registry.create_join_token("TH")
    key = SigningKey.generate()
    csr = pki.make_csr(pki.new_private_key_pem(), "TH")
    with pytest.raises(RegistryError, match="TH is suspended and cannot enrol"):
        registry.enroll_with_token(
            secret=token, member_id="TH", csr_pem=csr, signing_public_key=key.public_key
        )
    with pytest.raises(RegistryError, match="TH is suspended and cannot enrol"):
        registry.enroll_offline(member_id="TH", csr_pem=csr, signing_public_key=key.public_key)
    registry.set_status("TH", MemberStatus.REVOKED)
    with pytest.raises(RegistryError, match="TH is revoked; join tokens"):
        registry.create_join_token("TH")


def test_approving_the_same_request_twice_issues_one_certificate(tmp_path: Path) -> None:
    hub, node = str(tmp_path / "hub"), tmp_path / "TH"
    ok("hub", "init", "--hub-dir", hub, "--local")
    ok("hub", "member", "add", "TH", "--hub-dir", hub)
    ok("node", "init", "--member", "TH", "--offline", "--node-dir", str(node), "--local")
    request = node / "enroll-request.json"
    first, second = tmp_path / "r1.json", tmp_path / "r2.json"
    ok("hub", "enroll", "--request", str(request), "--out", str(first), "--hub-dir", hub,
       "--hub-address", "127.0.0.1:1", "--local")  # fmt: skip
    serial = json.loads(ok("hub", "status", "--hub-dir", hub, "--json"))["directory_serial"]
    ok("hub", "enroll", "--request", str(request), "--out", str(second), "--hub-dir", hub,
       "--hub-address", "127.0.0.1:1", "--local")  # fmt: skip
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert a["certificate_pem"] == b["certificate_pem"]
    assert json.loads(ok("hub", "status", "--hub-dir", hub, "--json"))["directory_serial"] == serial
    ok("node", "enroll", "--response", str(second), "--node-dir", str(node))

    # Another request for TH would lock the enrolled node out: refused unless --replace.
    other = tmp_path / "TH2"
    ok("node", "init", "--member", "TH", "--offline", "--node-dir", str(other), "--local")
    message = fails("hub", "enroll", "--request", str(other / "enroll-request.json"),
                    "--out", str(tmp_path / "r3.json"), "--hub-dir", hub,
                    "--hub-address", "127.0.0.1:1", "--local")  # fmt: skip
    assert "TH already has an enrolled node" in message and "--replace" in message
    ok("hub", "enroll", "--request", str(other / "enroll-request.json"), "--out",
       str(tmp_path / "r3.json"), "--hub-dir", hub, "--hub-address", "127.0.0.1:1",
       "--replace", "--local")  # fmt: skip
    assert json.loads((tmp_path / "r3.json").read_text())["certificate_pem"] != a["certificate_pem"]
