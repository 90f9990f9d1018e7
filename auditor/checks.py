"""What an auditor checks, over node folders and the hub's audit log file.

How an auditor reaches the logs: it reads node folders and the hub folder (the
live ones on this machine, or copies: ``rcf node backup``, a copy of the hub's
``audit-log.db``), read-only, and trusts none of them: node logs are checked
against their signatures and the hub log, the hub log against checkpoints
signed by the hub and cosigned by a quorum of witnesses (keys from the signed
directory), and each final checkpoint against the last one this auditor
trusted (a consistency proof).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcf.hub.audit_log import AuditLogReader
from rcf.hub.layout import HubLayout
from rcf.node.audit.anchor import AnchorStore, ShippedBatch
from rcf.node.audit.archive import iter_all_records, segment_batches
from rcf.node.audit.chain import AuditLog
from rcf.node.federation.directory_cache import DirectoryCache
from rcf.node.ops.config import NodeLayout
from rcf.node.ops.state import StateDB
from rcf.trust import checkpoint as cp
from rcf.trust import merkle
from rcf.trust.audit_leaf import AuditLeaf, decode_leaf, encode_leaf, log_origin, witness_keys
from rcf.trust.audit_record import GENESIS, AuditRecord, verify_chain
from rcf.trust.clock import now_ms
from rcf.trust.errors import ConfigError, RcfError, VerificationError
from rcf.trust.files import write_private

BUNDLE_FORMAT = "rcf-audit-bundle/1"


@dataclass
class NodeView:
    """One node's folder, opened read-only."""

    member_id: str
    root: Path
    state: StateDB
    audit: AuditLog
    anchor: AnchorStore
    keys: dict[str, bytes]
    hub_key: bytes
    origin: str
    witnesses: dict[str, bytes]

    def records(self) -> Iterator[AuditRecord]:
        return iter_all_records(self.state, self.root, self.audit)

    def batches(self) -> list[ShippedBatch]:
        return segment_batches(self.state, self.root) + self.anchor.batches()

    def close(self) -> None:
        self.state.close()


def open_node(path: Path) -> NodeView:
    layout = NodeLayout(path)
    config = layout.load_config()
    directory = DirectoryCache(layout.directory_cache, hub_public_key=config.hub_public_key).peek()
    state = StateDB(layout.state_db, sync=config.audit_sync)
    member = directory.member(config.member_id)
    keys = {k.key_id: k.public_key for k in member.signing_keys} if member else {}
    return NodeView(
        member_id=config.member_id,
        root=path,
        state=state,
        audit=AuditLog(state, None),
        anchor=AnchorStore(state),
        keys=keys,
        hub_key=config.hub_public_key,
        origin=log_origin(directory.network),
        witnesses=witness_keys(directory, at_ms=now_ms()),
    )


@dataclass
class NodeResult:
    member_id: str
    records: int = 0
    shipped: int = 0
    anchored: int = 0  # records compared with the hub's copy
    batches: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class HubResult:
    entries: int = 0
    final_size: int = 0
    cosignatures: int = 0
    trusted_size: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    nodes: list[NodeResult]
    hub: HubResult | None

    @property
    def problems(self) -> list[str]:
        found = list(self.hub.problems) if self.hub else []
        for n in self.nodes:
            found += n.problems
        return found


@dataclass
class FinalView:
    note: str
    checkpoint: cp.Checkpoint


# -- the hub log ---------------------------------------------------------------


def verify_hub(
    reader: AuditLogReader,
    *,
    origin: str,
    hub_key: bytes,
    witnesses: Mapping[str, bytes],
    quorum: int,
    trusted_note: str,
) -> tuple[HubResult, FinalView | None]:
    """Check the final checkpoint's signatures, its consistency with the trusted one, and
    that the hub's stored entries hash to it (naming the first altered entry)."""
    result = HubResult(entries=reader.store.size())
    note = reader.final_note(quorum)
    if not note:
        if result.entries:
            result.problems.append(
                f"The hub log has no checkpoint cosigned by {quorum} witnesses yet."
            )
        return result, None
    try:
        final = cp.open_checkpoint(note, origin, hub_key)
        result.cosignatures = len(cp.verify_cosignatures(note, witnesses, quorum))
    except (VerificationError, ConfigError) as exc:
        result.problems.append(f"The hub's final checkpoint does not verify: {exc}")
        return result, None
    result.final_size = final.size
    if trusted_note:
        try:
            trusted = cp.open_checkpoint(trusted_note, origin, hub_key)
            result.trusted_size = trusted.size
            if final.size < trusted.size:
                raise VerificationError(
                    f"The final checkpoint has {final.size} entries, fewer than the "
                    f"{trusted.size} this auditor already trusted.",
                    reason="smaller_size",
                )
            if trusted.size > 0:
                proof = (
                    reader.store.consistency_proof(trusted.size, final.size)
                    if trusted.size < final.size
                    else []
                )
                merkle.verify_consistency(
                    trusted.size, final.size, proof, trusted.root_hash, final.root_hash
                )
        except VerificationError as exc:
            result.problems.append(
                f"The hub's log is not consistent with the checkpoint this auditor trusted: {exc}"
            )
            return result, None
    # Recompute the root from the stored entries; on a mismatch, name the entry.
    stack: list[bytes] = []
    chains: dict[str, tuple[int, str]] = {}
    for index in range(final.size):
        data = reader.store.entry(index)
        h = merkle.leaf_hash(data)
        try:
            leaf = decode_leaf(data)
        except VerificationError as exc:
            result.problems.append(f"Hub log entry {index} is not a valid audit leaf: {exc}")
            return result, None
        seq, prev = chains.get(leaf.member_id, (0, GENESIS))
        if leaf.record.seq != seq + 1 or leaf.record.prev_hash != prev:
            result.problems.append(
                f"Hub log entry {index} ({leaf.member_id} record {leaf.record.seq}) does not "
                f"continue {leaf.member_id}'s chain."
            )
            return result, None
        chains[leaf.member_id] = (leaf.record.seq, leaf.record.record_hash)
        if h != reader.store.leaf_hash(index):
            result.problems.append(
                f"Hub log entry {index} ({leaf.member_id} record {leaf.record.seq}) was altered "
                "after it was appended."
            )
            return result, None
        size = index + 1
        while size & 1 == 0:
            h = merkle.node_hash(stack.pop(), h)
            size >>= 1
        stack.append(h)
    root = merkle.fold_right(stack) if stack else merkle.EMPTY_ROOT
    if root != final.root_hash:
        result.problems.append(
            "The hub's stored log does not hash to its final checkpoint's root: it was altered."
        )
        return result, None
    return result, FinalView(note, final)


# -- one node ---------------------------------------------------------------------


def _anchored(
    view: NodeView,
    records: Iterator[AuditRecord],
    hub: AuditLogReader | None,
    heads: dict[int, ShippedBatch],
    result: NodeResult,
) -> Iterator[AuditRecord]:
    """Records as they stream by, each compared with the hub's copy and the kept proofs."""
    member = view.member_id
    hub_last = hub.position(member)[0] if hub is not None else 0
    for rec in records:
        leaf = encode_leaf(member, rec)
        if hub is not None and rec.seq <= hub_last:
            index = hub.leaf_index(member, rec.seq)
            if index is None or hub.store.entry(index) != leaf:
                raise VerificationError(
                    f"Audit record {rec.seq} of {member} differs from the copy anchored in the "
                    "hub log.",
                    reason="audit_anchor_mismatch",
                )
            result.anchored += 1
        batch = heads.get(rec.seq)
        if batch is not None:
            try:
                signed = cp.open_checkpoint(batch.checkpoint, view.origin, view.hub_key)
                merkle.verify_inclusion(
                    batch.last_index, signed.size, merkle.leaf_hash(leaf), batch.proof,
                    signed.root_hash,
                )  # fmt: skip
            except VerificationError as exc:
                raise VerificationError(
                    f"Audit record {rec.seq} of {member} does not match the inclusion proof the "
                    f"node kept from the hub ({exc})",
                    reason="audit_anchor_mismatch",
                ) from exc
        yield rec


def verify_node(
    view: NodeView,
    hub: AuditLogReader | None,
    final: FinalView | None,
    *,
    progress: Callable[[int], None] | None = None,
) -> NodeResult:
    """The node's chain (across segments), its anchoring in the hub log, and no truncation."""
    member = view.member_id
    result = NodeResult(member)
    problems = view.audit.quick_check()
    if problems:
        result.problems.append(f"{member}: state.db is damaged ({problems[0]}).")
        return result
    batches = view.batches()
    heads = {b.last_seq: b for b in batches}
    result.batches = len(batches)
    result.shipped = max(heads, default=0)
    try:
        result.records = verify_chain(
            _anchored(view, view.records(), hub, heads, result), view.keys, progress=progress
        )
    except RcfError as exc:
        result.problems.append(f"{member}: {exc}")
        return result
    expected = result.shipped
    if hub is not None:
        expected = max(expected, hub.position(member)[0])
    if result.records < expected:
        result.problems.append(
            f"{member}: audit records {result.records + 1} to {expected} were shipped to the hub "
            "but are missing from the node's log (it was truncated)."
        )
    for e in view.anchor.evidence():
        result.problems.append(
            f"{member} refused to cosign a hub checkpoint ({e.reason}: {e.detail}); the evidence "
            "is in its state.db."
        )
    if hub is not None and final is not None:
        result.problems += _kept_consistent(view, hub, final, batches)
    return result


def _kept_consistent(
    view: NodeView, hub: AuditLogReader, final: FinalView, batches: list[ShippedBatch]
) -> list[str]:
    """Every checkpoint the node kept must be one log with the final checkpoint."""
    seen: set[str] = set()
    found = []
    f = final.checkpoint
    for batch in batches:
        if batch.checkpoint in seen:
            continue
        seen.add(batch.checkpoint)
        try:
            c = cp.open_checkpoint(batch.checkpoint, view.origin, view.hub_key)
            small, big = (c, f) if c.size <= f.size else (f, c)
            if small.size == 0:
                continue
            proof = (
                hub.store.consistency_proof(small.size, big.size) if small.size < big.size else []
            )
            merkle.verify_consistency(small.size, big.size, proof, small.root_hash, big.root_hash)
        except (VerificationError, RcfError) as exc:
            found.append(
                f"{view.member_id}: the hub checkpoint of size {batch.tree_size} it kept is not "
                f"consistent with the final checkpoint: the hub showed different logs ({exc})"
            )
    return found


# -- cross-checking both sides of every query ----------------------------------------


@dataclass(frozen=True)
class Mismatch:
    query_id: str
    requester: str
    responder: str
    problem: str
    failing: bool


@dataclass(frozen=True)
class EarlyRefusal:
    """A request the responder refused before its application saw it (say, signed by a
    key its directory did not list yet): the responder logged it without a query id, so
    it is matched by requester and request digest, and it is no mismatch."""

    query_id: str
    requester: str
    responder: str
    reason: str


@dataclass(frozen=True)
class CrossCheck:
    matched: int
    mismatches: list[Mismatch]
    refused_early: list[EarlyRefusal]

    @property
    def failing(self) -> list[Mismatch]:
        return [m for m in self.mismatches if m.failing]


def _should_reach(decision: str, reason: str) -> bool:
    """Whether a requester-side record means the responder saw (and logged) the request.

    A refusal with a reason code came from the responder's pipeline, which logs it; one
    without (a bare ``refused``: cancelled, a server shutting down) came from its gRPC
    layer before any of our code saw the request."""
    return decision == "answered" or reason.startswith("refused:")


def crosscheck(views: list[NodeView]) -> CrossCheck:
    """Match requester and responder records by query id (or, for a request refused
    before its query id was read, by requester and request digest)."""
    reachable = {v.member_id for v in views}
    sides: dict[tuple[str, str], dict[str, list[AuditRecord]]] = {}
    # Responder records of requests refused before the query id was checked.
    early: dict[tuple[str, str, str], str] = {}
    for view in views:
        for rec in view.records():
            e = rec.event
            if e.side == "responder" and not e.query_id and e.requester and e.request_sha256:
                early[(e.responder, e.requester, e.request_sha256)] = e.reason
            if e.side not in ("requester", "responder") or not e.query_id or not e.requester:
                continue
            key = (e.query_id, e.requester)
            sides.setdefault(key, {}).setdefault(e.side, []).append(rec)
    matched = 0
    found: list[Mismatch] = []
    refused_early: list[EarlyRefusal] = []
    for (query_id, requester), by_side in sorted(sides.items()):
        req, resp = by_side.get("requester", []), by_side.get("responder", [])
        responder = (req or resp)[0].event.responder
        if req and not resp:
            if responder not in reachable:
                continue
            reasons = [early.get((responder, requester, r.event.request_sha256)) for r in req]
            if all(reasons):
                refused_early.append(EarlyRefusal(query_id, requester, responder, str(reasons[0])))
                continue
            should = any(_should_reach(r.event.decision, r.event.reason) for r in req)
            found.append(Mismatch(query_id, requester, responder,
                                  "logged by the requester only", should))  # fmt: skip
            continue
        if resp and not req:
            if requester not in reachable:
                continue
            found.append(Mismatch(query_id, requester, responder,
                                  "logged by the responder only", True))  # fmt: skip
            continue
        req_digests = {r.event.request_sha256 for r in req} | {r.event.request_sha256 for r in resp}
        if len(req_digests - {""}) > 1:
            found.append(Mismatch(query_id, requester, responder,
                                  "request digests differ", True))  # fmt: skip
            continue
        a = {r.event.response_sha256 for r in req} - {""}
        b = {r.event.response_sha256 for r in resp} - {""}
        if a and not a <= b:
            found.append(Mismatch(query_id, requester, responder,
                                  "response digests differ", True))  # fmt: skip
            continue
        matched += 1
    return CrossCheck(matched, found, refused_early)


# -- the auditor's trust anchor ------------------------------------------------------


def hub_verifier_key(hub_dir: Path) -> tuple[cp.VerifierKey, str]:
    """The hub's checkpoint key (as a vkey) and its final cosigned checkpoint note, read
    from the hub folder: what the hub operator hands an auditor out of band."""
    layout = HubLayout(hub_dir)
    config = layout.load_config()
    key = cp.VerifierKey(log_origin(config.network), layout.load_signing_key().public_key)
    note = AuditLogReader(layout.audit_log_db).final_note(config.audit_quorum)
    if not note:
        raise ConfigError("The hub log has no cosigned checkpoint yet; try after nodes shipped.")
    return key, note


def first_trusted(note_text: str, hub_key: cp.VerifierKey) -> cp.Checkpoint:
    """Check a checkpoint obtained out of band against the hub's published key."""
    try:
        return cp.open_checkpoint(note_text, hub_key.name, hub_key.public_key)
    except (VerificationError, ConfigError) as exc:
        raise VerificationError(
            f"The checkpoint is not signed by the hub key given: {exc}", reason="untrusted"
        ) from exc


# -- proof bundles -----------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def make_bundle(reader: AuditLogReader, final: FinalView, query_id: str) -> dict[str, Any]:
    """Every hub-log record of query_id, each with its inclusion proof in the final tree."""
    entries = []
    for index in range(final.checkpoint.size):
        data = reader.store.entry(index)
        if query_id.encode() not in data:
            continue
        leaf = decode_leaf(data)
        if leaf.record.event.query_id != query_id:
            continue
        proof = reader.store.inclusion_proof(index, final.checkpoint.size)
        entries.append({"index": index, "leaf": _b64(data), "proof": [_b64(h) for h in proof]})
    if not entries:
        raise ConfigError(
            f"No record of query {query_id} is in the hub log's final checkpoint yet.",
            reason="not_found",
        )
    return {
        "format": BUNDLE_FORMAT,
        "origin": final.checkpoint.origin,
        "query_id": query_id,
        "checkpoint": final.note,
        "entries": entries,
    }


def write_bundle(path: Path, bundle: dict[str, Any]) -> None:
    write_private(path, json.dumps(bundle, indent=1) + "\n")


@dataclass(frozen=True)
class BundleKeys:
    """What check-bundle trusts: the hub's note key, the witnesses' cosignature keys, quorum."""

    hub: cp.VerifierKey
    witnesses: tuple[cp.VerifierKey, ...]
    quorum: int


def bundle_keys_text(view: NodeView, quorum: int) -> str:
    """The keys file for check-bundle: C2SP vkeys from a node's signed directory."""
    lines = [f"hub {cp.VerifierKey(view.origin, view.hub_key).encode()}"]
    for name, key in sorted(view.witnesses.items()):
        lines.append(f"witness {cp.VerifierKey(name, key, cp.SIG_COSIGNATURE_V1).encode()}")
    lines.append(f"quorum {quorum}")
    return "\n".join(lines) + "\n"


def parse_keys(text: str) -> BundleKeys:
    hub: cp.VerifierKey | None = None
    witnesses: list[cp.VerifierKey] = []
    quorum = 1
    for number, line in enumerate(text.splitlines(), start=1):
        kind, _, value = line.strip().partition(" ")
        if not kind or kind.startswith("#"):
            continue
        if kind == "hub":
            hub = cp.parse_verifier_key(value.strip())
        elif kind == "witness":
            witnesses.append(cp.parse_verifier_key(value.strip()))
        elif kind == "quorum" and value.strip().isdigit():
            quorum = int(value)
        else:
            raise ConfigError(
                f"Line {number} of the keys file is not 'hub', 'witness' or 'quorum'."
            )
    if hub is None or hub.sig_type != cp.SIG_ED25519:
        raise ConfigError("The keys file names no Ed25519 hub key.")
    if any(w.sig_type != cp.SIG_COSIGNATURE_V1 for w in witnesses):
        raise ConfigError("Witness keys in the keys file must be cosignature/v1 keys.")
    return BundleKeys(hub, tuple(witnesses), quorum)


def check_bundle(bundle: Any, keys: BundleKeys) -> list[AuditLeaf]:
    """Verify a proof bundle with only the hub's and witnesses' keys; the records it proves."""
    bad = VerificationError("The file is not an audit proof bundle.", reason="malformed_bundle")
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise bad
    try:
        note, entries, query_id = bundle["checkpoint"], bundle["entries"], bundle["query_id"]
        if not (isinstance(note, str) and isinstance(entries, list) and isinstance(query_id, str)):
            raise bad
        if bundle.get("origin") != keys.hub.name:
            raise VerificationError(
                "The bundle proves records of another log than the one these keys are for.",
                reason="wrong_origin",
            )
        checkpoint = cp.open_checkpoint(note, keys.hub.name, keys.hub.public_key)
        if bundle.get("origin") != checkpoint.origin:
            raise bad
        cp.verify_cosignatures(note, {w.name: w.public_key for w in keys.witnesses}, keys.quorum)
        records: list[AuditLeaf] = []
        for entry in entries:
            data = base64.b64decode(entry["leaf"], validate=True)
            proof = [base64.b64decode(h, validate=True) for h in entry["proof"]]
            leaf = decode_leaf(data)
            if leaf.record.event.query_id != query_id:
                raise VerificationError(
                    "A record in the bundle belongs to another query.", reason="wrong_query"
                )
            merkle.verify_inclusion(
                int(entry["index"]), checkpoint.size, merkle.leaf_hash(data), proof,
                checkpoint.root_hash,
            )  # fmt: skip
            records.append(leaf)
    except (KeyError, TypeError, ValueError) as exc:
        raise bad from exc
    return records
