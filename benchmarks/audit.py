"""`rcf bench audit`: the hub's regional audit log under load, next to its hashing bound.

Figures (one run, same machine: the ratios are what compare):

- ``appends_per_s``: audit records the hub accepts per second from CLIENTS
  (45) members submitting at once over mutual TLS to a real hub server (a
  child process, `rcf hub serve`), in signed batches of BATCH records. Each
  batch is checked (TLS peer = signer, size, every leaf parsed and hashed,
  chain continuation), appended in one transaction, and answered with a
  signed checkpoint and an inclusion proof. Batches are signed before the
  clock starts. Goal >= 5,000/s.
- ``hash_bound_per_s``: the same leaves through bare hashlib (leaf and interior
  node hashes, as the store computes them): the bound no log can beat.
- ``proof_ms_10m``: mean inclusion-proof generation at 10,000,000 entries,
  from ``rcf bench merkle`` (benchmarks/merkle_log.py). Goal < 1 ms. With
  ``quick`` that benchmark builds 1,000,000 entries and the figure is
  ``proof_ms_1m`` instead.
- ``bytes_per_entry``: the hub's audit-log.db (Merkle nodes, entries, the
  member index and checkpoints) over the entries it holds after the run;
  ``leaf_bytes`` is the mean leaf.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from rcf.benchmarks import merkle_log
from rcf.benchmarks.common import BenchResult, percentile
from rcf.devnet.local_network import LocalNetwork, MemberSpec
from rcf.protos.v1 import audit_pb2, audit_pb2_grpc, envelope_pb2
from rcf.trust import pki
from rcf.trust.audit_leaf import encode_leaf
from rcf.trust.audit_record import GENESIS, AuditEvent, AuditRecord, record_hash
from rcf.trust.signed import sign_document
from rcf.trust.tls import secure_channel

CLIENTS = 45
BATCH = 200
BATCHES = 6
QUICK_BATCHES = 2


def _leaves(member_id: str, key_id: str, count: int) -> list[bytes]:
    """A realistic chain of responder records for member_id."""
    prev = GENESIS
    out = []
    ts = int(time.time() * 1000)
    for seq in range(1, count + 1):
        event = AuditEvent(
            query_id=f"{seq:08d}-0000-4000-8000-{abs(hash(member_id)) % 10**12:012d}",
            query_type="IdentityCheck",
            purpose="irregular-migration-investigation",
            requester="AU",
            responder=member_id,
            side="responder",
            decision="answered",
            reason="ok",
            request_sha256="ab" * 32,
            response_sha256="cd" * 32,
        )
        digest = record_hash(seq, ts + seq, event, prev)
        rec = AuditRecord(seq, ts + seq, event, prev, digest, key_id, None)
        out.append(encode_leaf(member_id, rec))
        prev = digest
    return out


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def run(*, quick: bool = False) -> BenchResult:
    batches = QUICK_BATCHES if quick else BATCHES
    result = BenchResult("audit")
    members = [f"M{i:02d}" for i in range(CLIENTS)]
    with tempfile.TemporaryDirectory(prefix="rcf-bench-audit-") as tmp:
        net = LocalNetwork(Path(tmp))
        net.init_hub([MemberSpec(m, m) for m in members])
        try:
            net.start_hub()
            address = net.hub_layout.read_runtime()["address"]
            prepared: list[tuple[object, list[envelope_pb2.Envelope]]] = []
            all_leaves: list[bytes] = []
            for m in members:
                layout = net.enroll(m)
                key = layout.load_signing_key()
                leaves = _leaves(m, key.key_id, BATCH * batches)
                all_leaves += leaves
                envelopes = [
                    sign_document(
                        audit_pb2.AuditBatch(
                            member_id=m,
                            first_seq=1 + b * BATCH,
                            leaves=leaves[b * BATCH : (b + 1) * BATCH],
                            issued_at_ms=0,
                        ),
                        [key],
                    ).to_proto()
                    for b in range(batches)
                ]
                channel = secure_channel(
                    target=address, tls=layout.load_tls(), server_name=pki.HUB_NAME,
                    max_message_bytes=4 << 20,
                )  # fmt: skip
                prepared.append((audit_pb2_grpc.AuditHubStub(channel), envelopes))
            for stub, _ in prepared:  # warm every connection
                stub.GetCheckpoint(audit_pb2.CheckpointRequest(), timeout=30)  # type: ignore[attr-defined]

            latencies: list[float] = []
            lock = threading.Lock()
            errors: list[BaseException] = []

            def client(stub: object, envelopes: list[envelope_pb2.Envelope]) -> None:
                try:
                    for env in envelopes:
                        t0 = time.perf_counter()
                        stub.SubmitAudit(env, timeout=120)  # type: ignore[attr-defined]
                        with lock:
                            latencies.append((time.perf_counter() - t0) * 1000)
                except BaseException as exc:  # reported after the run
                    errors.append(exc)

            threads = [threading.Thread(target=client, args=p) for p in prepared]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
            if errors:
                raise errors[0]
            total = len(all_leaves)
            hash_s = merkle_log.hash_only([all_leaves], 0, [])
        finally:
            net.stop_all()
        stored = _file_bytes(net.hub_layout.audit_log_db)

    result.add("appends_per_s", total / elapsed,
               f"{CLIENTS} clients, mutual TLS, batches of {BATCH}; goal >= 5,000")  # fmt: skip
    result.add("hash_bound_per_s", total / hash_s, "bound: bare hashlib over the same leaves")
    result.add("append_ratio", (total / elapsed) / (total / hash_s), "appends / hash bound")
    result.add("batch_p50_ms", percentile(latencies, 0.5), "one batch, submit to answer")
    result.add("batch_p99_ms", percentile(latencies, 0.99), "99th percentile")
    result.add("bytes_per_entry", stored / total, "hub audit-log.db / entries")
    result.add("leaf_bytes", sum(map(len, all_leaves)) / total, "mean leaf (the record)")
    merkle = merkle_log.run(quick=quick)
    for name, value in merkle.figures.items():
        if name.startswith(("proof_ms_", "proof_p99_ms_", "consistency_proof_ms_")):
            result.add(name, value, merkle.notes.get(name, ""))
    result.add("merkle_bytes_per_entry", merkle.figures["bytes_per_entry"],
               "the bare Merkle store, 300-byte entries")  # fmt: skip
    return result
