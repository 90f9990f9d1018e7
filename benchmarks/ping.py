"""`rcf bench ping`: signed, verified, audited Ping round trips against a bare
unsigned gRPC echo over the same mutual-TLS setup, measured in the same run.

The responder (TH) and the echo server run as child processes; the requester
(AU) runs in this process through the same PeerClient its node uses, so both
sides sign, verify and write audit records exactly as in service.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import BenchResult, percentile
from benchmarks.echo_server import METHOD
from cli.local_network import LocalNetwork, MemberSpec
from node.ping import PING
from node.server import NodeServer
from trust import pki
from trust.tls import secure_channel

IN_FLIGHT = 64
GOAL_RATIO = 0.6
GOAL_P50_MS = 1.5


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


def run(*, quick: bool = False) -> BenchResult:
    sequential_n, total = (200, 1280) if quick else (1000, 6400)
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
                [sys.executable, "-m", "benchmarks.echo_server", str(th_layout.root)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert echo.stdout is not None
            echo_address = echo.stdout.readline().strip()
            channel = secure_channel(
                target=echo_address,
                tls=au_layout.load_tls(),
                server_name=pki.node_server_name("TH"),
                max_message_bytes=4 << 20,
            )
            bare_call = channel.unary_unary(
                METHOD, request_serializer=None, response_deserializer=None
            )
            peers = requester.peers

            def signed() -> object:
                return peers.call(PING, responder="TH", purpose="bench", fill=_fill, timeout_s=10)

            def bare() -> object:
                return bare_call(b"ping", timeout=10)

            for fn in (signed, bare):  # warm both connections and code paths
                _sequential(fn, 50)
            signed_lat = _sequential(signed, sequential_n)
            bare_lat = _sequential(bare, sequential_n)
            signed_rate = _throughput(signed, total)
            bare_rate = _throughput(bare, total)
            channel.close()
        finally:
            if requester is not None:
                requester.stop(grace=0)
            if echo is not None and echo.stdin is not None:
                echo.stdin.close()
                echo.wait(timeout=10)
            net.stop_all()

    result.add("signed_per_s", signed_rate, f"bound: bare_per_s ({IN_FLIGHT} in flight)")
    result.add("bare_per_s", bare_rate, "bare unsigned echo, same mutual TLS")
    ratio = signed_rate / bare_rate
    result.add("throughput_ratio", ratio, f"goal >= {GOAL_RATIO}")
    result.add(
        "signed_p50_ms", percentile(signed_lat, 0.5), f"goal < {GOAL_P50_MS} ms; bound: bare_p50_ms"
    )
    result.add("signed_p99_ms", percentile(signed_lat, 0.99), "sequential")
    result.add("bare_p50_ms", percentile(bare_lat, 0.5), "sequential")
    result.add("bare_p99_ms", percentile(bare_lat, 0.99), "sequential")
    return result


def _fill(request: object) -> None:
    request.data = b"ping"  # type: ignore[attr-defined]
