"""The hub's regional audit log: members' shipped records, signed checkpoints, cosignatures.

Every member's records become leaves of one RFC 9162 Merkle log
(hub.merkle_store) in ``audit-log.db``. A batch is accepted only if it continues
the member's chain exactly: its records follow the member's last seq without a
gap and the first new record's prev_hash is the hash the hub holds for the one
before. Records the hub already holds are compared byte for byte and skipped,
so a node that resends after a crash or timeout never duplicates a leaf, and a
node that rewrote a shipped record is refused (``audit_fork``).

After each append the hub signs a checkpoint (C2SP tlog-checkpoint, the hub key,
key name = origin). Member nodes cosign checkpoints as witnesses
(cosignature/v1); the newest checkpoint with ``quorum`` valid cosignatures is
the final one auditors rely on. The member bookkeeping commits in the same
transaction as the leaves.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcf.hub.merkle_store import MerkleStore
from rcf.trust import checkpoint as cp
from rcf.trust.audit_leaf import AuditLeaf, decode_leaf
from rcf.trust.audit_record import GENESIS
from rcf.trust.errors import ConfigError, RequestRejected, VerificationError
from rcf.trust.keys import SigningKey

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit_members (member TEXT PRIMARY KEY,"
    " last_seq INTEGER NOT NULL, last_hash TEXT NOT NULL, last_index INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit_member_leaves (member TEXT NOT NULL, seq INTEGER NOT NULL,"
    " idx INTEGER NOT NULL, PRIMARY KEY (member, seq)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS audit_checkpoints (size INTEGER PRIMARY KEY,"
    " note TEXT NOT NULL, cosignatures INTEGER NOT NULL DEFAULT 0)",
)

Witnesses = Callable[[], Mapping[str, bytes]]


@dataclass(frozen=True)
class Submitted:
    """What the hub answers an accepted batch with."""

    last_index: int
    acknowledged_seq: int
    checkpoint: str
    inclusion_proof: list[bytes]
    appended: int


def _refuse(message: str, reason: str, status: str = "FAILED_PRECONDITION") -> RequestRejected:
    return RequestRejected(message, reason=reason, status=status)


class AuditLogReader:
    """Read access to a hub audit log file (what auditors use; nothing here signs)."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise ConfigError(f"There is no hub audit log at {path}.")
        self.store = MerkleStore(path)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        for stmt in _SCHEMA:
            self._db.execute(stmt)
        # gRPC worker threads share this connection; statements take turns.
        self._db_lock = threading.Lock()

    def _all(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._db_lock:
            return list(self._db.execute(sql, params).fetchall())

    def _one(self, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...] | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        self._db.close()
        self.store.close()

    # -- reads ----------------------------------------------------------------

    def position(self, member_id: str) -> tuple[int, str, int]:
        """(last seq, last hash, last leaf index) held for member; (0, GENESIS, -1) if none."""
        row = self._one(
            "SELECT last_seq, last_hash, last_index FROM audit_members WHERE member = ?",
            (member_id,),
        )
        return (int(row[0]), str(row[1]), int(row[2])) if row else (0, GENESIS, -1)

    def members(self) -> dict[str, tuple[int, str, int]]:
        """Every member with records in the log: member → (last seq, last hash, last index)."""
        rows = self._all("SELECT member, last_seq, last_hash, last_index FROM audit_members")
        return {str(r[0]): (int(r[1]), str(r[2]), int(r[3])) for r in rows}

    def leaf_index(self, member_id: str, seq: int) -> int | None:
        row = self._one(
            "SELECT idx FROM audit_member_leaves WHERE member = ? AND seq = ?", (member_id, seq)
        )
        return int(row[0]) if row else None

    def final_note(self, quorum: int) -> str:
        """The newest checkpoint note with at least quorum counted cosignatures ("" if none)."""
        row = self._one(
            "SELECT note FROM audit_checkpoints WHERE cosignatures >= ? ORDER BY size DESC LIMIT 1",
            (quorum,),
        )
        return str(row[0]) if row else ""

    def checkpoint_notes(self) -> list[str]:
        """Every checkpoint note the hub signed, smallest tree first."""
        return [str(r[0]) for r in self._all("SELECT note FROM audit_checkpoints ORDER BY size")]

    def checkpoint_note(self, size: int) -> str | None:
        row = self._one("SELECT note FROM audit_checkpoints WHERE size = ?", (size,))
        return str(row[0]) if row else None

    def entries(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """Every entry from index start on, in order (for auditors)."""
        size = self.store.size()
        for index in range(start, size):
            yield index, self.store.entry(index)


class HubAuditLog(AuditLogReader):
    """The audit Merkle log, member positions and checkpoints in one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        signing_key: SigningKey,
        origin: str,
        quorum: int,
        witnesses: Witnesses,
    ) -> None:
        cp.check_name(origin, "audit log origin")
        if quorum < 1:
            raise ConfigError("The audit witness quorum must be at least 1.")
        self.origin = origin
        self.quorum = quorum
        self._key = signing_key
        self._witnesses = witnesses
        path.parent.mkdir(parents=True, exist_ok=True)
        MerkleStore(path).close()  # creates the file, 0600
        super().__init__(path)
        # One submission at a time: each continues a chain the previous may have moved.
        self._lock = threading.Lock()

    def set_witnesses(self, witnesses: Witnesses) -> None:
        """Where the current witness keys come from (the registry, through the service)."""
        self._witnesses = witnesses

    def latest(self) -> tuple[str, str]:
        """(newest signed checkpoint note, newest final note or "")."""
        row = self._one("SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
        latest = str(row[0]) if row else self._sign(0)
        return latest, self.final_note(self.quorum)

    # -- writes ---------------------------------------------------------------

    def _sign(self, size: int) -> str:
        """Sign (and keep) the checkpoint of the first size entries."""
        existing = self.checkpoint_note(size) if size else None
        if existing is not None:
            return existing
        root = self.store.root(size)
        note = cp.sign_checkpoint(
            cp.Checkpoint(origin=self.origin, size=size, root_hash=root), key=self._key
        )
        self._all(
            "INSERT OR IGNORE INTO audit_checkpoints (size, note) VALUES (?, ?)", (size, note)
        )
        return self.checkpoint_note(size) or note

    def submit(self, member_id: str, first_seq: int, leaves: Sequence[bytes]) -> Submitted:
        """Append the records of a verified batch that continue member's chain."""
        if not leaves:
            raise _refuse("An audit batch holds no records.", "empty_batch", "INVALID_ARGUMENT")
        decoded: list[AuditLeaf] = []
        for offset, data in enumerate(leaves):
            try:
                leaf = decode_leaf(data)
            except VerificationError as exc:
                raise _refuse(
                    f"Record {first_seq + offset} of the batch is malformed: {exc}",
                    "bad_leaf",
                    "INVALID_ARGUMENT",
                ) from exc
            if leaf.member_id != member_id or leaf.record.seq != first_seq + offset:
                raise _refuse(
                    f"Record {first_seq + offset} of the batch is not the next of "
                    f"{member_id}'s log.",
                    "audit_gap",
                    "INVALID_ARGUMENT",
                )
            decoded.append(leaf)
        with self._lock:
            last_seq, last_hash, _ = self.position(member_id)
            if first_seq > last_seq + 1:
                raise _refuse(
                    f"The hub holds {member_id}'s records up to {last_seq}; the batch starts at "
                    f"{first_seq}.",
                    "audit_gap",
                )
            # Records already held must be identical: a resend is fine, a rewrite is not.
            for leaf, data in zip(decoded, leaves, strict=True):
                seq = leaf.record.seq
                if seq > last_seq:
                    break
                index = self.leaf_index(member_id, seq)
                if index is None or self.store.entry(index) != data:
                    raise _refuse(
                        f"Record {seq} of {member_id} differs from the copy the hub already "
                        "holds: the node's log was rewritten.",
                        "audit_fork",
                    )
            fresh = [
                (leaf, data)
                for leaf, data in zip(decoded, leaves, strict=True)
                if leaf.record.seq > last_seq
            ]
            prev = last_hash
            for leaf, _ in fresh:
                if leaf.record.prev_hash != prev:
                    raise _refuse(
                        f"Record {leaf.record.seq} of {member_id} does not chain to the record "
                        "before it.",
                        "audit_chain",
                    )
                prev = leaf.record.record_hash
            if fresh:
                new_last = fresh[-1][0].record

                def record_members(conn: sqlite3.Connection, first: int) -> None:
                    conn.executemany(
                        "INSERT INTO audit_member_leaves VALUES (?, ?, ?)",
                        [
                            (member_id, leaf.record.seq, first + i)
                            for i, (leaf, _) in enumerate(fresh)
                        ],
                    )
                    conn.execute(
                        "INSERT INTO audit_members VALUES (?, ?, ?, ?) ON CONFLICT (member) DO"
                        " UPDATE SET last_seq = excluded.last_seq, last_hash = excluded.last_hash,"
                        " last_index = excluded.last_index",
                        (member_id, new_last.seq, new_last.record_hash, first + len(fresh) - 1),
                    )

                self.store.append([data for _, data in fresh], with_write=record_members)
            size = self.store.size()
            note = self._sign(size)
            last_index = self.leaf_index(member_id, decoded[-1].record.seq)
            assert last_index is not None
            acknowledged = self.position(member_id)[0]
        return Submitted(
            last_index=last_index,
            acknowledged_seq=acknowledged,
            checkpoint=note,
            inclusion_proof=self.store.inclusion_proof(last_index, size),
            appended=len(fresh),
        )

    def add_cosignature(self, note_text: str) -> tuple[int, bool]:
        """Merge a witness's cosignature into the stored checkpoint; (valid cosignatures, final)."""
        try:
            note = cp.parse_note(note_text)
            checkpoint = cp.parse_checkpoint_body(note.text)
        except VerificationError as exc:
            raise _refuse(
                f"The cosigned note is malformed: {exc}", "malformed", "INVALID_ARGUMENT"
            ) from exc
        witnesses = dict(self._witnesses())
        with self._lock:
            stored = self.checkpoint_note(checkpoint.size)
            if stored is None or cp.parse_note(stored).text != note.text:
                raise _refuse(
                    "The cosigned checkpoint is not one this hub signed.", "unknown_checkpoint"
                )
            try:
                # A bad cosignature by a known witness is refused, not merged.
                cp.verify_cosignatures(note_text, witnesses, 1)
            except VerificationError as exc:
                raise _refuse(str(exc), exc.reason, "INVALID_ARGUMENT") from exc
            merged = cp.merge_signatures(stored, note_text)
            count = _count_cosignatures(merged, witnesses)
            self._all(
                "UPDATE audit_checkpoints SET note = ?, cosignatures = ? WHERE size = ?",
                (merged, count, checkpoint.size),
            )
        return count, count >= self.quorum


def _count_cosignatures(note: str, witnesses: Mapping[str, bytes]) -> int:
    if not witnesses:
        return 0
    try:
        return len(cp.verify_cosignatures(note, witnesses, 1))
    except VerificationError:
        return 0
