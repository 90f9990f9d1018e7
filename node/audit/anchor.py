"""Anchoring the node's audit log in the hub's log: shipping, kept proofs, witnessing.

Store and forward: the shipped position is the newest ``last_seq`` in
``audit_shipped``, one row per batch the hub accepted, holding the hub's signed
checkpoint and the inclusion proof of the batch's last record. Through the
hash chain that record commits to every earlier one, so one proof per batch
anchors the whole log up to it. A batch is only recorded once the hub answered
with a checkpoint and proof that verify; until then the records stay pending
and are sent again (the hub skips records it already holds, byte for byte), so
a hub outage delays and a crash or restart never loses or duplicates.

Witnessing: the node remembers the last checkpoint it cosigned
(``audit_witness``), asks the hub for a consistency proof to each newer one,
and cosigns (cosignature/v1, its signing key, its member id as witness name)
only if the proof holds. Otherwise it keeps both signed notes and the proof in
``audit_evidence``: a hub that showed two inconsistent logs is caught.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import grpc
import structlog

from rcf.node.audit.chain import AuditLog
from rcf.node.federation.hub_client import hub_error
from rcf.node.ops.state import StateDB
from rcf.protos.v1 import audit_pb2, audit_pb2_grpc
from rcf.trust import checkpoint as cp
from rcf.trust import merkle
from rcf.trust.audit_leaf import encode_leaf
from rcf.trust.clock import now_ms
from rcf.trust.errors import PeerError, RcfError, VerificationError
from rcf.trust.keys import SigningKey
from rcf.trust.signed import sign_document

log = structlog.get_logger("rcf.audit")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit_shipped (last_seq INTEGER PRIMARY KEY,"
    " first_seq INTEGER NOT NULL, last_index INTEGER NOT NULL, tree_size INTEGER NOT NULL,"
    " checkpoint TEXT NOT NULL, proof BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_witness (origin TEXT PRIMARY KEY, note TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_final (origin TEXT PRIMARY KEY, note TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_evidence (id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL,"
    " reason TEXT NOT NULL, detail TEXT NOT NULL, earlier TEXT NOT NULL, later TEXT NOT NULL,"
    " proof BLOB NOT NULL)",
)

BATCH_RECORDS = 1_000
BATCH_BYTES = 900 * 1024  # under the hub's 1 MiB bound, with room for the envelope
RPC_TIMEOUT_S = 10.0
# After an outage the hub is retried at most this far apart (and at once when the
# node sees it back: hub_seen), so a backlog drains within seconds of its return.
BACKOFF_MAX_S = 15.0


def retry_delay(failures: int, interval_s: float) -> float:
    """Seconds before the next attempt after failures consecutive failures (no jitter)."""
    return float(min(BACKOFF_MAX_S, interval_s * 2 ** min(failures, 10)))


def join_proof(proof: list[bytes]) -> bytes:
    return b"".join(proof)


def split_proof(blob: object) -> list[bytes]:
    assert isinstance(blob, bytes)
    return [blob[i : i + merkle.HASH_SIZE] for i in range(0, len(blob), merkle.HASH_SIZE)]


@dataclass(frozen=True)
class ShippedBatch:
    """One accepted batch: records first_seq..last_seq, the last at hub index last_index,
    proven included in the hub-signed checkpoint (a tree of tree_size entries)."""

    first_seq: int
    last_seq: int
    last_index: int
    tree_size: int
    checkpoint: str
    proof: list[bytes]


@dataclass(frozen=True)
class Evidence:
    at_ms: int
    reason: str
    detail: str
    earlier: str
    later: str
    proof: list[bytes]


class AnchorStore:
    """The anchoring tables of one node's state.db."""

    def __init__(self, state: StateDB) -> None:
        self._state = state

        def create(conn: sqlite3.Connection) -> None:
            for stmt in SCHEMA:
                conn.execute(stmt)

        state.run(create)

    def shipped_seq(self) -> int:
        (value,) = self._state.read("SELECT COALESCE(MAX(last_seq), 0) FROM audit_shipped")[0]
        return int(str(value))

    def batches(self, *, after: int = 0, upto: int | None = None) -> list[ShippedBatch]:
        """Accepted batches whose last record is in (after, upto], in seq order."""
        rows = self._state.read(
            "SELECT first_seq, last_seq, last_index, tree_size, checkpoint, proof"
            " FROM audit_shipped WHERE last_seq > ? AND last_seq <= ? ORDER BY last_seq",
            (after, upto if upto is not None else 2**62),
        )
        return [
            ShippedBatch(
                first_seq=int(str(r[0])),
                last_seq=int(str(r[1])),
                last_index=int(str(r[2])),
                tree_size=int(str(r[3])),
                checkpoint=str(r[4]),
                proof=split_proof(r[5]),
            )
            for r in rows
        ]

    def record_batch(self, batch: ShippedBatch) -> None:
        self._state.run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO audit_shipped VALUES (?, ?, ?, ?, ?, ?)",
                (
                    batch.last_seq,
                    batch.first_seq,
                    batch.last_index,
                    batch.tree_size,
                    batch.checkpoint,
                    join_proof(batch.proof),
                ),
            )
        )

    def _note(self, table: str, origin: str) -> str:
        rows = self._state.read(f"SELECT note FROM {table} WHERE origin = ?", (origin,))  # noqa: S608
        return str(rows[0][0]) if rows else ""

    def _set_note(self, table: str, origin: str, note: str) -> None:
        self._state.run(
            lambda conn: conn.execute(
                f"INSERT OR REPLACE INTO {table} VALUES (?, ?)",  # noqa: S608
                (origin, note),
            )
        )

    def witnessed(self, origin: str) -> str:
        """The last checkpoint note this node cosigned for origin ("" if none)."""
        return self._note("audit_witness", origin)

    def set_witnessed(self, origin: str, note: str) -> None:
        self._set_note("audit_witness", origin, note)

    def final(self, origin: str) -> str:
        """The newest final checkpoint (hub-signed, quorum-cosigned) seen ("" if none)."""
        return self._note("audit_final", origin)

    def set_final(self, origin: str, note: str) -> None:
        self._set_note("audit_final", origin, note)

    def add_evidence(self, evidence: Evidence) -> None:
        self._state.run(
            lambda conn: conn.execute(
                "INSERT INTO audit_evidence (at_ms, reason, detail, earlier, later, proof)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    evidence.at_ms,
                    evidence.reason,
                    evidence.detail,
                    evidence.earlier,
                    evidence.later,
                    join_proof(evidence.proof),
                ),
            )
        )

    def evidence(self) -> list[Evidence]:
        rows = self._state.read(
            "SELECT at_ms, reason, detail, earlier, later, proof FROM audit_evidence ORDER BY id"
        )
        return [
            Evidence(int(str(r[0])), str(r[1]), str(r[2]), str(r[3]), str(r[4]),
                     split_proof(r[5]))
            for r in rows
        ]  # fmt: skip


class AuditShipper:
    """Ships the node's records to the hub and witnesses the hub's checkpoints."""

    def __init__(
        self,
        *,
        member_id: str,
        signing_key: SigningKey,
        audit: AuditLog,
        anchor: AnchorStore,
        channel: grpc.Channel,
        hub_public_key: bytes,
        origin: Callable[[], str],
        witnesses: Callable[[], Mapping[str, bytes]],
        batch_records: int = BATCH_RECORDS,
    ) -> None:
        self.member_id = member_id
        self._key = signing_key
        self._audit = audit
        self.anchor = anchor
        self._stub = audit_pb2_grpc.AuditHubStub(channel)
        self._hub_key = hub_public_key
        self._origin = origin
        self._witnesses = witnesses
        self._batch_records = batch_records
        self._lock = threading.Lock()
        self._resume_from: int | None = None
        self._wake = threading.Event()
        self.failures = 0
        self.last_error = ""

    # -- shipping -------------------------------------------------------------

    def _call(self, method: Callable[..., object], request: object) -> object:
        try:
            return method(request, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise hub_error(exc) from exc

    def pending(self) -> int:
        """Records written locally and not yet accepted by the hub."""
        return max(0, self._audit.last_seq() - self.anchor.shipped_seq())

    def ship_once(self) -> int:
        """Send the next batch of pending records; how many the hub confirmed (0: none)."""
        with self._lock:
            return self._ship_locked()

    def _ship_locked(self) -> int:
        after = self.anchor.shipped_seq()
        if self._resume_from is not None:
            after = max(after, self._resume_from)
        records = self._audit.records_after(after, self._batch_records)
        if not records:
            return 0
        leaves: list[bytes] = []
        size = 0
        for rec in records:
            leaf = encode_leaf(self.member_id, rec)
            if leaves and size + len(leaf) > BATCH_BYTES:
                break
            leaves.append(leaf)
            size += len(leaf)
        first_seq = records[0].seq
        batch = audit_pb2.AuditBatch(
            member_id=self.member_id, first_seq=first_seq, leaves=leaves, issued_at_ms=now_ms()
        )
        envelope = sign_document(batch, [self._key]).to_proto()
        try:
            reply = self._call(self._stub.SubmitAudit, envelope)
        except PeerError as exc:
            if exc.reason == "audit_gap":
                # The hub holds less (or more) than we thought: resume from its position.
                position = self._call(self._stub.GetAuditPosition, audit_pb2.AuditPositionRequest())
                assert isinstance(position, audit_pb2.AuditPositionResponse)
                log.warning(
                    "audit_resume_from_hub",
                    member=self.member_id,
                    hub_seq=position.acknowledged_seq,
                )
                self._resume_from = int(position.acknowledged_seq)
            raise
        assert isinstance(reply, audit_pb2.SubmitAuditResponse)
        origin = self._origin()
        checkpoint = cp.open_checkpoint(reply.checkpoint, origin, self._hub_key)
        proof = list(reply.inclusion_proof)
        merkle.verify_inclusion(
            reply.last_index, checkpoint.size, merkle.leaf_hash(leaves[-1]), proof,
            checkpoint.root_hash,
        )  # fmt: skip
        last_seq = first_seq + len(leaves) - 1
        self.anchor.record_batch(
            ShippedBatch(
                first_seq=first_seq,
                last_seq=last_seq,
                last_index=reply.last_index,
                tree_size=checkpoint.size,
                checkpoint=reply.checkpoint,
                proof=proof,
            )
        )
        self._resume_from = None
        log.info("audit_shipped", first_seq=first_seq, last_seq=last_seq, tree_size=checkpoint.size)
        return len(leaves)

    def ship_all(self) -> int:
        """Ship until nothing is pending; the number of records confirmed."""
        total = 0
        while shipped := self.ship_once():
            total += shipped
        return total

    # -- witnessing -----------------------------------------------------------

    def witness(self, note: str) -> cp.WitnessDecision:
        """Check note against the last checkpoint cosigned; cosign it and return the
        cosignature to the hub, or keep evidence. A forged hub signature raises."""
        with self._lock:
            return self._witness_locked(note)

    def _witness_locked(self, note: str) -> cp.WitnessDecision:
        origin = self._origin()
        last_note = self.anchor.witnessed(origin)
        last = cp.open_checkpoint(last_note, origin, self._hub_key) if last_note else None
        state = cp.WitnessState(origin=origin, last=last, last_note=last_note)
        new = cp.open_checkpoint(note, origin, self._hub_key)
        proof: list[bytes] = []
        if last is not None and 0 < last.size < new.size:
            try:
                reply = self._call(
                    self._stub.GetConsistencyProof,
                    audit_pb2.ConsistencyRequest(first_size=last.size, second_size=new.size),
                )
                assert isinstance(reply, audit_pb2.ProofResponse)
                proof = list(reply.hashes)
            except PeerError as exc:
                if exc.reason in ("hub_unreachable", "hub_timeout"):
                    raise
                # A hub that refuses to prove what it signed has no proof: review says so.
                proof = []
        decision = state.review(new, proof, note=note)
        if not decision.cosign:
            evidence = decision.evidence
            self.anchor.add_evidence(
                Evidence(
                    at_ms=now_ms(),
                    reason=decision.reason,
                    detail=evidence.detail if evidence else decision.message,
                    earlier=last_note,
                    later=note,
                    proof=proof,
                )
            )
            log.error("audit_checkpoint_refused", reason=decision.reason, size=new.size)
            return decision
        cosigned = cp.cosign(note, name=self.member_id, key=self._key)
        self._call(self._stub.AddCosignature, audit_pb2.CosignRequest(note=cosigned))
        if last is None or new.size >= last.size:
            self.anchor.set_witnessed(origin, note)
        return decision

    def witness_latest(self) -> cp.WitnessDecision | None:
        """Fetch the hub's newest checkpoint, witness it if new; keep the newest final one."""
        reply = self._call(self._stub.GetCheckpoint, audit_pb2.CheckpointRequest())
        assert isinstance(reply, audit_pb2.CheckpointResponse)
        origin = self._origin()
        if reply.final:
            self._keep_final(origin, reply.final, int(reply.quorum))
        last_note = self.anchor.witnessed(origin)
        if last_note and cp.parse_note(last_note).text == cp.parse_note(reply.latest).text:
            return None
        return self.witness(reply.latest)

    def _keep_final(self, origin: str, note: str, quorum: int) -> None:
        try:
            final = cp.open_final_checkpoint(
                note,
                hub_name=origin,
                hub_public_key=self._hub_key,
                witnesses=self._witnesses(),
                quorum=max(1, min(quorum, len(self._witnesses()) or 1)),
            )
        except (VerificationError, RcfError) as exc:
            log.warning("audit_final_checkpoint_unverified", reason=exc.reason)
            return
        kept = self.anchor.final(origin)
        if kept and cp.parse_checkpoint_body(cp.parse_note(kept).text).size > final.size:
            return
        self.anchor.set_final(origin, note)

    # -- the background loop -------------------------------------------------

    def cycle(self) -> None:
        """Ship everything pending, then witness the newest checkpoint."""
        self.ship_all()
        self.witness_latest()

    def hub_seen(self) -> None:
        """The hub answered someone here (a directory refresh): retry now, backoff reset."""
        if self.failures:
            self.failures = 0
            self._wake.set()

    def wake(self) -> None:
        """End the current wait at once (to stop, or to ship now)."""
        self._wake.set()

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Cycle every interval_s until stop; back off exponentially (capped at
        BACKOFF_MAX_S) while the hub fails, and retry at once when hub_seen()."""
        delay = 0.0
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if stop.is_set():
                return
            try:
                self.cycle()
                self.failures, self.last_error = 0, ""
                delay = interval_s
            except RcfError as exc:
                self.failures += 1
                self.last_error = str(exc)
                delay = retry_delay(self.failures, interval_s)
                delay *= 0.5 + random.random() / 2  # jitter, not a secret
                log.warning("audit_ship_failed", reason=exc.reason, retry_in_s=round(delay, 2))
            except Exception:  # the loop must survive anything one cycle hits
                self.failures += 1
                delay = retry_delay(self.failures, interval_s)
                log.exception("audit_ship_crashed")
