"""The query types this software speaks, registered once.

The federation server serves exactly these methods and the peer client calls
them by the same specs; adding a query type means adding its module here.
"""

from __future__ import annotations

from typing import Any

from rcf.node.aggregate.responder import AGGREGATE
from rcf.node.alerts.spec import ALERTS
from rcf.node.federation.ping import PING
from rcf.node.federation.protocol import QuerySpec
from rcf.node.identity.checks import IDENTITY_EVALUATE, IDENTITY_FILTER, IDENTITY_LOOKUP

QUERY_TYPES: tuple[QuerySpec[Any, Any], ...] = (
    PING,
    AGGREGATE,
    IDENTITY_EVALUATE,
    IDENTITY_FILTER,
    IDENTITY_LOOKUP,
    ALERTS,
)


def by_name() -> dict[str, QuerySpec[Any, Any]]:
    return {spec.name: spec for spec in QUERY_TYPES}
