"""gRPC adapter for the local operator API, guarded by the operator token.

The CLI never holds the member's signing key: it asks its own node, which
signs, sends, verifies and audits.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable

import grpc

from rcf.node.federation.peers import PeerClient
from rcf.node.federation.ping import PING
from rcf.node.policy.admin import Applied, PolicyAdmin
from rcf.protos.v1 import operator_pb2, operator_pb2_grpc
from rcf.trust.errors import RequestRejected
from rcf.trust.serving import refusals_as_status

TOKEN_HEADER = "x-rcf-operator-token"  # noqa: S105 - a header name, not a secret
DEFAULT_PEER_TIMEOUT_MS = 5000
# What a console action may carry (operator.proto, RecordConsoleActionRequest).
_CONSOLE_USER = re.compile(r"[a-z0-9._-]{1,64}")
_CONSOLE_ACTION = re.compile(r"[a-z_]{1,40}")
_CONSOLE_DETAIL = re.compile(r"[ -~]{0,200}")
_QUERY_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def authenticate(context: grpc.ServicerContext, token: bytes) -> None:
    """Refuse a call that does not carry the node's operator token (every operator service)."""
    given = dict(context.invocation_metadata()).get(TOKEN_HEADER, "")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token):
        raise RequestRejected(
            "Wrong or missing operator token.", reason="bad_operator_token",
            status="UNAUTHENTICATED",
        )  # fmt: skip


class OperatorServicer(operator_pb2_grpc.OperatorServicer):
    def __init__(
        self,
        *,
        token: str,
        peers: PeerClient,
        status: Callable[[], operator_pb2.StatusResponse],
        refresh: Callable[[], None],
        policy: PolicyAdmin | None = None,
        record_operations: Callable[[], int] | None = None,
        record_console_action: Callable[[str, str, str, list[str]], str] | None = None,
        audit_log: Callable[[operator_pb2.AuditLogRequest], operator_pb2.AuditLogResponse]
        | None = None,
    ) -> None:
        self._audit_log = audit_log
        self._record_console_action = record_console_action
        self._record_operations = record_operations
        self._token = token.encode()
        self._peers = peers
        self._status = status
        self._refresh = refresh
        self._policy = policy

    def _authenticate(self, context: grpc.ServicerContext) -> None:
        authenticate(context, self._token)

    @refusals_as_status
    def Status(
        self, request: operator_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> operator_pb2.StatusResponse:
        self._authenticate(context)
        return self._status()

    @refusals_as_status
    def RefreshDirectory(
        self, request: operator_pb2.RefreshDirectoryRequest, context: grpc.ServicerContext
    ) -> operator_pb2.StatusResponse:
        self._authenticate(context)
        self._refresh()
        return self._status()

    @refusals_as_status
    def PingPeer(
        self, request: operator_pb2.PingPeerRequest, context: grpc.ServicerContext
    ) -> operator_pb2.PingPeerResponse:
        self._authenticate(context)
        timeout_ms = request.timeout_ms or DEFAULT_PEER_TIMEOUT_MS
        answer = self._peers.call(
            PING,
            responder=request.member_id,
            purpose=request.purpose or "connectivity-check",
            fill=lambda r: setattr(r, "data", b"ping"),
            timeout_s=timeout_ms / 1000,
        )
        return operator_pb2.PingPeerResponse(
            member_id=request.member_id,
            query_id=answer.query_id,
            latency_ms=answer.latency_ms,
            signer_member=answer.signer_member,
            signer_key_id=answer.signer_key_id,
            request_digest_matches=True,
        )

    @refusals_as_status
    def RecordOperations(
        self, request: operator_pb2.RecordOperationsRequest, context: grpc.ServicerContext
    ) -> operator_pb2.RecordOperationsResponse:
        """Audit the data operations (imports, purges) committed since the last call."""
        self._authenticate(context)
        if self._record_operations is None:
            raise RequestRejected(
                "This node does not record operations.", reason="unsupported",
                status="UNIMPLEMENTED",
            )  # fmt: skip
        return operator_pb2.RecordOperationsResponse(audited=self._record_operations())

    @refusals_as_status
    def RecordConsoleAction(
        self, request: operator_pb2.RecordConsoleActionRequest, context: grpc.ServicerContext
    ) -> operator_pb2.RecordConsoleActionResponse:
        """Audit what a console user did, under the account name."""
        self._authenticate(context)
        if self._record_console_action is None:
            raise RequestRejected(
                "This node does not record console actions.", reason="unsupported",
                status="UNIMPLEMENTED",
            )  # fmt: skip
        ids = list(request.query_ids)
        if not (
            _CONSOLE_USER.fullmatch(request.user)
            and _CONSOLE_ACTION.fullmatch(request.action)
            and _CONSOLE_DETAIL.fullmatch(request.detail)
            and len(ids) <= 64
            and all(_QUERY_ID.fullmatch(q) for q in ids)
        ):
            raise RequestRejected(
                "A console action needs a user, an action and a short plain-text detail.",
                reason="invalid_argument", status="INVALID_ARGUMENT",
            )  # fmt: skip
        record_id = self._record_console_action(request.user, request.action, request.detail, ids)
        return operator_pb2.RecordConsoleActionResponse(record_id=record_id)

    @refusals_as_status
    def AuditLog(
        self, request: operator_pb2.AuditLogRequest, context: grpc.ServicerContext
    ) -> operator_pb2.AuditLogResponse:
        """The node's audit log for its console (newest first), and its chain check."""
        self._authenticate(context)
        if self._audit_log is None:
            raise RequestRejected(
                "This node does not show its audit log.", reason="unsupported",
                status="UNIMPLEMENTED",
            )  # fmt: skip
        if request.limit > 1000 or len(request.query_type) > 64 or len(request.member) > 16:
            raise RequestRejected(
                "Ask for at most 1000 records, with a short type and member.",
                reason="invalid_argument", status="INVALID_ARGUMENT",
            )  # fmt: skip
        return self._audit_log(request)

    @refusals_as_status
    def ApplyPolicy(
        self, request: operator_pb2.ApplyPolicyRequest, context: grpc.ServicerContext
    ) -> operator_pb2.ApplyPolicyResponse:
        self._authenticate(context)
        return _applied(self._policy_admin().apply(request.source, request.filename))

    @refusals_as_status
    def RollbackPolicy(
        self, request: operator_pb2.RollbackPolicyRequest, context: grpc.ServicerContext
    ) -> operator_pb2.ApplyPolicyResponse:
        self._authenticate(context)
        return _applied(self._policy_admin().rollback(request.version))

    def _policy_admin(self) -> PolicyAdmin:
        if self._policy is None:
            raise RequestRejected(
                "This node serves no policy administration.", reason="unsupported",
                status="UNIMPLEMENTED",
            )  # fmt: skip
        return self._policy


def _applied(applied: Applied) -> operator_pb2.ApplyPolicyResponse:
    v = applied.version
    return operator_pb2.ApplyPolicyResponse(
        version=v.version,
        source_sha256=v.source_sha256,
        applied_at_ms=v.applied_at_ms,
        warnings=[
            operator_pb2.PolicyIssue(
                severity=i.severity, file=i.file, line=i.line, message=i.message, hint=i.hint
            )
            for i in applied.warnings
        ],
    )
