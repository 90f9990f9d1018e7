"""The query types this node answers, and their plain handlers."""

from __future__ import annotations

from node.pipeline import QuerySpec
from node.policy.model import Decision
from protos.rcf.v1 import federation_pb2
from trust.directory import Member

MAX_PING_DATA = 1024

PING = QuerySpec("Ping", federation_pb2.PingRequest, federation_pb2.PingResponse)


def answer_ping(
    request: federation_pb2.PingRequest, requester: Member, decision: Decision
) -> federation_pb2.PingResponse:
    """Echo up to MAX_PING_DATA bytes: proves liveness, keys and the signed round trip."""
    return federation_pb2.PingResponse(data=request.data[:MAX_PING_DATA])
