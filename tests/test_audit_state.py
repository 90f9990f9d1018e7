"""What the audit chain protects beyond itself: the chain-link check, policy usage (wiping
it resets no limit), and the replay window (wiping replay_seen reopens nothing)."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from rcf.node.audit.chain import AuditEvent, AuditLog
from rcf.node.federation.replay import ReplayGuard
from rcf.node.ops.state import StateDB
from rcf.node.policy.model import Charge
from rcf.node.policy.store import UsageStore
from rcf.trust.audit_record import record_hash, verify_chain
from rcf.trust.errors import ConfigError, RequestRejected, VerificationError
from rcf.trust.keys import SigningKey


def event(i: int, *, side: str = "responder", requester: str = "AU") -> AuditEvent:
    return AuditEvent(
        query_id=f"00000000-0000-4000-8000-{i:012d}", query_type="Ping",
        purpose="connectivity-check", requester=requester, responder="TH", side=side,
        decision="answered", reason="ok", request_sha256="ab" * 32,
    )  # fmt: skip


def test_an_edited_record_with_its_own_hash_recomputed_breaks_the_next_link(
    tmp_path: Path,
) -> None:
    state = StateDB(tmp_path / "state.db")
    key = SigningKey.generate()
    log = AuditLog(state, key)

    # One batch: six records, one signature (on the sixth).
    def batch(conn: sqlite3.Connection) -> None:
        for i in range(6):
            log.stage(event(i))

    state.run(batch)
    records = log.records()
    state.close()
    edited = dataclasses.replace(records[2].event, requester="NZ")
    digest = record_hash(records[2].seq, records[2].ts_ms, edited, records[2].prev_hash)
    records[2] = dataclasses.replace(records[2], event=edited, record_hash=digest)
    # Only the link from record 4 to record 3 can catch this: 3 hashes correctly,
    # 4 hashes correctly over its own (old) prev_hash, and the signatures are on
    # each batch's last record, which 3 is not the last of.
    with pytest.raises(VerificationError, match="Audit record 4 does not chain"):
        verify_chain(records, {key.key_id: key.public_key})


def usage_setup(tmp_path: Path) -> tuple[StateDB, UsageStore, Charge]:
    state = StateDB(tmp_path / "state.db")
    log = AuditLog(state, SigningKey.generate())
    usage = UsageStore(state, audit=log, member_id="TH")
    from rcf.node.policy.engine import period_window
    from rcf.trust.clock import now_ms

    charge = Charge("rate", "Ping:", period_window("day", now_ms()), 1, 5)
    return state, usage, charge


def test_wiping_policy_usage_resets_no_limit(tmp_path: Path) -> None:
    state, usage, charge = usage_setup(tmp_path)
    for _ in range(5):
        assert usage.charge("AU", (charge,)) is None
    assert usage.charge("AU", (charge,)) is not None  # the limit is reached
    state.run(lambda conn: conn.execute("DELETE FROM policy_usage"))
    assert usage.used("AU", charge) == 0
    assert usage.reconcile() == 1  # at start, from the audit-bound journal
    assert usage.used("AU", charge) == 5
    assert usage.charge("AU", (charge,)) is not None
    state.close()


def test_deleting_charges_from_the_journal_is_detected(tmp_path: Path) -> None:
    state, usage, charge = usage_setup(tmp_path)
    for _ in range(3):
        usage.charge("AU", (charge,))
    state.close()
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute("DELETE FROM policy_usage")
    conn.execute(
        "DELETE FROM policy_charges WHERE rowid IN (SELECT rowid FROM policy_charges LIMIT 1)"
    )
    conn.commit()
    conn.close()
    state = StateDB(tmp_path / "state.db")
    usage = UsageStore(state, audit=AuditLog(state, SigningKey.generate()), member_id="TH")
    with pytest.raises(ConfigError, match="does not match the audit log"):
        usage.reconcile()
    state.close()


def test_wiping_replay_state_does_not_reopen_the_window(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.db")
    log = AuditLog(state, SigningKey.generate())
    guard = ReplayGuard(state)
    guard.remember("AU", b"n" * 16, event(1).query_id, 2**62)
    log.append(event(1))  # the request's audit record commits its replay row with it
    state.run(lambda conn: conn.execute("DELETE FROM replay_seen"))
    # A restart with replay_seen wiped: the audited query id is still refused.
    again = ReplayGuard(state)
    with pytest.raises(RequestRejected) as info:
        again.remember("AU", b"m" * 16, event(1).query_id, 2**62)
    assert info.value.reason == "replayed_query_id"
    # Another requester's query id, and requester-side records, do not block anything.
    again.remember("NZ", b"o" * 16, event(1).query_id, 2**62)
    state.close()
