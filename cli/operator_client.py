"""Connecting the CLI to its own node's operator API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from node.config import NodeLayout
from node.operator import TOKEN_HEADER
from protos.rcf.v1 import operator_pb2_grpc
from trust.errors import ConfigError


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
