"""The console's only way to its node: the operator API on 127.0.0.1 with the operator
token, as the CLI uses it. Nothing here opens the node's keys or databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from rcf.cli.operator_client import operator_channel
from rcf.node.ops.config import NodeLayout
from rcf.protos.v1 import (
    aggregate_pb2,
    aggregate_pb2_grpc,
    alerts_pb2,
    alerts_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    operator_pb2,
    operator_pb2_grpc,
)
from rcf.trust.errors import ConfigError
from rcf.trust.status import read_refusal

MiB = 1 << 20


def describe(exc: grpc.RpcError) -> str:
    """One sentence for a failed operator call, without the node's internals."""
    code = exc.code() if isinstance(exc, grpc.Call) else None
    if code == grpc.StatusCode.UNAVAILABLE:
        return "The node is not answering; ask the node operator to check that it runs."
    detail = (exc.details() if isinstance(exc, grpc.Call) else "") or ""
    reason = read_refusal(exc).reason
    if reason == "not_permitted":
        return "Not permitted by the node."
    return detail.splitlines()[0] if detail else "The node could not do that."


class NodeApi:
    """Typed calls to one node's operator services."""

    def __init__(self, node_dir: Path) -> None:
        self.layout = NodeLayout(node_dir)

    @contextmanager
    def _channel(self) -> Iterator[tuple[grpc.Channel, tuple[tuple[str, str | bytes], ...]]]:
        try:
            with operator_channel(self.layout, max_receive_bytes=64 * MiB) as (channel, md):
                yield channel, md
        except ConfigError:
            raise
        except OSError as exc:
            raise ConfigError(f"Cannot reach the node: {exc.strerror}.") from exc

    def status(self) -> operator_pb2.StatusResponse:
        with self._channel() as (ch, md):
            reply: operator_pb2.StatusResponse = operator_pb2_grpc.OperatorStub(ch).Status(
                operator_pb2.StatusRequest(), metadata=md, timeout=10
            )
            return reply

    def record(self, user: str, action: str, detail: str = "", query_ids: list[str] | None = None
               ) -> str:  # fmt: skip
        """Audit a console user's action in the node's log; returns the record's id."""
        with self._channel() as (ch, md):
            reply = operator_pb2_grpc.OperatorStub(ch).RecordConsoleAction(
                operator_pb2.RecordConsoleActionRequest(
                    user=user, action=action, detail=detail, query_ids=query_ids or []
                ),
                metadata=md,
                timeout=10,
            )
            return str(reply.record_id)

    def check(
        self,
        dataset: str,
        subjects: list[identity_pb2.CheckSubject],
        *,
        responders: list[str],
        regional: bool,
        purpose: str,
    ) -> list[identity_pb2.IdentityCheckUpdate]:
        """Run an identity or document check; the final update of each responder."""
        request = identity_pb2.IdentityCheckRequest(
            dataset=dataset, subjects=subjects, responders=responders, regional=regional,
            purpose=purpose,
        )  # fmt: skip
        with self._channel() as (ch, md):
            stub = identity_pb2_grpc.IdentityOperatorStub(ch)
            return [u for u in stub.Check(request, metadata=md, timeout=600) if u.done]

    def alerts(self) -> list[alerts_pb2.AlertRecord]:
        with self._channel() as (ch, md):
            reply = alerts_pb2_grpc.AlertOperatorStub(ch).List(
                alerts_pb2.ListAlertsRequest(), metadata=md, timeout=10
            )
            return list(reply.alerts)

    def apply_policy(self, source: str, filename: str) -> operator_pb2.ApplyPolicyResponse:
        with self._channel() as (ch, md):
            reply: operator_pb2.ApplyPolicyResponse = operator_pb2_grpc.OperatorStub(
                ch
            ).ApplyPolicy(
                operator_pb2.ApplyPolicyRequest(source=source, filename=filename),
                metadata=md,
                timeout=30,
            )
            return reply

    def audit_log(
        self, *, limit: int = 200, query_type: str = "", member: str = "", verify: bool = False
    ) -> operator_pb2.AuditLogResponse:
        """The node's newest audit records (filtered) and, with verify, its chain check."""
        with self._channel() as (ch, md):
            reply: operator_pb2.AuditLogResponse = operator_pb2_grpc.OperatorStub(ch).AuditLog(
                operator_pb2.AuditLogRequest(
                    limit=limit, query_type=query_type, member=member, verify=verify
                ),
                metadata=md,
                timeout=300,
            )
            return reply

    def rollback_policy(self, version: int) -> operator_pb2.ApplyPolicyResponse:
        """Make an earlier policy version active again (stored as a new version)."""
        with self._channel() as (ch, md):
            reply: operator_pb2.ApplyPolicyResponse = operator_pb2_grpc.OperatorStub(
                ch
            ).RollbackPolicy(
                operator_pb2.RollbackPolicyRequest(version=version), metadata=md, timeout=30
            )
            return reply

    def aggregate(
        self, request: aggregate_pb2.AggregateOperatorRequest
    ) -> aggregate_pb2.RegionalAggregate:
        """An aggregate query to the chosen members or the region, merged by the node."""
        with self._channel() as (ch, md):
            reply: aggregate_pb2.RegionalAggregate = aggregate_pb2_grpc.AggregateOperatorStub(
                ch
            ).QueryAggregate(request, metadata=md, timeout=request.deadline_ms / 1000 + 10)
            return reply

    def raise_alert(self, draft: alerts_pb2.AlertDraft) -> alerts_pb2.AlertRecord:
        with self._channel() as (ch, md):
            reply: alerts_pb2.AlertRecord = alerts_pb2_grpc.AlertOperatorStub(ch).Raise(
                alerts_pb2.RaiseAlertRequest(draft=draft), metadata=md, timeout=30
            )
            return reply

    def withdraw_alert(self, alert_id: str) -> alerts_pb2.AlertRecord:
        with self._channel() as (ch, md):
            reply: alerts_pb2.AlertRecord = alerts_pb2_grpc.AlertOperatorStub(ch).Withdraw(
                alerts_pb2.WithdrawAlertRequest(alert_id=alert_id), metadata=md, timeout=30
            )
            return reply

    @contextmanager
    def watch(self) -> Iterator[Any]:
        """The node's live alert events (raised, received, …); cancel() the yielded call
        to end it."""
        layout = self.layout
        with operator_channel(layout) as (ch, md):
            call = alerts_pb2_grpc.AlertOperatorStub(ch).Watch(
                alerts_pb2.WatchAlertsRequest(), metadata=md
            )
            try:
                yield call
            finally:
                call.cancel()  # type: ignore[no-untyped-call]
