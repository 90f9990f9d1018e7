"""node/audit.py and node/state.py on a real SQLite file: chain, batch signatures, tampering."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from rcf.node.audit.chain import AuditLog
from rcf.node.ops.state import StateDB
from rcf.trust.audit_record import AuditEvent, AuditRecord, verify_chain
from rcf.trust.errors import VerificationError
from rcf.trust.keys import SigningKey

EVENT = AuditEvent("q", "Ping", "test", "AU", "TH", "responder", "answered", "ok", "ab" * 32)


def _log(tmp_path: Path) -> tuple[StateDB, AuditLog, SigningKey]:
    key = SigningKey.generate()
    state = StateDB(tmp_path / "state.db")
    return state, AuditLog(state, key), key


def test_concurrent_appends_form_one_signed_chain(tmp_path: Path) -> None:
    state, log, key = _log(tmp_path)
    try:

        def writer(i: int) -> None:
            for j in range(25):
                log.append(replace(EVENT, query_id=f"{i}-{j}"))

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        records = log.records()
    finally:
        state.close()
    assert verify_chain(records, {key.key_id: key.public_key}) == 400
    assert len({r.event.query_id for r in records}) == 400
    # Batches formed: fewer signatures than records, and the last record is signed.
    signed = [r for r in records if r.signature is not None]
    assert records[-1].signature is not None
    assert 1 <= len(signed) <= 400


def test_the_database_refuses_edits_and_deletions(tmp_path: Path) -> None:
    state, log, _ = _log(tmp_path)
    log.append(EVENT)
    state.close()
    conn = sqlite3.connect(tmp_path / "state.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET decision = 'refused'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit_signatures")


def _records(tmp_path: Path, n: int) -> tuple[list[AuditRecord], dict[str, bytes]]:
    state, log, key = _log(tmp_path)
    try:
        for i in range(n):
            log.append(replace(EVENT, query_id=str(i)))
        return log.records(), {key.key_id: key.public_key}
    finally:
        state.close()


def test_chain_verification_catches_each_kind_of_tampering(tmp_path: Path) -> None:
    records, keys = _records(tmp_path, 5)
    assert verify_chain(records, keys) == 5

    def reason(bad: list[AuditRecord], use_keys: dict[str, bytes] = keys) -> str:
        with pytest.raises(VerificationError) as info:
            verify_chain(bad, use_keys)
        return info.value.reason

    assert reason(records[:2] + records[3:]) == "audit_gap"
    edited = replace(records[2], event=replace(records[2].event, requester="XX"))
    assert reason([*records[:2], edited, *records[3:]]) == "audit_chain"
    relinked = replace(records[3], prev_hash=records[1].record_hash)
    assert reason([*records[:3], relinked, *records[4:]]) == "audit_chain"
    unsigned_tail = [*records[:4], replace(records[4], signature=None)]
    assert reason(unsigned_tail) == "audit_unsigned"
    forged = [*records[:4], replace(records[4], signature=b"\\0" * 64)]
    assert reason(forged) == "audit_signature"
    assert reason(records, {}) == "unknown_key"


def test_a_failing_write_does_not_sink_its_batch(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "s.db")
    try:
        state.run(lambda c: c.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)"))
        state.queue(lambda c: c.execute("INSERT INTO t VALUES (1)"))
        state.queue(lambda c: c.execute("INSERT INTO t VALUES (1)"))  # conflicts
        assert state.run(lambda c: c.execute("INSERT INTO t VALUES (2)").rowcount) == 1
        assert state.read("SELECT a FROM t ORDER BY a") == [(1,), (2,)]
        with pytest.raises(sqlite3.IntegrityError):
            state.run(lambda c: c.execute("INSERT INTO t VALUES (2)"))
    finally:
        state.close()
