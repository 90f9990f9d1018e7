"""Sharing policies on running nodes: real servers, mutual TLS, 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from rcf.cli.operator_client import operator_stub
from rcf.node.federation.server import NodeServer
from rcf.node.policy import engine, loader
from rcf.node.policy.model import Decision, Policy, QueryDescription
from rcf.protos.v1 import operator_pb2
from rcf.trust.directory import Member
from rcf.trust.errors import VerificationError
from tests.network import Network, reason_of


def ping_policy(rule_id: str, requesters: list[str], *, first: str = "") -> str:
    """Ping rules for TH; `first` puts an unrelated rule for NZ ahead of the main one."""
    text = '[policy]\nmember = "TH"\n'
    if first:
        text += f'\n[[rule]]\nid = "{first}"\nrequesters = ["NZ"]\nquery = "Ping"\n'
    quoted = ", ".join(f'"{r}"' for r in requesters)
    return text + f'\n[[rule]]\nid = "{rule_id}"\nrequesters = [{quoted}]\nquery = "Ping"\n'


def apply_over_rpc(node: NodeServer, text: str) -> operator_pb2.ApplyPolicyResponse:
    with operator_stub(node.layout) as (stub, md):
        reply: operator_pb2.ApplyPolicyResponse = stub.ApplyPolicy(
            operator_pb2.ApplyPolicyRequest(source=text, filename="test.toml"),
            metadata=md,
            timeout=30,
        )
    return reply


def refusal_of(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


class Recorder:
    """Wraps the engine to note which policy object decided each request."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[Policy, str, Decision]] = []
        self._lock = threading.Lock()
        real = engine.decide

        def recording(
            policy: Policy, requester: Member, query: QueryDescription, **kw: Any
        ) -> Decision:
            decision = real(policy, requester, query, **kw)
            with self._lock:
                self.seen.append((policy, requester.member_id, decision))
            return decision

        monkeypatch.setattr("rcf.node.policy.admin.decide", recording)


def test_applied_policy_decides_the_next_request_and_never_half_loaded(
    net: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    th = net.nodes["TH"]
    au, nz = net.client("AU"), net.client("NZ")
    recorder = Recorder(monkeypatch)
    au.ping(th)  # the seeded policy: Ping from everyone
    seeded_version = th.policy.gate.policy.version if th.policy.gate else 0

    # Compiling a new version is made slow, so requests arrive while it loads.
    real_load = loader.load_policy
    loading = threading.Event()
    window: list[float] = []

    def slow_load(text: str, filename: str = "<policy>") -> Policy:
        if not loading.is_set():
            window.append(time.monotonic())
        loading.set()
        time.sleep(0.3)
        return real_load(text, filename)

    monkeypatch.setattr("rcf.node.policy.admin.load_policy", slow_load)

    stop = threading.Event()
    outcomes: list[tuple[float, str]] = []

    def hammer() -> None:
        client = net.client("AU")
        while not stop.is_set():
            try:
                client.ping(th)
                outcomes.append((time.monotonic(), "ok"))
            except grpc.RpcError as exc:
                outcomes.append((time.monotonic(), reason_of(exc)))

    workers = [threading.Thread(target=hammer) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        time.sleep(0.1)
        reply = apply_over_rpc(th, ping_policy("ping-v2", ["TH", "NZ"]))
        window.append(time.monotonic())
        assert loading.is_set()
        # The very next request is decided by the new version.
        err = refusal_of(lambda: au.ping(th))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(err) == "not_permitted"
        nz.ping(th)
        reply3 = apply_over_rpc(th, ping_policy("ping-v3", ["*"], first="nz-first"))
        au.ping(th)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=10)
    assert reply.version == seeded_version + 1 and reply3.version == seeded_version + 2
    # While version 2 (which refuses AU) was loading, AU was still answered by version 1.
    assert any(result == "ok" and window[0] < t < window[1] - 0.05 for t, result in outcomes)
    assert {result for _, result in outcomes} <= {"ok", "not_permitted"}

    # Every decision was made with one whole stored version, never a mixture.
    stored = {v.version: th.policy.compile(v).rules for v in th.policy.store.versions()}
    by_version: dict[int, set[str | None]] = {}
    for policy, requester, decision in recorder.seen:
        assert policy.version in stored
        assert policy.rules == stored[policy.version]
        assert decision.policy_version == policy.version
        by_version.setdefault(policy.version, set()).add(decision.rule_id)
        if requester == "AU":
            expected = {seeded_version: "ping", reply.version: None, reply3.version: "ping-v3"}
            assert decision.rule_id == expected[policy.version]
    assert by_version[reply.version] <= {None, "ping-v2"}
    last_au = [d for p, r, d in recorder.seen if r == "AU"][-1]
    assert (last_au.policy_version, last_au.rule_id) == (reply3.version, "ping-v3")


def test_rate_limit_holds_across_a_node_restart(net: Network) -> None:
    th = net.nodes["TH"]
    text = ping_policy("ping", ["*"]).replace(
        'query = "Ping"\n', 'query = "Ping"\nrate_limit = { count = 3, per = "day" }\n'
    )
    apply_over_rpc(th, text)
    au = net.client("AU")
    for _ in range(3):
        au.ping(th)
    err = refusal_of(lambda: au.ping(th))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(err) == "limit_reached"
    assert "ping" not in (err.details() or "").lower()
    assert th.audit.records(limit=1)[0].event.reason == "rate_limited"
    net.stop_node("TH")
    th = net.start_node("TH")
    net.refresh_all()
    err = refusal_of(lambda: au.ping(th))
    assert reason_of(err) == "limit_reached"
    net.client("NZ").ping(th)  # NZ's count is its own


def test_bad_policy_over_rpc_changes_nothing(net: Network) -> None:
    th = net.nodes["TH"]
    before = th.policy.store.active()
    with pytest.raises(grpc.RpcError) as info:
        apply_over_rpc(th, ping_policy("ping", ["XX"]))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "test.toml:6: rule 'ping': member 'XX' is not in the network directory" in (
        info.value.details() or ""
    )
    assert th.policy.store.active() == before
    net.client("AU").ping(th)


def test_policy_changes_are_audited_and_signed(net: Network) -> None:
    th = net.nodes["TH"]
    reply = apply_over_rpc(th, ping_policy("ping-sg", ["group:steering-group"]))
    records = [r.event for r in th.audit.records() if r.event.query_type == "PolicyChange"]
    assert [(e.decision, e.reason) for e in records] == [("applied", "seed"), ("applied", "apply")]
    assert records[-1].request_sha256 == reply.source_sha256
    assert records[-1].query_id == f"policy-TH-v{reply.version}"
    err = refusal_of(lambda: net.client("NZ").ping(th))
    assert reason_of(err) == "not_permitted"
    assert th.audit.records(limit=1)[0].event.reason == "not_authorized"
    with operator_stub(th.layout) as (stub, md):
        back = stub.RollbackPolicy(operator_pb2.RollbackPolicyRequest(version=1), metadata=md)
    assert back.version == reply.version + 1
    net.client("NZ").ping(th)


def test_a_tampered_stored_policy_stops_the_node(tmp_path: Path) -> None:
    net = Network(tmp_path)
    try:
        net.start_hub()
        net.add_node("TH")
        net.stop_node("TH")
        import sqlite3

        conn = sqlite3.connect(net.layout("TH").state_db)
        conn.execute("DROP TRIGGER policy_versions_no_update")
        conn.execute("UPDATE policy_versions SET source = replace(source, '\"*\"', '\"AU\"')")
        conn.commit()
        conn.close()
        with pytest.raises(VerificationError, match="altered after it was applied"):
            NodeServer(net.layout("TH"))
    finally:
        net.close()


def test_refused_probes_count_against_the_rate_limit(net: Network) -> None:
    th = net.nodes["TH"]
    text = ping_policy("ping", ["AU"]).replace(
        'query = "Ping"\n',
        'query = "Ping"\npurposes = ["audit"]\nrate_limit = { count = 3, per = "day" }\n',
    )
    apply_over_rpc(th, text)
    au = net.client("AU")
    for _ in range(3):  # probing with a purpose the rule does not grant
        err = refusal_of(lambda: au.ping(th, purpose="investigation"))
        assert reason_of(err) == "not_permitted"
    err = refusal_of(lambda: au.ping(th, purpose="audit"))  # now even the granted one
    assert reason_of(err) == "limit_reached"
    assert th.audit.records(limit=1)[0].event.reason == "rate_limited"


def test_detailed_reasons_only_for_the_requesters_the_policy_names(net: Network) -> None:
    th = net.nodes["TH"]
    text = ping_policy("ping", ["AU", "NZ"]).replace(
        'query = "Ping"\n', 'query = "Ping"\npurposes = ["audit"]\n'
    )
    text = text.replace('member = "TH"\n', 'member = "TH"\ndisclose_reasons_to = ["NZ"]\n')
    apply_over_rpc(th, text)
    nz_err = refusal_of(lambda: net.client("NZ").ping(th, purpose="investigation"))
    au_err = refusal_of(lambda: net.client("AU").ping(th, purpose="investigation"))
    assert reason_of(nz_err) == "purpose_not_allowed"
    assert reason_of(au_err) == "not_permitted"
    assert nz_err.details() == au_err.details()  # the sentence is the same for everyone
