"""Ping: a signed round trip that proves liveness, keys and the pipeline end to end."""

from __future__ import annotations

from rcf.node.federation.binding import served_as_is
from rcf.node.federation.protocol import Authorized, QuerySpec, check_bytes
from rcf.protos.v1 import federation_pb2

MAX_PING_DATA = 1024


def _validate(request: federation_pb2.PingRequest) -> None:
    check_bytes(request.data, "data", max_bytes=MAX_PING_DATA)


def answer_ping(authorized: Authorized[federation_pb2.PingRequest]) -> federation_pb2.PingResponse:
    """Echo the request's data."""
    return federation_pb2.PingResponse(data=authorized.request.data)


PING = QuerySpec(
    name="Ping",
    request_cls=federation_pb2.PingRequest,
    response_cls=federation_pb2.PingResponse,
    answer=answer_ping,
    validate=_validate,
)

# Ping's handler needs nothing from the node: it is served as it is.
QUERY_TYPE = served_as_is("Ping", PING)
