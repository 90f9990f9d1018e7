"""The ``Alerts`` federation query type: a server stream of the responder's alert log.

Authorised once by the pipeline (any ``Alerts`` rule naming the subscriber
grants the subscription); which alerts and fields each message carries is
decided per alert by the responder's policy at the time it is sent
(``AlertService.stream``). The spec here has no node to serve from; the
registration (``registration.py``) binds it to a node's own service.
"""

from __future__ import annotations

from collections.abc import Iterator

from rcf.node.federation.protocol import Authorized, QuerySpec, invalid_field
from rcf.node.policy.model import ALERTS as ALERTS_QUERY
from rcf.node.policy.model import QueryDescription
from rcf.protos.v1 import alerts_pb2
from rcf.trust.errors import RequestRejected

MAX_POSITION = (1 << 63) - 1


def _validate(request: alerts_pb2.AlertsRequest) -> None:
    if request.after_position > MAX_POSITION:
        raise invalid_field("after_position", f"is above {MAX_POSITION}")


def _describe(request: alerts_pb2.AlertsRequest) -> QueryDescription:
    return QueryDescription(ALERTS_QUERY)


def _not_served(
    authorized: Authorized[alerts_pb2.AlertsRequest],
) -> Iterator[alerts_pb2.AlertsResponse]:
    raise RequestRejected(
        "This node does not serve alerts.", reason="unsupported", status="UNIMPLEMENTED"
    )


ALERTS: QuerySpec[alerts_pb2.AlertsRequest, alerts_pb2.AlertsResponse] = QuerySpec(
    name="Alerts",
    request_cls=alerts_pb2.AlertsRequest,
    response_cls=alerts_pb2.AlertsResponse,
    stream=_not_served,
    validate=_validate,
    describe=_describe,
)
