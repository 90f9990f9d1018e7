"""Server behaviour beyond single requests: health, hub ports, background refresh, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rcf.protos.v1 import hub_pb2, hub_pb2_grpc
from rcf.trust import pki
from rcf.trust.directory import MemberStatus
from rcf.trust.tls import channel_options, secure_channel
from tests.cli_helpers import RCF
from tests.network import Network, reason_of


def _health(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


def test_every_server_answers_health_checks(net: Network) -> None:
    assert net.hub is not None
    au_tls = net.layout("AU").load_tls()
    with secure_channel(
        target=net.hub.address, tls=au_tls, server_name=pki.HUB_NAME, max_message_bytes=1 << 20
    ) as channel:
        assert _health(channel, "rcf.v1.Hub") == health_pb2.HealthCheckResponse.SERVING
    th = net.nodes["TH"]
    with secure_channel(
        target=th.address,
        tls=au_tls,
        server_name=pki.node_server_name("TH"),
        max_message_bytes=1 << 20,
    ) as channel:
        assert _health(channel, "rcf.v1.Federation") == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(th.operator_address) as channel:
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING


def test_enrolment_port_serves_nothing_but_enrol(net: Network) -> None:
    assert net.hub is not None
    creds = grpc.ssl_channel_credentials(root_certificates=net.hub_layout.ca_cert.read_bytes())
    options = channel_options(server_name=pki.HUB_NAME, max_message_bytes=1 << 20)
    with grpc.secure_channel(net.hub.enroll_address, creds, options=options) as channel:
        stub = hub_pb2_grpc.HubStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetDirectory(hub_pb2.GetDirectoryRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED  # not even served there
        with pytest.raises(grpc.RpcError) as info:
            stub.Enroll(hub_pb2.EnrollRequest(join_token="guess", member_id="AU"), timeout=5)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not known" in (info.value.details() or "")


def test_background_refresh_applies_a_suspension_without_intervention(tmp_path: Path) -> None:
    net = Network(tmp_path)
    try:
        net.start_hub()
        net.add_node("AU")
        net.enroll("TH", directory_refresh_s=0.2)
        th = net.start_node("TH")
        net.refresh_all()
        client = net.client("AU")
        client.ping(th)
        net.registry.set_status("AU", MemberStatus.SUSPENDED)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping(th)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
                assert reason_of(exc) == "member_suspended"
                break
            assert time.monotonic() < deadline, "the suspension never arrived"
            time.sleep(0.1)
    finally:
        net.close()


def test_demo_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    proc = subprocess.Popen(
        [RCF, "demo", "--dir", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    pids_file = root / "demo-pids.json"
    deadline = time.monotonic() + 60
    pids: dict[str, int] = {}
    while len(pids) < 3:
        assert time.monotonic() < deadline, "demo did not start its nodes"
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        if pids_file.exists():
            try:
                pids = json.loads(pids_file.read_text())
            except ValueError:
                pids = {}
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert "Traceback" not in stderr
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
    # Nor is any process still running from the demo's folder (one being started
    # when the signal came is in no pids file yet).
    assert _processes_mentioning(str(root)) == []


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def test_a_second_server_on_the_same_folder_is_refused(net: Network) -> None:
    from rcf.hub.server import HubServer
    from rcf.node.federation.server import NodeServer
    from rcf.trust.errors import ConfigError

    second = NodeServer(net.layout("TH"))
    with pytest.raises(
        ConfigError, match=r"A node for TH is already running from this folder \(pid"
    ):
        second.start()
    second.stop(grace=0)  # never started: must leave the running node's files alone
    assert net.layout("TH").runtime.exists()
    with pytest.raises(ConfigError, match="A hub is already running"):
        HubServer(net.hub_layout).start()
    net.client("AU").ping(net.nodes["TH"])
    # Once the first one stops, the folder can be served again.
    net.stop_node("TH")
    net.start_node("TH")


def test_key_rotation_keeps_old_signatures_verifiable(net: Network) -> None:
    from rcf.node.ops.enrollment import rotate_keys
    from rcf.trust.audit_record import verify_chain
    from rcf.trust.errors import ConfigError
    from rcf.trust.join_token import JoinToken

    assert net.hub is not None
    client = net.client("AU")
    client.ping(net.nodes["TH"])
    old_key = net.layout("TH").load_signing_key()

    def token() -> str:
        assert net.hub is not None
        return JoinToken(
            secret=net.registry.create_join_token("TH"),
            member_id="TH",
            hub_address=net.hub.address,
            enroll_address=net.hub.enroll_address,
            ca_pem=net.hub_layout.ca_cert.read_bytes(),
            hub_public_key=net.hub_layout.load_signing_key().public_key,
        ).encode()

    with pytest.raises(ConfigError, match="Stop it before rotating"):
        rotate_keys(net.layout("TH").root, token_text=token())
    net.stop_node("TH")
    new_key_id = rotate_keys(net.layout("TH").root, token_text=token())
    assert new_key_id != old_key.key_id
    th = net.start_node("TH")
    assert th.signing_key.key_id == new_key_id
    net.refresh_all()
    reply = client.ping(th)
    assert reply.signatures[0].key_id == new_key_id

    # Old audit records still verify: the directory keeps the old key, closed.
    directory = th.directory.current()
    member = directory.member("TH")
    assert member is not None
    keys = {k.key_id: k for k in member.signing_keys}
    assert keys[old_key.key_id].valid_until_ms != 0 and keys[new_key_id].valid_until_ms == 0
    records = th.audit.records()
    public = {k: v.public_key for k, v in keys.items()}
    assert verify_chain(records, public) == len(records)
    assert {r.key_id for r in records if r.signature} == {old_key.key_id, new_key_id}

    # A request signed with TH's retired key is refused by its peers.
    au = net.nodes["AU"]
    stale = net.client("TH")
    stale.key = old_key
    with pytest.raises(grpc.RpcError) as info:
        stale.ping(au)
    assert reason_of(info.value) == "key_not_valid"
