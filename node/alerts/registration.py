"""Alerts' registration: the stream spec, and how a node serves and takes in alerts."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rcf.node.alerts.operator import AlertOperatorServicer
from rcf.node.alerts.service import AlertService
from rcf.node.alerts.spec import ALERTS
from rcf.node.alerts.store import AlertStore
from rcf.node.alerts.subscriber import AlertSubscriptions
from rcf.node.federation.binding import NodeServices, OperatorService, QueryType, Served
from rcf.protos.v1 import alerts_pb2, alerts_pb2_grpc

OPERATOR_SERVICE = alerts_pb2.DESCRIPTOR.services_by_name["AlertOperator"].full_name
# How long a node's stop waits for its subscriptions to peers to end.
JOIN_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class AlertsPart:
    """A node's alerts: the log it serves and keeps, and its subscriptions to peers."""

    service: AlertService
    subscriptions: AlertSubscriptions


def bind(services: NodeServices) -> Served[AlertsPart]:
    """The stream served from this node's alert log; its subscriptions to every peer."""
    policy = services.policy
    service = AlertService(
        member_id=services.member_id,
        signing_key=services.signing_key,
        store=AlertStore(services.state),
        audit=services.audit,
        directory=services.directory,
        gate=lambda: policy.gate,
        dictionary=services.dictionary,
    )
    subscriptions = AlertSubscriptions(
        service=service, peers=services.peers, directory=services.directory,
        member_id=services.member_id,
    )  # fmt: skip
    servicer = AlertOperatorServicer(
        token=services.operator_token, service=service, subscriptions=subscriptions
    )

    def stop() -> None:
        # Before the servers stop: open streams end now instead of holding the grace period.
        subscriptions.stop()
        service.close()

    return Served(
        specs=(replace(ALERTS, stream=service.stream),),
        part=AlertsPart(service, subscriptions),
        operators=(
            OperatorService(
                OPERATOR_SERVICE,
                lambda server: alerts_pb2_grpc.add_AlertOperatorServicer_to_server(
                    servicer, server
                ),
            ),
        ),
        start=subscriptions.start if services.pull_from_peers else lambda: None,
        stop=stop,
        close=lambda: subscriptions.join(timeout_s=JOIN_TIMEOUT_S),
    )


QUERY_TYPE = QueryType(name="Alerts", specs=(ALERTS,), bind=bind)
