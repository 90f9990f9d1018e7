"""The regional audit trail end to end: nodes ship to the hub's Merkle log over mutual TLS,
witness and cosign its checkpoints, and `rcf audit …` (a subprocess) verifies, cross-checks
and proves without trusting the hub; every tampering case is caught and named."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from rcf.hub.layout import HubLayout
from rcf.node.federation.ping import PING
from rcf.node.federation.server import NodeServer
from rcf.protos.v1 import audit_pb2, audit_pb2_grpc
from rcf.trust import checkpoint as cp
from rcf.trust import pki
from rcf.trust.audit_leaf import encode_leaf
from rcf.trust.errors import PeerError, VerificationError
from rcf.trust.keys import SigningKey
from rcf.trust.signed import sign_document
from rcf.trust.tls import secure_channel
from tests.cli_helpers import fails, ok, rcf
from tests.network import Network, reason_of

MEMBERS = ("AU", "TH", "NZ")
QUORUM = 2


def ping(node: NodeServer, responder: str) -> str:
    answer = node.peers.call(
        PING, responder=responder, purpose="connectivity-check", fill=lambda r: None, timeout_s=5
    )
    return answer.query_id


def settle(net: Network) -> None:
    """Ship everything, then witness twice so the newest checkpoint reaches the quorum."""
    for node in net.nodes.values():
        node.shipper.ship_all()
    for _ in range(2):
        for node in net.nodes.values():
            node.shipper.witness_latest()


def set_quorum(net: Network, quorum: int) -> None:
    text = net.hub_layout.config.read_text().replace("audit_quorum = 1", f"audit_quorum = {quorum}")
    net.hub_layout.config.write_text(text)


def start(root: Path) -> Network:
    net = Network(root)
    set_quorum(net, QUORUM)
    net.start_hub()
    for m in MEMBERS:
        # The background loop runs once at start; the tests drive it from then on.
        net.enroll(m, audit_ship_interval_s=3600.0)
    for m in MEMBERS:
        net.start_node(m)
    net.refresh_all()
    return net


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """A network whose nodes pinged each other and shipped everything; then stopped."""
    root = tmp_path_factory.mktemp("trail")
    net = start(root)
    query_ids = []
    try:
        for a in MEMBERS:
            for b in MEMBERS:
                if a != b:
                    query_ids.append(ping(net.nodes[a], b))
        settle(net)
    finally:
        net.close()
    yield root, query_ids


def copy(built: tuple[Path, list[str]], tmp_path: Path) -> Path:
    root = tmp_path / "net"
    shutil.copytree(built[0], root)
    return root


def node_args(root: Path) -> list[str]:
    return [arg for m in MEMBERS for arg in ("--node-dir", str(root / m))]


def verify(root: Path, *extra: str) -> list[str]:
    return ["audit", "verify", *node_args(root), "--hub-dir", str(root / "hub"), *extra]


Statement = str | tuple[str, tuple[object, ...]]


def tamper(db: Path, *statements: Statement) -> None:
    """What an attacker with the file does: drop the append-only triggers, then edit."""
    conn = sqlite3.connect(db)
    for t in ("audit_no_update", "audit_no_delete", "audit_sig_no_update", "audit_sig_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {t}")
    for t in ("merkle_entries_no_update", "merkle_nodes_no_update"):
        conn.execute(f"DROP TRIGGER IF EXISTS {t}")
    for stmt in statements:
        sql, params = (stmt, ()) if isinstance(stmt, str) else stmt
        conn.execute(sql, params)
    conn.commit()
    conn.close()


# -- the happy path ------------------------------------------------------------------


def test_shipped_logs_verify_crosscheck_and_prove(
    built: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root = copy(built, tmp_path)
    trusted = tmp_path / "trusted.note"
    out = ok(*verify(root, "--trusted", str(trusted)))
    assert "hub log intact" in out and "witness cosignatures" in out
    for m in MEMBERS:
        assert f"{m}: audit log intact" in out
    first = cp.parse_checkpoint_body(cp.parse_note(trusted.read_text()).text)
    assert first.size > 0
    verdict = json.loads(ok(*verify(root, "--trusted", str(trusted), "--json")))
    assert verdict["intact"] and verdict["hub"]["trusted_size"] == first.size
    assert all(n["anchored"] == n["records"] for n in verdict["nodes"])

    cross = ok("audit", "crosscheck", *node_args(root))
    assert (
        "6 queries logged on both sides with matching digests; 0 refused before the "
        "responder's application; 0 mismatches"
    ) in cross

    rows = json.loads(ok("audit", "log", *node_args(root), "--member", "th", "--type", "ping",
                         "--since", "2000-01-01", "--json"))  # fmt: skip
    assert rows and {r["log"] for r in rows} == {"TH"}
    assert all("ping" in r["query_type"].lower() for r in rows)

    query_id = built[1][0]
    bundle, keys = tmp_path / "bundle.json", tmp_path / "keys.txt"
    ok("audit", "prove", query_id, "--node-dir", str(root / "AU"), "--hub-dir",
       str(root / "hub"), "--out", str(bundle), "--keys-out", str(keys))  # fmt: skip
    checked = json.loads(ok("audit", "check-bundle", str(bundle), "--keys", str(keys), "--json"))
    sides = {(r["log"], r["side"]) for r in checked["records"]}
    assert sides == {("AU", "requester"), ("TH", "responder")}


def test_a_refusal_before_the_responders_application_is_no_mismatch(tmp_path: Path) -> None:
    """A node that joined a moment ago asks a peer whose directory lacks its key yet:
    the peer refuses (unknown_key) before reading the query id, the asker retries once
    the peer caught up; the auditor reports that refusal apart and cross-checks clean."""
    net = start(tmp_path / "net")
    try:
        idn = net.add_node("ID")
        idn.refresh_directory()
        ping(idn, "TH")
    finally:
        net.close()
    args = [a for m in (*MEMBERS, "ID") for a in ("--node-dir", str(tmp_path / "net" / m))]
    cross = ok("audit", "crosscheck", *args)
    assert "1 queries logged on both sides" in cross
    assert "1 refused before the responder's application; 0 mismatches" in cross
    verdict = json.loads(ok("audit", "crosscheck", *args, "--json"))
    assert [(r["requester"], r["responder"], r["reason"]) for r in verdict["refused_early"]] == [
        ("ID", "TH", "unknown_key")
    ]
    # Without the responder's record of its early refusal, the same query is a mismatch.
    tamper(tmp_path / "net" / "TH" / "state.db", "DELETE FROM audit WHERE query_id = ''")
    assert "1 queries are not logged on both sides" in fails("audit", "crosscheck", *args)


def test_the_first_trusted_checkpoint_comes_out_of_band(
    built: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root = copy(built, tmp_path)
    exported, trusted = tmp_path / "hub-checkpoint.note", tmp_path / "trusted.note"
    # The hub operator exports the checkpoint and reads out the hub key.
    out = ok("audit", "trust", "--from", str(root / "hub"), "--out", str(exported))
    vkey = out.split("hub key", 1)[1].split()[0]
    hub_key = HubLayout(root / "hub").load_signing_key().public_key
    assert cp.parse_verifier_key(vkey).public_key == hub_key and exported.exists()
    # The auditor checks that file against the key, got by another channel, and keeps it.
    kept = ok("audit", "trust", "--from", str(exported), "--hub-key", vkey, "--out", str(trusted))
    assert "size" in kept and oct(trusted.stat().st_mode & 0o777) == "0o600"
    assert "consistent with the trusted checkpoint" in ok(*verify(root, "--trusted", str(trusted)))
    again = rcf("audit", "trust", "--from", str(exported), "--hub-key", vkey, "--out", str(trusted))
    assert again.returncode == 1 and "already holds" in again.stderr
    # Another key (another hub) does not vouch for it; nothing is kept.
    other = cp.VerifierKey(cp.parse_verifier_key(vkey).name, SigningKey.generate().public_key)
    stray = tmp_path / "stray.note"
    assert "not signed by the hub key" in fails(
        "audit", "trust", "--from", str(exported), "--hub-key", other.encode(), "--out", str(stray)
    )
    assert not stray.exists()
    assert "--hub-key" in rcf("audit", "trust", "--from", str(exported), "--out", str(stray)).stderr


# -- tampering with a node's store -------------------------------------------------


def test_a_changed_record_is_named(built: tuple[Path, list[str]], tmp_path: Path) -> None:
    root = copy(built, tmp_path)
    tamper(root / "TH" / "state.db", "UPDATE audit SET decision = 'refused' WHERE seq = 3")
    assert "record 3 of TH" in fails(*verify(root))


def test_an_edited_record_with_every_later_hash_recomputed_is_named(
    built: tuple[Path, list[str]], tmp_path: Path
) -> None:
    from rcf.node.audit.chain import AuditLog
    from rcf.node.ops.state import StateDB
    from rcf.trust.audit_record import record_hash

    root = copy(built, tmp_path)
    db = root / "TH" / "state.db"
    state = StateDB(db)
    records = AuditLog(state, None).records()
    state.close()
    target = 3
    conn = sqlite3.connect(db)
    for t in ("audit_no_update", "audit_sig_no_update", "audit_sig_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {t}")
    prev = records[target - 2].record_hash
    for rec in records[target - 1 :]:
        event = rec.event
        if rec.seq == target:
            event = type(event)(**{**event.__dict__, "requester": "NZ"})
        digest = record_hash(rec.seq, rec.ts_ms, event, prev)
        conn.execute(
            "UPDATE audit SET requester = ?, prev_hash = ?, record_hash = ? WHERE seq = ?",
            (event.requester, prev, digest, rec.seq),
        )
        prev = digest
    conn.commit()
    conn.close()
    message = fails(*verify(root))
    assert f"record {target} of TH differs from the copy anchored in the hub log" in message
    # Without the hub's copy, the inclusion proofs the node kept still catch it.
    alone = fails("audit", "verify", "--node-dir", str(root / "TH"))
    assert "TH" in alone and ("inclusion proof" in alone or "signature" in alone)


def test_a_deleted_record_is_named(built: tuple[Path, list[str]], tmp_path: Path) -> None:
    root = copy(built, tmp_path)
    tamper(root / "AU" / "state.db", "DELETE FROM audit_signatures WHERE seq = 2",
           "DELETE FROM audit WHERE seq = 2")  # fmt: skip
    assert "record 2 is missing" in fails(*verify(root))


def test_reordered_records_are_caught(built: tuple[Path, list[str]], tmp_path: Path) -> None:
    root = copy(built, tmp_path)
    db = root / "NZ" / "state.db"
    # Swap the contents of records 2 and 3 (each keeps its seq and hashes).
    swap = (
        "UPDATE audit SET (query_id, requester, responder, side, request_sha256,"
        " response_sha256) = (SELECT query_id, requester, responder, side, request_sha256,"
        " response_sha256 FROM {src} WHERE seq = {from_seq}) WHERE seq = {to_seq}"
    )
    tamper(
        db,
        "CREATE TEMP TABLE a2 AS SELECT * FROM audit WHERE seq = 2",
        swap.format(src="audit", from_seq=3, to_seq=2),
        swap.format(src="a2", from_seq=2, to_seq=3),
    )
    assert "record 2 of NZ" in fails(*verify(root))


def test_truncating_the_newest_shipped_records_is_caught(
    built: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root = copy(built, tmp_path)
    db = root / "TH" / "state.db"
    (last,) = sqlite3.connect(db).execute("SELECT MAX(seq) FROM audit").fetchone()
    (signed,) = (
        sqlite3.connect(db)
        .execute("SELECT MAX(seq) FROM audit_signatures WHERE seq < ?", (last,))
        .fetchone()
    )
    # Back to an earlier signed record, and the node's own shipping records with it:
    # the chain alone still verifies; only the anchoring catches it.
    tamper(
        db,
        ("DELETE FROM audit WHERE seq > ?", (signed,)),
        ("DELETE FROM audit_signatures WHERE seq > ?", (signed,)),
        "DELETE FROM audit_shipped",
    )
    message = fails(*verify(root))
    assert f"TH: audit records {signed + 1} to {last} were shipped to the hub" in message


def test_truncation_is_caught_from_the_kept_proofs_without_the_hub(
    built: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root = copy(built, tmp_path)
    db = root / "TH" / "state.db"
    conn = sqlite3.connect(db)
    (last,) = conn.execute("SELECT MAX(seq) FROM audit").fetchone()
    (signed,) = conn.execute(
        "SELECT MAX(seq) FROM audit_signatures WHERE seq < ?", (last,)
    ).fetchone()
    conn.close()
    tamper(
        db,
        ("DELETE FROM audit WHERE seq > ?", (signed,)),
        ("DELETE FROM audit_signatures WHERE seq > ?", (signed,)),
    )
    message = fails("audit", "verify", "--node-dir", str(root / "TH"))
    assert f"TH: audit records {signed + 1} to {last} were shipped to the hub" in message


def test_one_altered_leaf_in_the_hubs_store_is_named(
    built: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root = copy(built, tmp_path)
    db = root / "hub" / "audit-log.db"
    (data,) = (
        sqlite3.connect(db).execute("SELECT data FROM merkle_entries WHERE idx = 4").fetchone()
    )
    forged = bytes(data).replace(b'"answered"', b'"refused"')
    assert forged != bytes(data)
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER merkle_entries_no_update")
    conn.execute("UPDATE merkle_entries SET data = ? WHERE idx = 4", (forged,))
    conn.commit()
    conn.close()
    assert "Hub log entry 4" in fails(*verify(root))


# -- witnessing ----------------------------------------------------------------------


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Network]:
    net = start(tmp_path)
    try:
        yield net
    finally:
        net.close()


def test_a_hub_that_signs_two_inconsistent_checkpoints_is_caught(live: Network) -> None:
    au, th = live.nodes["AU"], live.nodes["TH"]
    ping(au, "TH")
    settle(live)
    hub_key = live.hub_layout.load_signing_key()
    origin = live.hub.audit_log.origin if live.hub else ""
    honest = cp.parse_checkpoint_body(cp.parse_note(live.hub.audit_log.latest()[0]).text)  # type: ignore[union-attr]
    # The hub shows a different log of the next size, whose root is not an extension.
    fork = cp.Checkpoint(origin=origin, size=honest.size + 1, root_hash=bytes(32))
    decision = au.shipper.witness(cp.sign_checkpoint(fork, key=hub_key))
    assert not decision.cosign and decision.reason == "inconsistent"
    evidence = au.shipper.anchor.evidence()
    assert evidence and evidence[0].reason == "inconsistent"
    # Same size, different root: refused without even asking for a proof.
    same = cp.Checkpoint(origin=origin, size=honest.size, root_hash=bytes(32))
    assert th.shipper.witness(cp.sign_checkpoint(same, key=hub_key)).reason == "inconsistent"
    # The auditor sees the evidence the witness kept.
    au.stop(grace=0)
    live.nodes.pop("AU")
    message = fails("audit", "verify", "--node-dir", str(live.root / "AU"))
    assert "refused to cosign" in message


def test_a_forged_checkpoint_signature_is_refused(live: Network) -> None:
    au = live.nodes["AU"]
    settle(live)
    latest = cp.parse_checkpoint_body(cp.parse_note(live.hub.audit_log.latest()[0]).text)  # type: ignore[union-attr]
    forged = cp.sign_checkpoint(latest, key=SigningKey.generate())
    with pytest.raises(VerificationError):
        au.shipper.witness(forged)


def test_a_checkpoint_smaller_than_one_seen_is_refused(live: Network) -> None:
    au = live.nodes["AU"]
    ping(au, "TH")
    settle(live)
    witnessed = cp.parse_checkpoint_body(cp.parse_note(au.shipper.anchor.witnessed(
        live.hub.audit_log.origin)).text)  # type: ignore[union-attr]  # fmt: skip
    older = live.hub.audit_log.checkpoint_note(witnessed.size - 1)  # type: ignore[union-attr]
    assert older is not None
    decision = au.shipper.witness(older)
    assert not decision.cosign and decision.reason == "smaller_size"


# -- store and forward ---------------------------------------------------------------


def hub_entries(net: Network, member: str) -> int:
    assert net.hub is not None
    return len(
        [1 for _, data in net.hub.audit_log.entries() if f'"{member}"'.encode() in data[:40]]
    )


def test_hub_down_for_a_while_then_up_nothing_lost_nothing_duplicated(live: Network) -> None:
    au = live.nodes["AU"]
    settle(live)
    live.stop_hub()
    for _ in range(3):
        ping(au, "TH")
    with pytest.raises(PeerError):
        au.shipper.ship_once()
    assert au.shipper.pending() >= 3
    live.start_hub()
    deadline = time.monotonic() + 10
    while True:
        try:
            au.shipper.ship_all()
            break
        except PeerError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert au.shipper.pending() == 0
    assert live.hub is not None
    assert live.hub.audit_log.position("AU")[0] == au.audit.last_seq()
    assert hub_entries(live, "AU") == au.audit.last_seq()


def test_node_killed_before_shipping_ships_after_restart_without_duplicates(
    live: Network,
) -> None:
    au = live.nodes["AU"]
    settle(live)
    ping(au, "TH")
    ping(au, "NZ")
    live.stop_node("AU")  # records written locally, not shipped
    # And the node forgot what it shipped (as if it crashed before recording the hub's answer).
    tamper(live.layout("AU").state_db, "DELETE FROM audit_shipped")
    au = live.start_node("AU")
    deadline = time.monotonic() + 10
    while au.shipper.pending():  # the background loop ships right after start
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert live.hub is not None
    assert live.hub.audit_log.position("AU")[0] == au.audit.last_seq()
    assert hub_entries(live, "AU") == au.audit.last_seq()


# -- bad input -------------------------------------------------------------------------


def audit_stub(net: Network, member: str) -> Any:
    assert net.hub is not None
    channel = secure_channel(
        target=net.hub.address, tls=net.layout(member).load_tls(), server_name=pki.HUB_NAME,
        max_message_bytes=16 * 1024 * 1024,
    )  # fmt: skip
    return audit_pb2_grpc.AuditHubStub(channel)


def batch_of(net: Network, member: str, count: int) -> audit_pb2.AuditBatch:
    node = net.nodes[member]
    records = node.audit.records_after(0, count)
    leaves = [encode_leaf(member, r) for r in records]
    while len(leaves) < count:
        leaves.append(leaves[-1])
    return audit_pb2.AuditBatch(member_id=member, first_seq=1, leaves=leaves, issued_at_ms=0)


def test_a_batch_signed_by_another_member_than_the_tls_peer_is_refused(live: Network) -> None:
    batch = batch_of(live, "TH", 1)
    th_key = live.layout("TH").load_signing_key()
    with pytest.raises(grpc.RpcError) as info:
        audit_stub(live, "AU").SubmitAudit(sign_document(batch, [th_key]).to_proto(), timeout=5)
    assert reason_of(info.value) == "signer_peer_mismatch"
    # AU's own key over TH's records: refused too.
    au_key = live.layout("AU").load_signing_key()
    with pytest.raises(grpc.RpcError) as info:
        audit_stub(live, "AU").SubmitAudit(sign_document(batch, [au_key]).to_proto(), timeout=5)
    assert reason_of(info.value) == "signer_peer_mismatch"


def test_an_oversize_batch_is_refused(live: Network) -> None:
    batch = batch_of(live, "AU", 1001)
    key = live.layout("AU").load_signing_key()
    with pytest.raises(grpc.RpcError) as info:
        audit_stub(live, "AU").SubmitAudit(sign_document(batch, [key]).to_proto(), timeout=5)
    assert reason_of(info.value) == "batch_too_large"
    huge = audit_pb2.AuditBatch(member_id="AU", first_seq=1, leaves=[b"x" * 4000] * 300)
    with pytest.raises(grpc.RpcError) as info:
        audit_stub(live, "AU").SubmitAudit(sign_document(huge, [key]).to_proto(), timeout=5)
    assert reason_of(info.value) == "batch_too_large"


def test_a_proof_bundle_for_another_log_is_refused(
    built: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root = copy(built, tmp_path)
    bundle, keys = tmp_path / "bundle.json", tmp_path / "keys.txt"
    ok("audit", "prove", built[1][1], "--node-dir", str(root / "TH"), "--hub-dir",
       str(root / "hub"), "--out", str(bundle), "--keys-out", str(keys))  # fmt: skip
    # The same hub key, but the auditor expects another network's log.
    text = keys.read_text().splitlines()
    hub_vkey = cp.parse_verifier_key(text[0].split(" ", 1)[1])
    other = cp.VerifierKey("rcf-audit/other", hub_vkey.public_key).encode()
    keys.write_text("\n".join([f"hub {other}", *text[1:]]) + "\n")
    assert "another log" in fails("audit", "check-bundle", str(bundle), "--keys", str(keys))
    # A bundle whose record was swapped for another query's record fails its proof.
    data = json.loads(bundle.read_text())
    data["query_id"] = built[1][2]
    bundle.write_text(json.dumps(data))
    keys.write_text("\n".join(text) + "\n")
    assert "another query" in fails("audit", "check-bundle", str(bundle), "--keys", str(keys))


# -- retention ---------------------------------------------------------------------------


def test_archived_segments_still_verify(built: tuple[Path, list[str]], tmp_path: Path) -> None:
    root = copy(built, tmp_path)
    out = ok("audit", "archive", "--node-dir", str(root / "TH"), "--before", "2999-01-01")
    assert "archived" in out
    remaining = sqlite3.connect(root / "TH" / "state.db").execute("SELECT MIN(seq) FROM audit")
    assert remaining.fetchone()[0] > 1
    assert "TH: audit log intact" in ok(*verify(root))
    assert "0 mismatches" in ok("audit", "crosscheck", *node_args(root))
    # A record altered inside a segment is caught like one in the database.
    segment = next((root / "TH" / "audit-segments").glob("*.jsonl.gz"))
    import gzip

    lines = gzip.decompress(segment.read_bytes()).decode().splitlines()
    record = json.loads(lines[1])
    record[10] = "tampered"  # the reason code of the oldest archived record
    lines[1] = json.dumps(record)
    segment.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert "TH" in fails(*verify(root))
