"""gRPC adapter for the hub's audit log (service rcf.v1.AuditHub, mutual TLS only)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc

from rcf.hub.audit_log import HubAuditLog
from rcf.protos.v1 import audit_pb2, audit_pb2_grpc, envelope_pb2
from rcf.trust.audit_leaf import witness_keys
from rcf.trust.clock import now_ms
from rcf.trust.directory import Directory, MemberStatus
from rcf.trust.dsse import Envelope
from rcf.trust.errors import RequestRejected, VerificationError
from rcf.trust.serving import refusals_as_status
from rcf.trust.signed import open_document

# A batch is at most this many records and this many bytes (a node ships 1,000 records
# of about 500 bytes); anything larger is refused before its signature is checked.
MAX_BATCH_RECORDS = 1_000
MAX_BATCH_BYTES = 1024 * 1024
SNAPSHOT_TTL_S = 1.0

PeerMember = Callable[[grpc.ServicerContext], str]


class AuditHubServicer(audit_pb2_grpc.AuditHubServicer):
    def __init__(
        self,
        log: HubAuditLog,
        *,
        peer_member: PeerMember,
        snapshot: Callable[[], Directory],
    ) -> None:
        self.log = log
        self._peer_member = peer_member
        self._snapshot_source = snapshot
        self._cached: tuple[float, Directory] | None = None
        self._cache_lock = threading.Lock()

    def snapshot(self) -> Directory:
        """The registry as a directory, re-read at most once a second (keys, statuses)."""
        with self._cache_lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > SNAPSHOT_TTL_S:
                self._cached = (now, self._snapshot_source())
            return self._cached[1]

    def witnesses(self) -> dict[str, bytes]:
        return witness_keys(self.snapshot(), at_ms=now_ms())

    def _open_batch(self, request: envelope_pb2.Envelope, member_id: str) -> audit_pb2.AuditBatch:
        """Verify the batch against member_id's keys; a key the cached registry view does
        not know yet (a node enrolled a moment ago) is looked up once more, fresh."""
        for fresh in (False, True):
            if fresh:
                with self._cache_lock:
                    self._cached = None
            snapshot = self.snapshot()
            member = snapshot.member(member_id)
            if member is None or member.status is MemberStatus.REVOKED:
                raise RequestRejected(f"Member {member_id} may not submit audit records.")
            try:
                return open_document(
                    Envelope.from_proto(request),
                    audit_pb2.AuditBatch,
                    what="audit batch",
                    resolve_key=snapshot.key_resolver(at_ms=now_ms(), member_id=member_id),
                ).message
            except VerificationError as exc:
                if exc.reason == "wrong_signer":
                    raise RequestRejected(
                        f"The audit batch is not signed by {member_id}, the TLS peer.",
                        reason="signer_peer_mismatch",
                    ) from exc
                if fresh or exc.reason not in ("unknown_key", "key_not_valid"):
                    raise
        raise AssertionError("unreachable")

    @refusals_as_status
    def SubmitAudit(
        self, request: envelope_pb2.Envelope, context: grpc.ServicerContext
    ) -> audit_pb2.SubmitAuditResponse:
        member_id = self._peer_member(context)
        if request.ByteSize() > MAX_BATCH_BYTES:
            raise RequestRejected(
                f"An audit batch may be at most {MAX_BATCH_BYTES} bytes.",
                reason="batch_too_large",
                status="INVALID_ARGUMENT",
            )
        batch = self._open_batch(request, member_id)
        if batch.member_id != member_id:
            raise RequestRejected(
                "An audit batch must carry the submitting member's own records.",
                reason="signer_peer_mismatch",
            )
        if len(batch.leaves) > MAX_BATCH_RECORDS:
            raise RequestRejected(
                f"An audit batch may hold at most {MAX_BATCH_RECORDS} records.",
                reason="batch_too_large",
                status="INVALID_ARGUMENT",
            )
        done = self.log.submit(member_id, batch.first_seq, list(batch.leaves))
        return audit_pb2.SubmitAuditResponse(
            last_index=done.last_index,
            acknowledged_seq=done.acknowledged_seq,
            checkpoint=done.checkpoint,
            inclusion_proof=done.inclusion_proof,
            appended=done.appended,
        )

    @refusals_as_status
    def GetAuditPosition(
        self, request: audit_pb2.AuditPositionRequest, context: grpc.ServicerContext
    ) -> audit_pb2.AuditPositionResponse:
        seq, last_hash, _ = self.log.position(self._peer_member(context))
        return audit_pb2.AuditPositionResponse(acknowledged_seq=seq, last_record_hash=last_hash)

    @refusals_as_status
    def GetCheckpoint(
        self, request: audit_pb2.CheckpointRequest, context: grpc.ServicerContext
    ) -> audit_pb2.CheckpointResponse:
        self._peer_member(context)
        latest, final = self.log.latest()
        return audit_pb2.CheckpointResponse(latest=latest, final=final, quorum=self.log.quorum)

    @refusals_as_status
    def GetConsistencyProof(
        self, request: audit_pb2.ConsistencyRequest, context: grpc.ServicerContext
    ) -> audit_pb2.ProofResponse:
        self._peer_member(context)
        proof = self.log.store.consistency_proof(request.first_size, request.second_size)
        return audit_pb2.ProofResponse(hashes=proof)

    @refusals_as_status
    def GetInclusionProof(
        self, request: audit_pb2.InclusionRequest, context: grpc.ServicerContext
    ) -> audit_pb2.ProofResponse:
        self._peer_member(context)
        proof = self.log.store.inclusion_proof(request.index, request.tree_size)
        return audit_pb2.ProofResponse(hashes=proof)

    @refusals_as_status
    def AddCosignature(
        self, request: audit_pb2.CosignRequest, context: grpc.ServicerContext
    ) -> audit_pb2.CosignResponse:
        self._peer_member(context)
        count, final = self.log.add_cosignature(request.note)
        return audit_pb2.CosignResponse(cosignatures=count, final=final)
