"""What requester and responder both need to know about a federation query.

One ``QuerySpec`` per query type says everything about it once: its name (the
Federation RPC method), its request and response messages, whether the
responder streams, how its fields are bounded, what the sharing policy needs to
know of it, and the responder's handler and release step. The federation
server and the peer client are both built from the registered specs
(``rcf.node.federation.registry``), so a new query type is one package and its
proto messages.

The limits here are the ones ``protos/PROTOCOL.md`` states normatively.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

from rcf.node.policy.model import Decision, QueryDescription
from rcf.protos.v1 import envelope_pb2
from rcf.trust.directory import Member
from rcf.trust.errors import RequestRejected
from rcf.trust.signed import payload_type

FEDERATION_SERVICE = "rcf.v1.Federation"

MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 64
# A query id is a UUID in its canonical lower-case text form, unique per requester.
QUERY_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Purposes come from the data dictionary; this bounds them before it is consulted.
PURPOSE_RE = re.compile(r"^[a-z][a-z0-9-]{1,47}$")
MAX_MEMBER_ID_CHARS = 16


class HasRequestHeader(Protocol):
    @property
    def header(self) -> envelope_pb2.RequestHeader: ...

    def ParseFromString(self, serialized: bytes, /) -> int: ...

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


class HasResponseHeader(Protocol):
    @property
    def header(self) -> envelope_pb2.ResponseHeader: ...

    def ParseFromString(self, serialized: bytes, /) -> int: ...

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


Req = TypeVar("Req", bound=HasRequestHeader)
Resp = TypeVar("Resp", bound=HasResponseHeader)


@dataclass(frozen=True)
class Authorized(Generic[Req]):
    """A request that passed every check of the pipeline, with what decided it."""

    request: Req
    requester: Member
    decision: Decision
    query_id: str
    purpose: str
    request_sha256: bytes


def _unchanged(response: Resp, authorized: Authorized[Req]) -> Resp:
    return response


def _no_fields(request: Req) -> None:
    return None


@dataclass(frozen=True)
class QuerySpec(Generic[Req, Resp]):
    """Everything about one query type, registered once.

    ``validate`` bounds the request's own fields (raise ``invalid_field``);
    ``describe`` tells the policy what the request asks; ``answer`` (unary) or
    ``stream`` (server streaming) is the responder's handler; ``release`` is
    the query type's disclosure control, applied to every response before it
    is signed.
    """

    name: str
    request_cls: type[Req]
    response_cls: type[Resp]
    answer: Callable[[Authorized[Req]], Resp] | None = None
    stream: Callable[[Authorized[Req]], Iterator[Resp]] | None = None
    release: Callable[[Resp, Authorized[Req]], Resp] = _unchanged
    validate: Callable[[Req], None] = _no_fields
    describe: Callable[[Req], QueryDescription] | None = None

    def __post_init__(self) -> None:
        if (self.answer is None) == (self.stream is None):
            raise TypeError(f"{self.name}: give exactly one of answer and stream")

    @property
    def streaming(self) -> bool:
        return self.stream is not None

    @property
    def method(self) -> str:
        """The gRPC method path: /rcf.v1.Federation/<name>."""
        return f"/{FEDERATION_SERVICE}/{self.name}"

    @property
    def request_type(self) -> str:
        return payload_type(self.request_cls)  # type: ignore[arg-type]

    @property
    def response_type(self) -> str:
        return payload_type(self.response_cls)  # type: ignore[arg-type]

    def description(self, request: Req, purpose: str) -> QueryDescription:
        """What the policy decides on; the query type is the spec's name unless describe
        names the policy query type it is governed by."""
        query = self.describe(request) if self.describe else QueryDescription(self.name)
        return replace(query, purpose=purpose)


def invalid_field(field: str, rule: str) -> RequestRejected:
    """The refusal for a request field out of bounds: names the field, never its value."""
    return RequestRejected(
        f"The request's {field} {rule}.", reason="invalid_field", status="INVALID_ARGUMENT"
    )


def check_bytes(value: bytes, field: str, *, max_bytes: int) -> None:
    if len(value) > max_bytes:
        raise invalid_field(field, f"is longer than {max_bytes} bytes")


def valid_query_id(query_id: str) -> bool:
    return bool(QUERY_ID_RE.match(query_id))


def valid_purpose_form(purpose: str) -> bool:
    return bool(PURPOSE_RE.match(purpose))
