"""`rcf bench alerts`: an alert raised at one node until every other member node holds it
verified, next to a bare gRPC server-stream message to as many subscribers.

The network is real: a hub and one `rcf node serve` process per member, mutual
TLS between them. TH raises; every other node subscribes to TH's alert stream
(and to every other node, as deployed). The benchmark raises through TH's
operator API and learns through each subscriber's operator ``Watch`` stream when
that node has verified and stored the alert; the figure is the time until the
last of them has. The bound, measured in the same run, is one message on a
bare gRPC server stream (no signing, policy, audit or storage) from one server
process to the same number of subscriber processes over the same mutual TLS.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

from rcf.benchmarks.common import BenchResult, percentile
from rcf.cli.operator_client import operator_channel
from rcf.devnet.local_network import LocalNetwork, MemberSpec
from rcf.devnet.processes import die_with_parent
from rcf.protos.v1 import alerts_pb2, alerts_pb2_grpc, operator_pb2, operator_pb2_grpc
from rcf.trust import pki
from rcf.trust.tls import secure_channel

RAISER = "TH"
GOAL_P99_MS = 1000.0
POLICY = """[policy]
member = "TH"

[[rule]]
id = "ping"
requesters = ["*"]
query = "Ping"

[[rule]]
id = "alerts-to-all"
requesters = ["*"]
query = "Alerts"
categories = ["counterfeit"]
fields = ["issuing_state", "document_type", "document_number", "series"]
"""


def _members(count: int) -> list[MemberSpec]:
    return [MemberSpec(RAISER, "Thailand")] + [
        MemberSpec(f"M{i:02d}", f"Member {i}") for i in range(1, count)
    ]


def _watch(net: LocalNetwork, member_id: str, arrivals: queue.Queue[tuple[str, str, float]],
           ready: threading.Event, stop: threading.Event) -> None:  # fmt: skip
    with operator_channel(net.node_layout(member_id)) as (channel, md):
        stub = alerts_pb2_grpc.AlertOperatorStub(channel)
        call = stub.Watch(alerts_pb2.WatchAlertsRequest(), metadata=md)
        ready.set()
        try:
            for event in call:
                if event.kind == "received":
                    arrivals.put((member_id, event.alert.alert.series, time.perf_counter()))
                if stop.is_set():
                    break
        except grpc.RpcError:
            return
        finally:
            call.cancel()  # type: ignore[no-untyped-call]


def _wait_subscribed(net: LocalNetwork, subscribers: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = set(subscribers)
    while pending:
        for member_id in sorted(pending):
            with operator_channel(net.node_layout(member_id)) as (channel, md):
                stub = alerts_pb2_grpc.AlertOperatorStub(channel)
                r = stub.Subscriptions(
                    alerts_pb2.SubscriptionsRequest(reconnect=True), metadata=md, timeout=10
                )
            if any(s.member_id == RAISER and s.state == "connected" for s in r.subscriptions):
                pending.discard(member_id)
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} nodes did not subscribe to {RAISER}")
        time.sleep(0.5)


def _fanout(net: LocalNetwork, subscribers: list[str], alerts: int) -> list[float]:
    arrivals: queue.Queue[tuple[str, str, float]] = queue.Queue()
    stop = threading.Event()
    for member_id in subscribers:
        ready = threading.Event()
        threading.Thread(
            target=_watch, args=(net, member_id, arrivals, ready, stop), daemon=True
        ).start()
        ready.wait(10)
    time.sleep(0.5)  # let every Watch call reach its node
    samples = []
    with operator_channel(net.node_layout(RAISER)) as (channel, md):
        stub = alerts_pb2_grpc.AlertOperatorStub(channel)
        for i in range(alerts):
            series = f"BN{i:05d}"
            draft = alerts_pb2.AlertDraft(
                category="counterfeit", issuing_state="THA", document_type="passport",
                series=series, severity="high",
            )  # fmt: skip
            t0 = time.perf_counter()
            stub.Raise(alerts_pb2.RaiseAlertRequest(draft=draft), metadata=md, timeout=30)
            got: set[str] = set()
            last = t0
            while len(got) < len(subscribers):
                member_id, got_series, at = arrivals.get(timeout=30)
                if got_series == series:
                    got.add(member_id)
                    last = max(last, at)
            samples.append((last - t0) * 1000)
    stop.set()
    return samples


def _bare(net: LocalNetwork, subscribers: list[str], rounds: int) -> list[float]:
    py = sys.executable
    server = subprocess.Popen(
        [py, "-m", "rcf.benchmarks.alerts_bare", "serve", str(net.node_layout(RAISER).root)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent(),  # noqa: PLW1509
    )  # fmt: skip
    assert server.stdout is not None
    address = server.stdout.readline().strip()
    lines: queue.Queue[tuple[str, str, float]] = queue.Queue()
    listeners = []

    def read(member_id: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put((member_id, line.strip(), time.perf_counter()))

    try:
        for member_id in subscribers:
            proc = subprocess.Popen(
                [py, "-m", "rcf.benchmarks.alerts_bare", "listen", address,
                 str(net.node_layout(member_id).root), RAISER],
                stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent(),  # noqa: PLW1509
            )  # fmt: skip
            listeners.append(proc)
            threading.Thread(target=read, args=(member_id, proc), daemon=True).start()
        ready = 0
        deadline = time.monotonic() + 600  # 44 interpreters start on a loaded machine
        while ready < len(subscribers):
            if lines.get(timeout=max(1.0, deadline - time.monotonic()))[1] == "ready":
                ready += 1
        channel = secure_channel(
            target=address,
            tls=net.node_layout(subscribers[0]).load_tls(),
            server_name=pki.node_server_name(RAISER),
            max_message_bytes=4 << 20,
        )
        fire = channel.unary_unary(
            "/rcf.bench.AlertsBare/Fire", request_serializer=None, response_deserializer=None
        )
        samples = []
        for i in range(rounds):
            tag = f"m{i}"
            t0 = time.perf_counter()
            fire(tag.encode() + b"x" * 600, timeout=10)
            got: set[str] = set()
            last = t0
            while len(got) < len(subscribers):
                member_id, text, at = lines.get(timeout=30)
                if text.startswith(tag + "x"):
                    got.add(member_id)
                    last = max(last, at)
            samples.append((last - t0) * 1000)
        channel.close()
        return samples
    finally:
        for proc in listeners:
            proc.terminate()
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)
        for proc in listeners:
            proc.wait(timeout=10)


def run(*, quick: bool = False) -> BenchResult:
    nodes, alerts = (10, 20) if quick else (45, 100)
    result = BenchResult("alerts")
    members = _members(nodes)
    subscribers = [m.member_id for m in members if m.member_id != RAISER]
    with tempfile.TemporaryDirectory(prefix="rcf-bench-alerts-") as tmp:
        net = LocalNetwork(Path(tmp))
        net.init_hub(members)
        try:
            net.start_hub()
            for m in members:
                net.enroll(m.member_id)
            for m in members:
                net.start_node(m.member_id)
            for m in members:
                with operator_channel(net.node_layout(m.member_id)) as (channel, md):
                    operator_pb2_grpc.OperatorStub(channel).RefreshDirectory(
                        operator_pb2.RefreshDirectoryRequest(), metadata=md, timeout=30
                    )
            with operator_channel(net.node_layout(RAISER)) as (channel, md):
                operator_pb2_grpc.OperatorStub(channel).ApplyPolicy(
                    operator_pb2.ApplyPolicyRequest(source=POLICY, filename="bench.toml"),
                    metadata=md,
                    timeout=30,
                )
            _wait_subscribed(net, subscribers, timeout_s=120)
            _fanout(net, subscribers, 3)  # warm every path once
            fanout = _fanout(net, subscribers, alerts)
            bare = _bare(net, subscribers, alerts)
        finally:
            net.stop_all()
    result.add("subscribers", len(subscribers), "member nodes holding each alert, verified")
    result.add("alerts", alerts, "quick run: fewer nodes and alerts" if quick else "")
    result.add("fanout_p50_ms", percentile(fanout, 0.5), "raise → last subscriber verified")
    result.add(
        "fanout_p99_ms", percentile(fanout, 0.99), f"goal < {GOAL_P99_MS:.0f} ms; bound below"
    )
    result.add("bare_stream_p50_ms", percentile(bare, 0.5), "bare gRPC stream, same mutual TLS")
    result.add("bare_stream_p99_ms", percentile(bare, 0.99), "bare gRPC stream, same mutual TLS")
    result.add(
        "fanout_ratio",
        percentile(fanout, 0.99) / percentile(bare, 0.99),
        "fanout_p99_ms / bare_stream_p99_ms",
    )
    return result
