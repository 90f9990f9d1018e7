"""gRPC adapter for the alert part of the operator API (``rcf alert …``), same token."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from rcf.node.alerts.model import AlertError
from rcf.node.alerts.service import AlertService, record
from rcf.node.alerts.subscriber import AlertSubscriptions
from rcf.node.identity.errors import MrzError
from rcf.node.identity.mrz import parse_mrz
from rcf.node.ops.operator import authenticate
from rcf.protos.v1 import alerts_pb2, alerts_pb2_grpc
from rcf.trust.errors import RequestRejected
from rcf.trust.serving import refusals_as_status
from rcf.trust.status import abort_with

WATCH_WAKE_S = 5.0  # how often a quiet watch checks that its caller is still there


class AlertOperatorServicer(alerts_pb2_grpc.AlertOperatorServicer):
    def __init__(
        self, *, token: str, service: AlertService, subscriptions: AlertSubscriptions | None
    ) -> None:
        self._token = token.encode()
        self._service = service
        self._subscriptions = subscriptions

    @refusals_as_status
    def Raise(
        self, request: alerts_pb2.RaiseAlertRequest, context: grpc.ServicerContext
    ) -> alerts_pb2.AlertRecord:
        authenticate(context, self._token)
        return record(self._service.raise_alert(request.draft), self._service)

    @refusals_as_status
    def Update(
        self, request: alerts_pb2.UpdateAlertRequest, context: grpc.ServicerContext
    ) -> alerts_pb2.AlertRecord:
        authenticate(context, self._token)
        held = self._service.update_alert(request.alert_id, request.changes, tuple(request.clear))
        return record(held, self._service)

    @refusals_as_status
    def Withdraw(
        self, request: alerts_pb2.WithdrawAlertRequest, context: grpc.ServicerContext
    ) -> alerts_pb2.AlertRecord:
        authenticate(context, self._token)
        return record(self._service.withdraw_alert(request.alert_id), self._service)

    @refusals_as_status
    def List(
        self, request: alerts_pb2.ListAlertsRequest, context: grpc.ServicerContext
    ) -> alerts_pb2.ListAlertsResponse:
        authenticate(context, self._token)
        out = []
        for held in self._service.latest():
            rec = record(held, self._service)
            if request.own_only and held.via:
                continue
            if request.received_only and not held.via:
                continue
            if not request.include_inactive and (rec.expired or held.alert.withdrawn):
                continue
            out.append(rec)
        return alerts_pb2.ListAlertsResponse(alerts=out)

    @refusals_as_status
    def Show(
        self, request: alerts_pb2.ShowAlertRequest, context: grpc.ServicerContext
    ) -> alerts_pb2.ShowAlertResponse:
        authenticate(context, self._token)
        versions = self._service.versions(request.alert_id)
        return alerts_pb2.ShowAlertResponse(versions=[record(v, self._service) for v in versions])

    @refusals_as_status
    def Check(
        self, request: alerts_pb2.CheckDocumentRequest, context: grpc.ServicerContext
    ) -> alerts_pb2.CheckDocumentResponse:
        authenticate(context, self._token)
        if request.mrz:
            if request.document_number or request.issuing_state:
                raise AlertError(
                    "Give either an MRZ or a document number and issuer, not both.",
                    reason="invalid_field",
                )
            try:
                document = parse_mrz(request.mrz.replace("\\n", "\n"))
            except MrzError as exc:
                raise AlertError(f"The MRZ is malformed: {exc}", reason="bad_mrz") from exc
            number, issuer = document.document_number, document.issuing_state
        else:
            number, issuer = request.document_number, request.issuing_state
            if not number or not issuer:
                raise AlertError(
                    "Give an MRZ, or a document number and its issuing state.",
                    reason="invalid_field",
                )
        hits, checked = self._service.check(number, issuer)
        return alerts_pb2.CheckDocumentResponse(
            matches=[
                alerts_pb2.AlertMatch(alert=record(held, self._service), matched_on=how)
                for held, how in hits
            ],
            alerts_checked=checked,
        )

    def Watch(
        self, request: alerts_pb2.WatchAlertsRequest, context: grpc.ServicerContext
    ) -> Iterator[alerts_pb2.AlertEvent]:
        try:
            authenticate(context, self._token)
        except RequestRejected as exc:
            abort_with(context, exc)
        seq = self._service.event_seq()
        while context.is_active() and not self._service.closed:
            seq, events = self._service.wait_events(seq, WATCH_WAKE_S)
            yield from events

    @refusals_as_status
    def Subscriptions(
        self, request: alerts_pb2.SubscriptionsRequest, context: grpc.ServicerContext
    ) -> alerts_pb2.SubscriptionsResponse:
        authenticate(context, self._token)
        if request.reconnect and self._subscriptions is not None:
            self._subscriptions.reconnect()
        cursors = self._service.store.cursors()
        states = self._subscriptions.states if self._subscriptions is not None else {}
        members = sorted(set(cursors) | set(states))
        return alerts_pb2.SubscriptionsResponse(
            subscriptions=[
                alerts_pb2.Subscription(
                    member_id=m,
                    position=cursors.get(m, 0),
                    state=states[m].state if m in states else "none",
                    last_error=states[m].last_error if m in states else "",
                    connected_since_ms=states[m].connected_since_ms if m in states else 0,
                )
                for m in members
            ],
            own_log_position=self._service.store.log_head(),
        )
