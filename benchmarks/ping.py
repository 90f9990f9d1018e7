"""`rcf bench ping`: signed, verified, policy-checked, audited Ping round trips against
two bounds measured in the same run:

- **bare**: an unsigned gRPC echo over the same mutual TLS, called the same way
  (sync client, 64 threads in flight): what the pipeline adds, like for like;
- **bare best**: the fastest plain gRPC this machine does with the stock library
  (the same sync echo server, an asyncio client with 64 calls in flight): what a
  user would pick if they wrote it by hand.

The responder (TH) and the echo server are child processes; the requester (AU)
runs in this process through the PeerClient its node uses, so both sides sign,
verify and audit as in service. Signed and bare rounds alternate (the machine is
noisy) and each figure is the median over rounds. CPU per call is read from each
process's own CPU time (this process: ``time.process_time``; a child: its
``/proc/PID/stat`` utime + stime).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import grpc

from rcf.benchmarks.common import BenchResult, percentile
from rcf.benchmarks.echo_server import METHOD
from rcf.devnet.local_network import LocalNetwork, MemberSpec
from rcf.devnet.processes import die_with_parent
from rcf.node.federation.ping import PING
from rcf.node.federation.server import NodeServer
from rcf.trust import pki
from rcf.trust.tls import TlsMaterial, secure_channel

IN_FLIGHT = 64
GOAL_RATIO = 0.6
GOAL_P50_RATIO = 2.5
GOAL_RECORDS_PER_COMMIT = 4
PURPOSE = "connectivity-check"


def _child_cpu_s(pid: int) -> float:
    """utime + stime of a child process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sequential(call: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def _throughput(call: Callable[[], object], total: int) -> float:
    per_worker = total // IN_FLIGHT

    def worker() -> None:
        for _ in range(per_worker):
            call()

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        t0 = time.perf_counter()
        for f in [pool.submit(worker) for _ in range(IN_FLIGHT)]:
            f.result()
        elapsed = time.perf_counter() - t0
    return per_worker * IN_FLIGHT / elapsed


async def _async_throughput(address: str, tls: TlsMaterial, total: int) -> float:
    options = [("grpc.ssl_target_name_override", pki.node_server_name("TH"))]
    async with grpc.aio.secure_channel(address, tls.channel_credentials(), options) as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        per_task = total // IN_FLIGHT

        async def task() -> None:
            for _ in range(per_task):
                await call(b"ping", timeout=10)

        await asyncio.gather(*(task() for _ in range(4)))  # warm up
        t0 = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(IN_FLIGHT)))
        return per_task * IN_FLIGHT / (time.perf_counter() - t0)


class _Cpu:
    """CPU seconds this process and one child spent between start() and stop()."""

    def __init__(self, child_pid: int) -> None:
        self.pid = child_pid
        self.own = self.child = 0.0

    def measure(self, fn: Callable[[], float]) -> float:
        own0, child0 = time.process_time(), _child_cpu_s(self.pid)
        value = fn()
        self.own += time.process_time() - own0
        self.child += _child_cpu_s(self.pid) - child0
        return value


def _audit_counts(state_db: Path) -> tuple[int, int]:
    """(audit records, committed batches): every batch signs its head once."""
    with closing(sqlite3.connect(f"file:{state_db}?mode=ro", uri=True)) as conn:
        records = conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
        batches = conn.execute("SELECT COUNT(*) FROM audit_signatures").fetchone()[0]
    return int(records), int(batches)


def run(*, quick: bool = False) -> BenchResult:
    rounds, sequential_n, total = (3, 150, 1280) if quick else (5, 600, 6400)
    result = BenchResult("ping")
    with tempfile.TemporaryDirectory(prefix="rcf-bench-ping-") as tmp:
        net = LocalNetwork(Path(tmp))
        net.init_hub([MemberSpec("AU", "Australia"), MemberSpec("TH", "Thailand")])
        echo: subprocess.Popen[str] | None = None
        requester: NodeServer | None = None
        try:
            net.start_hub()
            au_layout = net.enroll("AU")
            th_layout = net.enroll("TH")
            net.start_node("TH")
            requester = NodeServer(au_layout)
            requester.refresh_directory()
            echo = subprocess.Popen(
                [sys.executable, "-m", "rcf.benchmarks.echo_server", str(th_layout.root)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=die_with_parent(),  # noqa: PLW1509
            )
            assert echo.stdout is not None
            echo_address = echo.stdout.readline().strip()
            tls = au_layout.load_tls()
            channel = secure_channel(
                target=echo_address,
                tls=tls,
                server_name=pki.node_server_name("TH"),
                max_message_bytes=4 << 20,
            )
            bare_call = channel.unary_unary(
                METHOD, request_serializer=None, response_deserializer=None
            )
            peers = requester.peers

            def signed() -> object:
                return peers.call(PING, responder="TH", purpose=PURPOSE, fill=_fill, timeout_s=10)

            def bare() -> object:
                return bare_call(b"ping", timeout=10)

            for fn in (signed, bare):  # warm both connections and code paths
                _sequential(fn, 50)
            th_cpu, echo_cpu = _Cpu(net.procs["TH"].pid), _Cpu(echo.pid)
            signed_rates, bare_rates, best_rates = [], [], []
            signed_p50, bare_p50, signed_lat_all = [], [], []
            signed_calls = bare_calls = 0
            records0, _ = _audit_counts(th_layout.state_db)
            records_in_throughput = batches_in_throughput = 0
            for _ in range(rounds):
                lat = _sequential(signed, sequential_n)
                signed_p50.append(percentile(lat, 0.5))
                signed_lat_all += lat
                bare_p50.append(percentile(_sequential(bare, sequential_n), 0.5))
                before = _audit_counts(th_layout.state_db)
                signed_rates.append(th_cpu.measure(lambda: _throughput(signed, total)))
                after = _audit_counts(th_layout.state_db)
                records_in_throughput += after[0] - before[0]
                batches_in_throughput += after[1] - before[1]
                bare_rates.append(echo_cpu.measure(lambda: _throughput(bare, total)))
                best_rates.append(asyncio.run(_async_throughput(echo_address, tls, total)))
                signed_calls += total // IN_FLIGHT * IN_FLIGHT
                bare_calls += total // IN_FLIGHT * IN_FLIGHT
            records1, _ = _audit_counts(th_layout.state_db)
            assert records1 - records0 == rounds * (sequential_n + total // IN_FLIGHT * IN_FLIGHT)
            channel.close()
        finally:
            if requester is not None:
                requester.stop(grace=0)
            if echo is not None and echo.stdin is not None:
                echo.stdin.close()
                echo.wait(timeout=10)
            net.stop_all()

    signed_rate, bare_rate = statistics.median(signed_rates), statistics.median(bare_rates)
    best_rate = statistics.median(best_rates)
    s50, b50 = statistics.median(signed_p50), statistics.median(bare_p50)
    per_call = 1e6
    result.add("signed_per_s", signed_rate, f"median of {rounds} rounds, {IN_FLIGHT} in flight")
    result.add("bare_per_s", bare_rate, "bound: unsigned echo, same mutual TLS, same client")
    result.add("bare_best_per_s", best_rate, "bound: sync echo server, asyncio client")
    result.add("throughput_ratio", signed_rate / bare_rate, f"signed/bare, goal >= {GOAL_RATIO}")
    result.add("best_ratio", signed_rate / best_rate, "signed/bare_best")
    result.add("signed_p50_ms", s50, f"sequential, median of {rounds} rounds")
    result.add("signed_p99_ms", percentile(signed_lat_all, 0.99), "sequential, all rounds")
    result.add("bare_p50_ms", b50, "bound: sequential")
    result.add("p50_ratio", s50 / b50, f"signed/bare, goal <= {GOAL_P50_RATIO}")
    result.add(
        "cpu_us_per_call_signed",
        (th_cpu.own + th_cpu.child) / signed_calls * per_call,
        "requester + responder process CPU, throughput rounds",
    )
    result.add("cpu_us_requester_signed", th_cpu.own / signed_calls * per_call, "this process")
    result.add("cpu_us_responder_signed", th_cpu.child / signed_calls * per_call, "TH node")
    result.add(
        "cpu_us_per_call_bare",
        (echo_cpu.own + echo_cpu.child) / bare_calls * per_call,
        "bound: client + echo server process CPU",
    )
    result.add(
        "audit_records_per_commit",
        records_in_throughput / max(batches_in_throughput, 1),
        f"responder, {IN_FLIGHT} in flight; goal >= {GOAL_RECORDS_PER_COMMIT}",
    )
    return result


def _fill(request: object) -> None:
    request.data = b"ping"  # type: ignore[attr-defined]
