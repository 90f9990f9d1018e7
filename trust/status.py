"""Refusals on the wire: a gRPC status with one sentence and a structured reason.

Every refusal is a gRPC status whose message is one sentence for a person and
whose details (the ``grpc-status-details-bin`` trailer, a ``google.rpc.Status``)
carry one ``google.rpc.ErrorInfo`` with the machine-readable reason code and
domain ``rcf.v1``. Clients read the reason from there, never from the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from rcf.trust.errors import RcfError

DOMAIN = "rcf.v1"
# gRPC trailers are small; a sentence longer than this is cut (ours are short).
MAX_MESSAGE_CHARS = 512


def status_code(name: str) -> grpc.StatusCode:
    """The gRPC status code an error's ``status`` names (INTERNAL if unknown)."""
    return getattr(grpc.StatusCode, name, grpc.StatusCode.INTERNAL)


def rich_status(
    code: grpc.StatusCode, message: str, reason: str, metadata: Mapping[str, str] | None = None
) -> grpc.Status:
    """A gRPC status carrying ErrorInfo(reason, domain rcf.v1, metadata)."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=dict(metadata or {}))
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(
        code=code.value[0], message=message[:MAX_MESSAGE_CHARS], details=[detail]
    )
    return rpc_status.to_status(status)


def abort_with(context: grpc.ServicerContext, error: RcfError) -> NoReturn:
    """End the call with the error's status code, sentence and reason code."""
    context.abort_with_status(
        rich_status(status_code(error.status), error.message, error.reason, error.metadata)
    )
    raise AssertionError("abort_with_status returned")  # pragma: no cover - it always raises


@dataclass(frozen=True)
class Refusal:
    """What a client learns from a failed call."""

    code: grpc.StatusCode
    reason: str  # "" when the status carried no ErrorInfo (e.g. a transport failure)
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)


def read_refusal(exc: grpc.RpcError) -> Refusal:
    """The status code, reason code and sentence of a failed call."""
    if not isinstance(exc, grpc.Call):
        return Refusal(grpc.StatusCode.UNKNOWN, "", "The call failed.")
    code = exc.code()
    message = exc.details() or ""
    try:
        status = rpc_status.from_call(exc)
    except ValueError:
        status = None  # details that contradict the status line: trust neither
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.domain == DOMAIN:
                return Refusal(code, info.reason, status.message, dict(info.metadata))
    return Refusal(code, "", message)


def transport_failure(message: str) -> str:
    """A few words for why a connection failed, instead of gRPC's raw text (which names
    internal addresses and library states that mean nothing to an operator)."""
    text = message.lower()
    for needle, words in (
        ("connection refused", "connection refused: nothing listens there"),
        ("dns", "the host name does not resolve"),
        ("name resolution", "the host name does not resolve"),
        ("handshake", "the TLS handshake failed"),
        ("ssl", "the TLS handshake failed"),
        ("certificate", "the TLS handshake failed"),
        ("timeout", "the connection timed out"),
        ("timed out", "the connection timed out"),
        ("no route", "no route to the host"),
        ("unreachable", "no route to the host"),
        ("reset", "the connection was reset"),
    ):
        if needle in text:
            return words
    return "no connection"
