"""A bare, unsigned gRPC echo over the same mutual-TLS setup as a node: the bound
that `rcf bench ping` compares the signed pipeline against.

Run as ``python -m benchmarks.echo_server NODE_DIR``; prints its address on
stdout and serves until stdin closes or SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc

from rcf.node.ops.config import NodeLayout
from rcf.trust.serving import bind, build_server

SERVICE = "rcf.bench.Echo"
METHOD = f"/{SERVICE}/Echo"


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def main() -> None:
    layout = NodeLayout(Path(sys.argv[1]))
    tls = layout.load_tls()
    server, _ = build_server(max_workers=16, max_message_bytes=4 << 20, service_names=[SERVICE])
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    address = bind(server, "127.0.0.1:0", tls.server_credentials())
    server.start()
    print(address, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop(0).wait()


if __name__ == "__main__":
    main()
