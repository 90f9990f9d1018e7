"""Connecting the CLI to its own node's operator API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from rcf.node.audit.operations import reconcile_operations
from rcf.node.ops.assembly import offline
from rcf.node.ops.config import NodeLayout
from rcf.node.ops.operator import TOKEN_HEADER
from rcf.protos.v1 import aggregate_pb2_grpc, operator_pb2, operator_pb2_grpc
from rcf.trust.errors import ConfigError


@contextmanager
def operator_stub(
    layout: NodeLayout,
) -> Iterator[tuple[operator_pb2_grpc.OperatorStub, tuple[tuple[str, str | bytes], ...]]]:
    """The stub and the metadata (operator token) every call must carry."""
    layout.require()
    runtime = layout.read_runtime()
    try:
        token = layout.operator_token.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"Cannot read the operator token: {exc.strerror}.") from exc
    with grpc.insecure_channel(str(runtime["operator_address"])) as channel:
        yield operator_pb2_grpc.OperatorStub(channel), ((TOKEN_HEADER, token),)


@contextmanager
def operator_channel(
    layout: NodeLayout, *, max_receive_bytes: int = 4 << 20
) -> Iterator[tuple[grpc.Channel, tuple[tuple[str, str | bytes], ...]]]:
    """A channel to the node's operator server, for operator services beside Operator,
    and the token metadata every call must carry."""
    with operator_stub(layout) as (_, md):
        runtime = layout.read_runtime()
        options = [("grpc.max_receive_message_length", max_receive_bytes)]
        with grpc.insecure_channel(str(runtime["operator_address"]), options=options) as channel:
            yield channel, md


@contextmanager
def aggregate_stub(
    layout: NodeLayout,
) -> Iterator[tuple[aggregate_pb2_grpc.AggregateOperatorStub, tuple[tuple[str, str | bytes], ...]]]:
    """The node's aggregate operator service (regional queries) and the token metadata."""
    # 64 MiB: a merged table of the largest grid (20 000 cells) is far below it.
    with operator_channel(layout, max_receive_bytes=64 << 20) as (channel, md):
        yield aggregate_pb2_grpc.AggregateOperatorStub(channel), md


def node_running(layout: NodeLayout) -> bool:
    """Whether the node of this folder is serving (its runtime file names a live process)."""
    if not layout.runtime.exists():
        return False
    try:
        pid = int(layout.read_runtime().get("pid", 0))
        os.kill(pid, 0)
    except (ConfigError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return pid > 0


def record_operations(layout: NodeLayout) -> str:
    """Have the committed data operations audited: by the running node, or offline.

    Returns how it was done, for the user to read.
    """
    if node_running(layout):
        with operator_stub(layout) as (stub, md):
            stub.RecordOperations(operator_pb2.RecordOperationsRequest(), metadata=md, timeout=30)
        return "audited by the running node"
    with offline(layout) as core:
        reconcile_operations(core.layout, core.audit)
    return "node not running: audited offline with its key"
