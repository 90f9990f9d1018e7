"""The bound for `rcf bench alerts`: one bare gRPC server-stream message to N subscribers.

``python -m benchmarks.alerts_bare serve NODE_DIR`` serves, over the same mutual
TLS as a node, a ``Listen`` server stream and a unary ``Fire`` that sends one
message to every open stream; it prints its address and serves until stdin
closes. ``python -m benchmarks.alerts_bare listen ADDRESS NODE_DIR SERVER_MEMBER``
opens one stream and prints one line per message: no signing, policy or storage.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc

from rcf.node.ops.config import NodeLayout
from rcf.trust import pki
from rcf.trust.serving import bind, build_server
from rcf.trust.tls import secure_channel

SERVICE = "rcf.bench.AlertsBare"


class _Hub:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.seq = 0
        self.listeners = 0
        self.payload = b""

    def listen(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        with self.cond:
            self.listeners += 1
            seen = self.seq
        yield b"ready"
        try:
            while context.is_active():
                with self.cond:
                    # wait_for rechecks seq first: a Fire between two waits is never missed.
                    if not self.cond.wait_for(self._after(seen), timeout=1.0):
                        continue
                    seen, payload = self.seq, self.payload
                yield payload
        finally:
            with self.cond:
                self.listeners -= 1

    def _after(self, seen: int) -> Callable[[], bool]:
        return lambda: self.seq > seen

    def fire(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self.cond:
            self.seq += 1
            self.payload = request
            self.cond.notify_all()
            return str(self.listeners).encode()


def serve(node_dir: str) -> None:
    tls = NodeLayout(Path(node_dir)).load_tls()
    server, _ = build_server(max_workers=256, max_message_bytes=4 << 20, service_names=[SERVICE])
    hub = _Hub()
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Listen": grpc.unary_stream_rpc_method_handler(hub.listen),
            "Fire": grpc.unary_unary_rpc_method_handler(hub.fire),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    address = bind(server, "127.0.0.1:0", tls.server_credentials())
    server.start()
    print(address, flush=True)
    sys.stdin.read()
    server.stop(0).wait()


def listen(address: str, node_dir: str, server_member: str) -> None:
    tls = NodeLayout(Path(node_dir)).load_tls()
    channel = secure_channel(
        target=address,
        tls=tls,
        server_name=pki.node_server_name(server_member),
        max_message_bytes=4 << 20,
    )
    call = channel.unary_stream(
        f"/{SERVICE}/Listen", request_serializer=None, response_deserializer=None
    )
    try:
        for message in call(b"", wait_for_ready=True):
            sys.stdout.write(message.decode(errors="replace") + "\n")
            sys.stdout.flush()
    except grpc.RpcError:
        return


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        listen(sys.argv[2], sys.argv[3], sys.argv[4])
