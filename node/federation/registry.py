"""The query types this node software speaks, each registered once.

A query type is one package (``rcf.node.aggregate``, ``rcf.node.identity``,
``rcf.node.alerts``; Ping lives in ``rcf.node.federation.ping``) that exposes
one ``QUERY_TYPE`` value (``rcf.node.federation.binding.QueryType``):

* ``specs``: its federation ``QuerySpec``\\ s, one per ``rcf.v1.Federation``
  method (request and response messages, field bounds, what the policy is told).
  A requester's peer client calls by these, without a node of its own.
* ``bind(services)``: given what a node offers (``NodeServices``: member id,
  signing key, state.db, audit log, directory, policy, peer client, data
  dictionary, layout, operator token), the same specs with the node's handlers
  and release steps, the query type's operator services (name and how to add
  them to the operator server), the node-side object it built, and its
  start/stop/close hooks.

``NodeServer`` binds every registered query type once, serves exactly the
methods of their bound specs on the Federation service and adds exactly their
operator services (beside the node's own ``Operator``) to the operator port,
each named for health checking and reflection. Nothing in the server names a
particular query type. Adding a query type is its package, its messages in
``protos/rcf/v1`` (and its ``rpc`` on ``Federation``), its section of
``protos/PROTOCOL.md``, and one line here.
"""

from __future__ import annotations

from typing import Any

from rcf.node.aggregate.registration import QUERY_TYPE as AGGREGATE
from rcf.node.alerts.registration import QUERY_TYPE as ALERTS
from rcf.node.federation.binding import QueryType
from rcf.node.federation.ping import QUERY_TYPE as PING
from rcf.node.federation.protocol import QuerySpec
from rcf.node.identity.registration import QUERY_TYPE as IDENTITY

QUERY_TYPES: tuple[QueryType[Any], ...] = (PING, AGGREGATE, IDENTITY, ALERTS)


def specs(query_types: tuple[QueryType[Any], ...] = QUERY_TYPES) -> tuple[QuerySpec[Any, Any], ...]:
    """Every federation spec of query_types, unbound (what a requester calls by)."""
    return tuple(spec for query_type in query_types for spec in query_type.specs)
