"""The federation pipeline over real mutual TLS: what is answered, what is refused, and
that every refusal lands in the responder's audit log."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from rcf.node.federation.peers import PeerAnswer
from rcf.node.federation.ping import PING
from rcf.node.federation.server import NodeServer
from rcf.node.ops.operator import TOKEN_HEADER
from rcf.protos.v1 import envelope_pb2, federation_pb2, operator_pb2, operator_pb2_grpc
from rcf.trust import pki
from rcf.trust.dsse import Envelope, Signature
from rcf.trust.errors import PeerError
from rcf.trust.keys import SigningKey
from rcf.trust.tls import TlsMaterial
from tests.network import Network, reason_of, set_node_config


def refresh_until_ok(node: NodeServer, within_s: float = 8.0) -> None:
    """Refresh once the hub is reachable again (the channel reconnects with backoff)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            node.refresh_directory()
            return
        except PeerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def call_ping(node: NodeServer, responder: str, *, timeout_s: float = 5) -> PeerAnswer[Any]:
    return node.peers.call(
        PING, responder=responder, purpose="connectivity-check", fill=lambda r: None,
        timeout_s=timeout_s,
    )  # fmt: skip


def refused(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def last_audit(node: NodeServer) -> tuple[str, str, str]:
    rec = node.audit.records(limit=1)[0].event
    return rec.decision, rec.reason, rec.requester


def assert_refused(
    node: NodeServer,
    call: Callable[[], Any],
    code: grpc.StatusCode,
    reason: str,
    audited: str = "",
) -> str:
    before = node.audit.count()
    err = refused(call)
    details = err.details() or ""
    assert err.code() == code, details
    assert reason_of(err) == reason, details
    assert not details.startswith(reason), "the sentence is for people; the code is in ErrorInfo"
    assert node.audit.count() == before + 1
    decision, audited_reason, _ = last_audit(node)
    assert (decision, audited_reason) == ("refused", audited or reason)
    return details


def test_signed_ping_round_trip_binds_request_and_is_audited_on_both_sides(net: Network) -> None:
    au, th = net.nodes["AU"], net.nodes["TH"]
    answer = au.peers.call(
        PING, responder="TH", purpose="connectivity-check", fill=lambda r: None, timeout_s=5
    )
    assert answer.signer_member == "TH"
    assert answer.signer_key_id == th.signing_key.key_id
    th_rec = th.audit.records(limit=1)[0].event
    au_rec = au.audit.records(limit=1)[0].event
    assert (th_rec.side, th_rec.decision, th_rec.requester) == ("responder", "answered", "AU")
    assert (au_rec.side, au_rec.decision, au_rec.responder) == ("requester", "answered", "TH")
    assert th_rec.query_id == au_rec.query_id == answer.query_id
    assert th_rec.request_sha256 == au_rec.request_sha256
    assert th_rec.response_sha256 == au_rec.response_sha256 != ""
    assert th_rec.purpose == "connectivity-check"


def test_response_carries_request_digest(net: Network) -> None:
    client = net.client("AU")
    request = client.ping_request("TH")
    reply = client.stub(net.nodes["TH"]).Ping(client.envelope(request), timeout=5)
    response = federation_pb2.PingResponse()
    response.ParseFromString(reply.payload)
    assert response.header.request_sha256 == hashlib.sha256(request.SerializeToString()).digest()
    assert reply.signatures[0].key_id == net.nodes["TH"].signing_key.key_id


def test_unsigned_envelope_is_refused(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    env = client.envelope(client.ping_request("TH"))
    del env.signatures[:]
    assert_refused(
        th,
        lambda: client.stub(th).Ping(env, timeout=5),
        grpc.StatusCode.UNAUTHENTICATED,
        "unsigned",
    )


def test_bad_signature_is_refused(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    env = client.envelope(client.ping_request("TH"))
    env.payload = env.payload + b"\x00"  # tampered after signing
    assert_refused(
        th,
        lambda: client.stub(th).Ping(env, timeout=5),
        grpc.StatusCode.UNAUTHENTICATED,
        "bad_signature",
    )


def test_unknown_signing_key_is_refused(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    env = client.envelope(client.ping_request("TH"), key=SigningKey.generate())
    assert_refused(
        th, lambda: client.stub(th).Ping(env, timeout=5), grpc.StatusCode.UNAUTHENTICATED,
        "unknown_key",
    )  # fmt: skip


def test_signer_different_from_tls_peer_is_refused(net: Network) -> None:
    # AU's TLS connection carrying a request signed with NZ's key (and naming NZ).
    au, th = net.client("AU"), net.nodes["TH"]
    nz_key = net.layout("NZ").load_signing_key()
    request = au.ping_request("TH", requester="NZ")
    details = assert_refused(
        th,
        lambda: au.stub(th).Ping(au.envelope(request, key=nz_key), timeout=5),
        grpc.StatusCode.PERMISSION_DENIED,
        "signer_peer_mismatch",
    )
    assert "NZ" in details and "AU" in details
    assert last_audit(th)[2] == "AU"


def test_requester_field_must_match_signer(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    assert_refused(
        th,
        lambda: client.ping(th, requester="NZ"),
        grpc.StatusCode.PERMISSION_DENIED,
        "requester_mismatch",
    )


def test_request_for_another_responder_is_refused(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    assert_refused(
        th,
        lambda: client.ping(th, responder="NZ"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "wrong_responder",
    )


def test_certificate_from_another_ca_fails_the_handshake(net: Network, tmp_path: Path) -> None:
    ca_key, ca_cert = pki.create_ca("rogue")
    key = pki.new_private_key_pem()
    cert = pki.issue_certificate(
        ca_key_pem=ca_key,
        ca_cert_pem=ca_cert,
        csr_pem=pki.make_csr(key, "AU"),
        common_name="AU",
        dns_name=pki.node_server_name("AU"),
    )
    th = net.nodes["TH"]
    network_ca = net.hub_layout.ca_cert.read_bytes()
    rogue = TlsMaterial(key_pem=key, cert_pem=cert, ca_pem=network_ca)
    client = net.client("AU")
    before = th.audit.count()
    env = client.envelope(client.ping_request("TH"))
    err = refused(lambda: client.stub(th, tls=rogue).Ping(env, timeout=5))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    # The TLS layer rejects it before any application code runs: nothing to audit.
    assert th.audit.count() == before


def test_certificate_not_enrolled_for_the_member_is_refused(net: Network) -> None:
    # A certificate the network CA issued, but not the one the directory lists for AU.
    ca_key = net.hub_layout.ca_key.read_bytes()
    ca_cert = net.hub_layout.ca_cert.read_bytes()
    key = pki.new_private_key_pem()
    cert = pki.issue_certificate(
        ca_key_pem=ca_key,
        ca_cert_pem=ca_cert,
        csr_pem=pki.make_csr(key, "AU"),
        common_name="AU",
        dns_name=pki.node_server_name("AU"),
    )
    client, th = net.client("AU"), net.nodes["TH"]
    stale = TlsMaterial(key_pem=key, cert_pem=cert, ca_pem=ca_cert)
    env = client.envelope(client.ping_request("TH"))
    assert_refused(
        th,
        lambda: client.stub(th, tls=stale).Ping(env, timeout=5),
        grpc.StatusCode.PERMISSION_DENIED,
        "tls_cert_not_enrolled",
    )


@pytest.mark.parametrize(
    ("action", "reason"),
    [("suspend", "member_suspended"), ("revoke", "member_revoked")],
)
def test_suspended_and_revoked_members_are_refused_after_refresh(
    net: Network, action: str, reason: str
) -> None:
    from rcf.trust.directory import MemberStatus

    client, th = net.client("AU"), net.nodes["TH"]
    client.ping(th)  # allowed before
    status = MemberStatus.SUSPENDED if action == "suspend" else MemberStatus.REVOKED
    net.registry.set_status("AU", status)
    client.ping(th)  # TH has not refreshed yet: the change is not known there
    th.refresh_directory()
    assert_refused(th, lambda: client.ping(th), grpc.StatusCode.PERMISSION_DENIED, reason)
    if action == "suspend":
        net.registry.set_status("AU", MemberStatus.ACTIVE)
        th.refresh_directory()
        client.ping(th)


def test_expired_and_future_requests_are_refused(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    now = int(time.time() * 1000)
    assert_refused(
        th,
        lambda: client.ping(th, issued_at_ms=now - 120_000, expires_at_ms=now - 60_000),
        grpc.StatusCode.FAILED_PRECONDITION,
        "request_expired",
    )
    assert_refused(
        th,
        lambda: client.ping(th, issued_at_ms=now + 600_000, expires_at_ms=now + 660_000),
        grpc.StatusCode.FAILED_PRECONDITION,
        "request_from_future",
    )
    assert_refused(
        th,
        lambda: client.ping(th, issued_at_ms=now, expires_at_ms=now + 3_600_000),
        grpc.StatusCode.INVALID_ARGUMENT,
        "request_window_too_long",
    )


def test_replayed_nonce_is_refused_also_after_restart(net: Network) -> None:
    client = net.client("AU")
    env = client.envelope(client.ping_request("TH"))
    th = net.nodes["TH"]
    client.stub(th).Ping(env, timeout=5)
    assert_refused(
        th, lambda: client.stub(th).Ping(env, timeout=5), grpc.StatusCode.ALREADY_EXISTS,
        "replayed_nonce",
    )  # fmt: skip
    # Same nonce in a freshly signed request is still a replay.
    nonce = client.ping_request("TH").header.nonce
    client.ping(th, nonce=nonce)
    net.stop_node("TH")
    th = net.start_node("TH")
    assert_refused(
        th, lambda: client.stub(th).Ping(env, timeout=5), grpc.StatusCode.ALREADY_EXISTS,
        "replayed_nonce",
    )  # fmt: skip
    assert_refused(
        th, lambda: client.ping(th, nonce=nonce), grpc.StatusCode.ALREADY_EXISTS, "replayed_nonce"
    )


def test_short_nonce_is_refused(net: Network) -> None:
    client, th = net.client("AU"), net.nodes["TH"]
    assert_refused(
        th, lambda: client.ping(th, nonce=b"123"), grpc.StatusCode.INVALID_ARGUMENT, "malformed"
    )


def test_message_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    net = Network(tmp_path)
    try:
        net.start_hub()
        net.add_node("AU")
        net.enroll("TH", max_message_bytes=4096)
        th = net.start_node("TH")
        net.refresh_all()
        client = net.client("AU")
        big = client.ping_request("TH")
        big.data = b"x" * 6000
        assert_refused(
            th,
            lambda: client.stub(th).Ping(client.envelope(big), timeout=5),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "message_too_large",
        )
        # Far beyond the limit the transport itself refuses it.
        huge = client.ping_request("TH")
        huge.data = b"x" * 100_000
        err = refused(lambda: client.stub(th).Ping(client.envelope(huge), timeout=5))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        client.ping(th)
    finally:
        net.close()


def test_default_deny_without_allow_rule(tmp_path: Path) -> None:
    net = Network(tmp_path)
    try:
        net.start_hub()
        net.add_node("AU")
        layout = net.enroll("TH")
        text = layout.config.read_text().replace('Ping = ["*"]', "")
        layout.config.write_text(text)
        th = net.start_node("TH")
        net.refresh_all()
        client = net.client("AU")
        assert_refused(
            th,
            lambda: client.ping(th),
            grpc.StatusCode.PERMISSION_DENIED,
            "not_permitted",
            audited="not_authorized",
        )
    finally:
        net.close()


def test_hub_down_node_keeps_serving_from_cache(net: Network) -> None:
    net.stop_hub()
    au, th = net.nodes["AU"], net.nodes["TH"]
    with pytest.raises(PeerError, match="hub is unreachable"):
        th.refresh_directory()
    assert th.last_refresh_error
    answer = au.peers.call(
        PING, responder="TH", purpose="connectivity-check", fill=lambda r: None, timeout_s=5
    )
    assert answer.signer_member == "TH"
    # A restarted node comes back from its cached directory too.
    net.stop_node("TH")
    th = net.start_node("TH")
    net.client("AU").ping(th)
    net.start_hub()
    refresh_until_ok(th)
    assert th.last_refresh_error == ""


def test_expired_directory_fails_closed_until_the_hub_is_back(tmp_path: Path) -> None:
    net = Network(tmp_path, directory_ttl_s=3)
    try:
        net.start_hub()
        net.add_node("AU")
        th = net.add_node("TH")
        net.refresh_all()
        client = net.client("AU")
        client.ping(th)
        net.stop_hub()
        time.sleep(3.2)
        details = assert_refused(
            th, lambda: client.ping(th), grpc.StatusCode.UNAVAILABLE, "directory_expired"
        )
        assert "hub could not be reached" in details
        net.start_hub()
        refresh_until_ok(th)
        client.ping(th)
    finally:
        net.close()


def test_directory_rollback_is_refused_by_the_node(net: Network) -> None:
    th = net.nodes["TH"]
    held = th.directory.peek().serial
    old = net.registry.current_directory(renew_after_ms=10**12)
    msg = envelope_pb2.Envelope()
    # The hub's first directory (serial 1) is validly signed but older.
    first = net.registry._rows("SELECT envelope FROM directories WHERE serial = 1")[0]["envelope"]
    msg.ParseFromString(first)
    from rcf.trust.errors import DirectoryError

    with pytest.raises(DirectoryError) as info:
        th.directory.update(Envelope.from_proto(msg))
    assert info.value.reason == "directory_rollback"
    assert th.directory.peek().serial == held
    assert old.payload  # the current one still verifies and is kept
    assert not th.directory.update(old)


def test_responder_answer_from_wrong_key_is_rejected_by_requester(net: Network) -> None:
    # A forged answer (signed by a key that is not TH's) must not be accepted.
    au = net.nodes["AU"]
    reply = net.client("AU").ping(net.nodes["TH"])
    forged = Envelope(
        reply.payload,
        reply.payload_type,
        (Signature(net.nodes["NZ"].signing_key.key_id, reply.signatures[0].sig),),
    )
    with pytest.raises(PeerError, match="failed verification"):
        au.peers._verify_answer(PING, forged.to_proto(), "TH", "q", b"", 0.0)


def test_operator_api_needs_the_token(net: Network) -> None:
    au = net.nodes["AU"]
    with grpc.insecure_channel(au.operator_address) as channel:
        stub = operator_pb2_grpc.OperatorStub(channel)
        err = refused(
            lambda: stub.Status(
                operator_pb2.StatusRequest(), metadata=((TOKEN_HEADER, "wrong"),), timeout=5
            )
        )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        token = net.layout("AU").operator_token.read_text().strip()
        status = stub.Status(operator_pb2.StatusRequest(), metadata=((TOKEN_HEADER, token),))
        assert status.member_id == "AU"
        reply = stub.PingPeer(
            operator_pb2.PingPeerRequest(member_id="TH"), metadata=((TOKEN_HEADER, token),)
        )
        assert reply.signer_member == "TH"


def test_a_new_member_is_reached_at_once_without_waiting_for_a_refresh(net: Network) -> None:
    net.add_node("ID")
    au = net.nodes["AU"]
    before = au.directory.peek().serial
    # AU has not refreshed: ID is unknown to it, so AU fetches the directory and retries.
    assert call_ping(au, "ID").signer_member == "ID"
    assert au.directory.peek().serial > before


def test_a_peer_behind_on_the_directory_catches_up_when_it_refuses(net: Network) -> None:
    idn = net.add_node("ID")
    idn.refresh_directory()
    th = net.nodes["TH"]
    stale = th.directory.peek().serial
    assert stale < idn.directory.peek().serial
    # TH does not know ID's key yet: it refuses (saying which serial it holds), fetches
    # the newest directory at once, and ID's retry is answered.
    assert call_ping(idn, "TH").signer_member == "TH"
    assert th.directory.peek().serial > stale
    first = next(r.event for r in th.audit.records() if r.event.requester == "ID")
    assert (first.decision, first.reason) == ("refused", "unknown_key")


def test_node_config_typo_is_one_clear_error(net: Network) -> None:
    from rcf.trust.errors import ConfigError

    layout = net.layout("NZ")
    set_node_config(layout, max_message_bytes="lots")
    with pytest.raises(ConfigError, match="bad value"):
        layout.load_config()
    set_node_config(layout, max_message_bytes=1_000_000)
    layout.config.write_text("max_mesage_bytes = 5\n" + layout.config.read_text())
    with pytest.raises(ConfigError, match="unknown setting 'max_mesage_bytes'"):
        layout.load_config()
    layout.config.write_text(layout.config.read_text().replace("max_mesage_bytes = 5\n", ""))
    layout.config.write_text(layout.config.read_text() + "Typo = 5\n")
    with pytest.raises(ConfigError, match=r"\[allow\] Typo must be a list"):
        layout.load_config()


def test_audit_records_written_beside_a_running_node_keep_the_chain(net: Network) -> None:
    # An operator command (e.g. `rcf data purge`) appends to state.db from another
    # process while the node serves; both must keep one unbroken chain.
    from rcf.node.audit.chain import AuditLog
    from rcf.node.ops.state import StateDB
    from rcf.trust.audit_record import AuditEvent, verify_chain

    th = net.nodes["TH"]
    client = net.client("AU")
    client.ping(th)
    layout = net.layout("TH")
    other = StateDB(layout.state_db)
    try:
        AuditLog(other, layout.load_signing_key()).append(
            AuditEvent("q", "data_purge", "retention", "TH", "TH", "local", "purged", "ok", "d")
        )
    finally:
        other.close()
    client.ping(th)
    client.ping(th)
    records = th.audit.records()
    key = th.signing_key
    assert verify_chain(records, {key.key_id: key.public_key}) == len(records)
    assert [r.event.query_type for r in records[-3:]] == ["data_purge", "Ping", "Ping"]


def test_unreachable_peer_is_one_clear_error_and_audited_as_failed(net: Network) -> None:
    au = net.nodes["AU"]
    net.stop_node("TH")
    with pytest.raises(PeerError) as info:
        au.peers.call(
            PING, responder="TH", purpose="connectivity-check", fill=lambda r: None, timeout_s=2
        )
    assert info.value.reason in ("unreachable", "timeout")
    assert "TH" in str(info.value)
    rec = au.audit.records(limit=1)[0].event
    assert (rec.side, rec.responder, rec.decision) == ("requester", "TH", "failed")
    assert rec.reason == info.value.reason


def test_an_operator_refresh_rides_through_the_hubs_reconnect(net: Network) -> None:
    th = net.nodes["TH"]
    net.stop_hub()
    with pytest.raises(PeerError):
        th.refresh_directory()  # the channel now backs off before reconnecting
    time.sleep(1.5)
    net.start_hub()
    th.refresh_directory(patient=True)  # first try, no retry loop
    assert th.last_refresh_error == ""
