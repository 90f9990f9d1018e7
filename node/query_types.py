"""The query types this software speaks, registered once.

The federation server serves exactly these methods and the peer client calls
them by the same specs; adding a query type means adding its module here.
"""

from __future__ import annotations

from typing import Any

from node.aggregate_query import AGGREGATE
from node.alerts.spec import ALERTS
from node.identity.checks import IDENTITY_EVALUATE, IDENTITY_LOOKUP
from node.ping import PING
from node.protocol import QuerySpec

QUERY_TYPES: tuple[QuerySpec[Any, Any], ...] = (
    PING,
    AGGREGATE,
    IDENTITY_EVALUATE,
    IDENTITY_LOOKUP,
    ALERTS,
)


def by_name() -> dict[str, QuerySpec[Any, Any]]:
    return {spec.name: spec for spec in QUERY_TYPES}
