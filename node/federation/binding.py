"""How a query type plugs into a node: one ``QueryType`` value per query type.

A ``QueryType`` names the federation specs a requester calls by (messages,
bounds, policy description; no node needed) and has one ``bind`` hook. A
serving node calls ``bind`` once with its ``NodeServices`` and gets back a
``Served``: the same specs bound to the node's state (handlers, release steps),
the query type's operator services, the node-side object it built (``part``:
what the node's own tools and tests reach through ``NodeServer.served``) and
its start/stop hooks. The list of registered query types is in
``rcf.node.federation.registry``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from rcf.node.audit.chain import AuditLog
from rcf.node.federation.directory_cache import DirectoryCache
from rcf.node.federation.peers import PeerClient
from rcf.node.federation.protocol import QuerySpec
from rcf.node.ops.config import NodeConfig, NodeLayout
from rcf.node.ops.state import StateDB
from rcf.node.policy.admin import PolicyAdmin
from rcf.trust.dictionary import DataDictionary
from rcf.trust.keys import SigningKey

P = TypeVar("P")


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class NodeServices:
    """What a query type may use from the node that serves it."""

    layout: NodeLayout
    config: NodeConfig
    signing_key: SigningKey
    state: StateDB
    audit: AuditLog
    directory: DirectoryCache
    policy: PolicyAdmin
    peers: PeerClient
    # The node's data dictionary, re-read when the hub publishes a new one.
    dictionary: Callable[[], DataDictionary]
    operator_token: str
    # False: serve, but take nothing in from peers in the background (tests that
    # count audit records).
    pull_from_peers: bool = True

    @property
    def member_id(self) -> str:
        return self.config.member_id


@dataclass(frozen=True)
class OperatorService:
    """One gRPC service on the node's operator port (127.0.0.1, operator token)."""

    name: str  # its full name, for health checking and reflection
    add: Callable[[grpc.Server], None]


@dataclass(frozen=True)
class Served(Generic[P]):
    """A query type bound to one node.

    ``start`` runs once the node's servers listen (background work such as
    subscriptions); ``stop`` before they stop (end open streams); ``close``
    after they stopped (release files, join threads)."""

    specs: tuple[QuerySpec[Any, Any], ...]
    part: P
    operators: tuple[OperatorService, ...] = ()
    start: Callable[[], None] = _nothing
    stop: Callable[[], None] = _nothing
    close: Callable[[], None] = _nothing


@dataclass(frozen=True)
class QueryType(Generic[P]):
    """One query type: its federation specs and how a node serves them."""

    name: str
    specs: tuple[QuerySpec[Any, Any], ...]
    bind: Callable[[NodeServices], Served[P]]


def served_as_is(name: str, *specs: QuerySpec[Any, Any]) -> QueryType[None]:
    """A query type whose handlers need nothing from the node (Ping)."""
    return QueryType(name=name, specs=specs, bind=lambda services: Served(specs=specs, part=None))


def check_registrations(query_types: Iterable[QueryType[Any]]) -> None:
    """Refuse two query types with one name or one federation method (the second
    would silently shadow the first)."""
    names: set[str] = set()
    methods: set[str] = set()
    for query_type in query_types:
        if query_type.name in names:
            raise ValueError(f"The query type {query_type.name} is registered twice.")
        names.add(query_type.name)
        for spec in query_type.specs:
            if spec.name in methods:
                raise ValueError(f"Two query types serve the federation method {spec.name}.")
            methods.add(spec.name)


def bind_all(
    query_types: Iterable[QueryType[Any]], services: NodeServices
) -> dict[str, Served[Any]]:
    """Every query type bound to one node, by name. A bound query type serves exactly
    the methods it declares (what requesters call by) and operator services no other
    one adds."""
    query_types = tuple(query_types)
    check_registrations(query_types)
    served: dict[str, Served[Any]] = {}
    operators: set[str] = set()
    for query_type in query_types:
        bound = served[query_type.name] = query_type.bind(services)
        declared = [spec.name for spec in query_type.specs]
        if [spec.name for spec in bound.specs] != declared:
            raise ValueError(
                f"The query type {query_type.name} bound other methods than it declares."
            )
        for op in bound.operators:
            if op.name in operators:
                raise ValueError(f"Two query types add the operator service {op.name}.")
            operators.add(op.name)
    return served
