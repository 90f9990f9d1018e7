"""Where policies and their usage live: the node's state.db.

``policy_versions`` keeps every version ever applied (the database refuses to
change or delete one), each signed by the node's Ed25519 key. The newest row
is the active policy; a rollback appends a copy of an older version.
``policy_usage`` holds spent budgets and rate counts per requester and period,
so a restart resets nothing. Both are written through the state writer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from dataclasses import dataclass

from rcf.node.audit.chain import AuditLog, local_event
from rcf.node.ops.state import StateDB
from rcf.node.policy.engine import period_window
from rcf.node.policy.model import Charge
from rcf.trust.clock import now_ms
from rcf.trust.dsse import Envelope, Signature, sign_envelope
from rcf.trust.errors import ConfigError
from rcf.trust.keys import SigningKey

PAYLOAD_TYPE = "application/vnd.rcf.policy-version+json"
PAYLOAD_KIND = "rcf-policy-version/v1"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS policy_versions (version INTEGER PRIMARY KEY,"
    " applied_at_ms INTEGER NOT NULL, action TEXT NOT NULL, based_on INTEGER,"
    " filename TEXT NOT NULL, source TEXT NOT NULL, source_sha256 TEXT NOT NULL,"
    " payload BLOB NOT NULL, key_id TEXT NOT NULL, signature BLOB NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS policy_versions_no_update BEFORE UPDATE ON policy_versions"
    " BEGIN SELECT RAISE(ABORT, 'policy versions are kept as applied'); END",
    "CREATE TRIGGER IF NOT EXISTS policy_versions_no_delete BEFORE DELETE ON policy_versions"
    " BEGIN SELECT RAISE(ABORT, 'policy versions are kept as applied'); END",
    "CREATE TABLE IF NOT EXISTS policy_usage (requester TEXT NOT NULL, kind TEXT NOT NULL,"
    " scope TEXT NOT NULL, period TEXT NOT NULL, used INTEGER NOT NULL,"
    " PRIMARY KEY (requester, kind, scope, period)) WITHOUT ROWID",
    # The journal of every charge, each bound to the audit record committed with it
    # (audit_query_id; the record's request_sha256 is the digest of the row's charges).
    "CREATE TABLE IF NOT EXISTS policy_charges (audit_query_id TEXT PRIMARY KEY,"
    " requester TEXT NOT NULL, charges TEXT NOT NULL)",
)

USAGE_ACTION = "PolicyUsage"
# How far back usage is re-derived at start: the longest policy period (a year) and a margin.
USAGE_LOOKBACK_MS = 400 * 24 * 3600 * 1000


def ensure_schema(state: StateDB) -> None:
    def create(conn: sqlite3.Connection) -> None:
        for stmt in SCHEMA:
            conn.execute(stmt)

    state.run(create)


@dataclass(frozen=True)
class StoredVersion:
    version: int
    applied_at_ms: int
    action: str  # seed, apply, rollback
    based_on: int | None  # for a rollback: the version it restored
    filename: str
    source: str
    source_sha256: str
    envelope: Envelope  # the node's signature over the version's metadata

    @property
    def key_id(self) -> str:
        return self.envelope.signatures[0].key_id


_SELECT = (
    "SELECT version, applied_at_ms, action, based_on, filename, source, source_sha256,"
    " payload, key_id, signature FROM policy_versions"
)


def _blob(value: object) -> bytes:
    assert isinstance(value, bytes)
    return value


def _from_row(r: tuple[object, ...]) -> StoredVersion:
    return StoredVersion(
        version=int(str(r[0])),
        applied_at_ms=int(str(r[1])),
        action=str(r[2]),
        based_on=None if r[3] is None else int(str(r[3])),
        filename=str(r[4]),
        source=str(r[5]),
        source_sha256=str(r[6]),
        envelope=Envelope(
            payload=_blob(r[7]),
            payload_type=PAYLOAD_TYPE,
            signatures=(Signature(key_id=str(r[8]), sig=_blob(r[9])),),
        ),
    )


def signed_metadata(member_id: str, v: StoredVersion) -> dict[str, object]:
    """What the signature covers: everything but the source, which its digest stands for."""
    return {
        "kind": PAYLOAD_KIND,
        "member": member_id,
        "version": v.version,
        "applied_at_ms": v.applied_at_ms,
        "action": v.action,
        "based_on": v.based_on,
        "filename": v.filename,
        "source_sha256": v.source_sha256,
    }


class PolicyStore:
    """The versions table of one node's state.db."""

    def __init__(self, state: StateDB) -> None:
        self._state = state
        ensure_schema(state)

    def versions(self) -> list[StoredVersion]:
        rows = self._state.read(_SELECT + " ORDER BY version")
        return [_from_row(r) for r in rows]

    def get(self, version: int) -> StoredVersion | None:
        rows = self._state.read(_SELECT + " WHERE version = ?", (version,))
        return _from_row(rows[0]) if rows else None

    def active(self) -> StoredVersion | None:
        rows = self._state.read(_SELECT + " ORDER BY version DESC LIMIT 1")
        return _from_row(rows[0]) if rows else None

    def append(
        self,
        *,
        member_id: str,
        key: SigningKey,
        source: str,
        source_sha256: str,
        filename: str,
        action: str,
        based_on: int | None = None,
        only_if_empty: bool = False,
    ) -> StoredVersion | None:
        """Store the next version, signed; None if only_if_empty and one exists."""

        def write(conn: sqlite3.Connection) -> StoredVersion | None:
            (last,) = conn.execute("SELECT MAX(version) FROM policy_versions").fetchone()
            if only_if_empty and last is not None:
                return None
            draft = StoredVersion(
                version=int(last or 0) + 1,
                applied_at_ms=now_ms(),
                action=action,
                based_on=based_on,
                filename=filename,
                source=source,
                source_sha256=source_sha256,
                envelope=Envelope(b"", PAYLOAD_TYPE, ()),
            )
            payload = json.dumps(
                signed_metadata(member_id, draft), sort_keys=True, separators=(",", ":")
            ).encode()
            envelope = sign_envelope(payload_type=PAYLOAD_TYPE, payload=payload, signers=[key])
            sig = envelope.signatures[0]
            conn.execute(
                "INSERT INTO policy_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (draft.version, draft.applied_at_ms, action, based_on, filename, source,
                 source_sha256, payload, sig.key_id, sig.sig),
            )  # fmt: skip
            return StoredVersion(**{**draft.__dict__, "envelope": envelope})

        result = self._state.run(write)
        assert result is None or isinstance(result, StoredVersion)
        return result


@dataclass(frozen=True)
class Overdraw:
    """A charge that did not fit: nothing was charged."""

    charge: Charge
    used: int


def _charges_json(charges: tuple[Charge, ...]) -> str:
    return json.dumps(
        [[c.kind, c.scope, c.window, c.amount] for c in charges], separators=(",", ":")
    )


class UsageStore:
    """Spent budgets and rate counts; charges are all-or-nothing and never overdraw.

    With an audit log that may append (the node's), every charge is journaled in
    ``policy_charges`` and recorded in the audit chain in the same transaction
    (a local ``PolicyUsage`` record whose request digest is the charge's), so
    ``reconcile`` can rebuild ``policy_usage`` from the chain at start: wiping or
    lowering the usage table resets no limit, and deleting or editing journal
    rows is detected against the signed, hub-anchored records.
    """

    def __init__(
        self, state: StateDB, *, audit: AuditLog | None = None, member_id: str = ""
    ) -> None:
        self._state = state
        self._audit = audit
        self._member_id = member_id
        ensure_schema(state)

    def _journal(
        self, conn: sqlite3.Connection, requester: str, charges: tuple[Charge, ...]
    ) -> None:
        if self._audit is None or not self._audit.can_append:
            return
        text = _charges_json(charges)
        query_id = str(uuid.uuid4())
        conn.execute("INSERT INTO policy_charges VALUES (?, ?, ?)", (query_id, requester, text))
        self._audit.stage(
            local_event(
                self._member_id,
                action=USAGE_ACTION,
                purpose="policy-admin",
                decision="charged",
                reason=",".join(sorted({c.kind for c in charges})),
                subject_sha256=hashlib.sha256(f"{requester}\n{text}".encode()).hexdigest(),
                query_id=query_id,
            )
        )

    def reconcile(self, *, now: int | None = None) -> int:
        """Rebuild usage of the current periods from the audit-bound journal; check the journal.

        Every PolicyUsage audit record of the last USAGE_LOOKBACK_MS must have its
        journal row with the digest the record holds (else ConfigError); usage
        rows below what the journal adds up to are raised to it. Returns how many
        usage rows were raised.
        """
        if self._audit is None:
            return 0
        at = now_ms() if now is None else now
        records = self._state.read(
            "SELECT query_id, request_sha256 FROM audit WHERE query_type = ? AND side = 'local'"
            " AND ts_ms > ?",
            (USAGE_ACTION, at - USAGE_LOOKBACK_MS),
        )
        journal = {
            str(r[0]): (str(r[1]), str(r[2]))
            for r in self._state.read(
                "SELECT audit_query_id, requester, charges FROM policy_charges"
            )
        }
        for query_id, digest in records:
            row = journal.get(str(query_id))
            if row is None or (
                hashlib.sha256(f"{row[0]}\n{row[1]}".encode()).hexdigest() != str(digest)
            ):
                raise ConfigError(
                    "The policy usage journal in state.db does not match the audit log "
                    "(a charge was deleted or altered); restore state.db from a backup.",
                    reason="usage_tampered",
                )
        current = {period_window(per, at) for per in (
            "minute", "hour", "day", "week", "month", "quarter", "year")}  # fmt: skip
        derived: dict[tuple[str, str, str, str], int] = {}
        for requester, text in journal.values():
            for kind, scope, window, amount in json.loads(text):
                if window in current:
                    key = (requester, str(kind), str(scope), str(window))
                    derived[key] = derived.get(key, 0) + int(amount)

        def write(conn: sqlite3.Connection) -> int:
            raised = 0
            for (requester, kind, scope, window), amount in derived.items():
                row = conn.execute(
                    "SELECT used FROM policy_usage WHERE requester = ? AND kind = ? AND scope = ?"
                    " AND period = ?",
                    (requester, kind, scope, window),
                ).fetchone()
                if row is None or int(row[0]) < amount:
                    conn.execute(
                        "INSERT OR REPLACE INTO policy_usage VALUES (?, ?, ?, ?, ?)",
                        (requester, kind, scope, window, amount),
                    )
                    raised += 1
            return raised

        result = self._state.run(write)
        assert isinstance(result, int)
        return result

    def used(self, requester: str, charge: Charge) -> int:
        rows = self._state.read(
            "SELECT used FROM policy_usage WHERE requester = ? AND kind = ? AND scope = ?"
            " AND period = ?",
            (requester, charge.kind, charge.scope, charge.window),
        )
        return int(str(rows[0][0])) if rows else 0

    def charge(
        self, requester: str, charges: tuple[Charge, ...], *, force: bool = False
    ) -> Overdraw | None:
        """Add every charge, or none if any would pass its limit (then say which).
        force: add them even past the limit (a refused query still counts)."""

        def write(conn: sqlite3.Connection) -> Overdraw | None:
            # The writer thread runs one write at a time, so check-then-add cannot race.
            for c in charges if not force else ():
                row = conn.execute(
                    "SELECT used FROM policy_usage WHERE requester = ? AND kind = ?"
                    " AND scope = ? AND period = ?",
                    (requester, c.kind, c.scope, c.window),
                ).fetchone()
                used = int(row[0]) if row else 0
                if used + c.amount > c.limit:
                    return Overdraw(c, used)
            for c in charges:
                unit = c.window.split(":", 1)[0]
                # Earlier periods of the same unit no longer count; drop them.
                conn.execute(
                    "DELETE FROM policy_usage WHERE requester = ? AND kind = ? AND scope = ?"
                    " AND period LIKE ? AND period != ?",
                    (requester, c.kind, c.scope, f"{unit}:%", c.window),
                )
                conn.execute(
                    "INSERT INTO policy_usage VALUES (?, ?, ?, ?, ?) ON CONFLICT"
                    " (requester, kind, scope, period) DO UPDATE SET used = used + excluded.used",
                    (requester, c.kind, c.scope, c.window, c.amount),
                )
            self._journal(conn, requester, charges)
            return None

        if not charges:
            return None
        result = self._state.run(write)
        assert result is None or isinstance(result, Overdraw)
        return result
