"""`rcf audit verify` on long and damaged logs: streaming, file check, progress."""

from __future__ import annotations

import json
import sqlite3
import tracemalloc
from pathlib import Path

import pytest

from rcf.node.audit.chain import AuditLog
from rcf.node.ops.config import NodeLayout
from rcf.node.ops.state import StateDB
from rcf.trust.audit_record import GENESIS, AuditEvent, record_hash, verify_chain
from rcf.trust.keys import SigningKey
from tests.cli_helpers import fails, ok
from tests.network import enrolled_folder


def write_chain(db: Path, key: SigningKey, n: int) -> None:
    """n valid records straight into state.db (one transaction, head signed): fast."""
    state = StateDB(db)
    state.close()
    conn = sqlite3.connect(db)
    prev = GENESIS
    rows = []
    for seq in range(1, n + 1):
        event = AuditEvent(
            f"q-{seq:08d}", "Ping", "test", "AU", "TH", "responder", "answered", "ok", "ab" * 32
        )
        digest = record_hash(seq, 1_700_000_000_000 + seq, event, prev)
        e = event
        rows.append(
            (seq, 1_700_000_000_000 + seq, e.query_id, e.query_type, e.purpose, e.requester,
             e.responder, e.side, e.decision, e.reason, e.request_sha256, e.response_sha256,
             prev, digest, key.key_id)
        )  # fmt: skip
        prev = digest
    with conn:
        conn.executemany(
            "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        conn.execute(
            "INSERT INTO audit_signatures VALUES (?, ?, ?)",
            (n, key.key_id, key.sign(bytes.fromhex(prev))),
        )
    conn.close()


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return enrolled_folder(tmp_path_factory.mktemp("net"), "TH")


def test_verification_streams_in_constant_memory(tmp_path: Path) -> None:
    key = SigningKey.generate()
    write_chain(tmp_path / "state.db", key, 40_000)
    state = StateDB(tmp_path / "state.db")
    try:
        log = AuditLog(state, key)
        tracemalloc.start()
        try:
            count = verify_chain(log.iter_records(page=1_000), {key.key_id: key.public_key})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        state.close()
    assert count == 40_000
    # The whole log as objects takes ~60 MB; a page of 1,000 a small fraction of that.
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_records_come_back_in_seq_order_across_pages(tmp_path: Path) -> None:
    key = SigningKey.generate()
    write_chain(tmp_path / "state.db", key, 2_345)
    state = StateDB(tmp_path / "state.db")
    try:
        seqs = [r.seq for r in AuditLog(state, key).iter_records(page=100)]
    finally:
        state.close()
    assert seqs == list(range(1, 2_346))


def test_a_long_log_reports_progress(node_dir: Path) -> None:
    layout = NodeLayout(node_dir)
    db = node_dir / "state.db"
    db.unlink(missing_ok=True)
    write_chain(db, layout.load_signing_key(), 120_000)
    from tests.cli_helpers import rcf

    result = rcf("audit", "verify", "--node-dir", str(node_dir))
    assert result.returncode == 0, result.stderr
    assert "audit log intact: 120000 records" in result.stdout
    assert "verified 50,000 of 120,000 audit records" in result.stderr
    assert "verified 100,000 of 120,000 audit records" in result.stderr
    verdict = json.loads(ok("audit", "verify", "--node-dir", str(node_dir), "--json"))
    # Never shipped (no hub here), records written long ago: intact, and a stuck backlog.
    (warning,) = verdict.pop("warnings")
    assert "120,000 audit records are not anchored at the hub" in warning
    assert verdict == {"intact": True, "records": 120_000, "file_check": "ok", "shipped": 0}


def test_a_flipped_byte_in_an_index_is_caught(node_dir: Path) -> None:
    layout = NodeLayout(node_dir)
    db = node_dir / "state.db"
    db.unlink(missing_ok=True)
    write_chain(db, layout.load_signing_key(), 3_000)
    conn = sqlite3.connect(db)
    # The node keeps no index on the audit table (each would cost a random page
    # write per record); any index in the file, e.g. an operator's, is checked.
    conn.execute("CREATE INDEX operator_query_ids ON audit (query_id)")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    (root,) = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'operator_query_ids'"
    ).fetchone()
    conn.close()
    # The chain itself is untouched: only the index over query ids is damaged.
    with open(db, "r+b") as fh:
        offset = (root - 1) * page_size + page_size - 40
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x5A]))
    message = fails("audit", "verify", "--node-dir", str(node_dir))
    assert "state.db is damaged" in message
