"""The token index in the node's data.db, kept in step with ``persons`` and ``documents``.

``identity_tokens`` holds, for every match key of every record, the first
``TAG_BYTES`` bytes of its OPRF output under the node's key (the *tag*), the
dataset, the record id and the key's strength. Never a name, date or number.

How it never goes stale:

- an import of ``persons`` or ``documents`` re-indexes the rows it inserted or
  changed inside the import's own transaction (``index_import``), so the
  records and their tokens commit together or not at all;
- triggers on the two tables delete a record's tokens when the record is
  deleted (retention purges) or changed;
- ``rebuild`` (``rcf data reindex``, OPRF key rotation) rewrites the whole index
  in one transaction and records the build in ``identity_index_builds``, which
  ``node.operations`` turns into an audit record;
- ``store_meta.identity_key_id`` names the key the index was built under; a
  node whose key differs refuses lookups rather than answer "no hit" wrongly.

A 16-byte tag keeps the index small (two B-trees of ~40-byte rows per key);
with at most a few million keys per node a false match needs a 2^-100 accident.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rcf.node.identity.index import Record, build_token_index
from rcf.node.identity.keys import DocumentRecord, PersonRecord
from rcf.trust.clock import now_ms
from rcf.trust.errors import RcfError
from rcf.trust.oprf import OprfKey

TAG_BYTES = 16
INDEXED_DATASETS = ("persons", "documents")
KEY_META = "identity_key_id"
# Bumped by every change to the index (import, purge, edit, rebuild): the filter's version.
SERIAL_META = "identity_index_serial"
_IN_BATCH = 500  # SQLite host parameters per IN (...) lookup

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS identity_tokens (tag BLOB NOT NULL, dataset TEXT NOT NULL,"
    " record_id TEXT NOT NULL, strength TEXT NOT NULL,"
    " PRIMARY KEY (tag, dataset, record_id)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS ix_identity_tokens_record ON identity_tokens (dataset, record_id)",
    "CREATE TABLE IF NOT EXISTS identity_index_builds (build_id INTEGER PRIMARY KEY,"
    " at_ms INTEGER NOT NULL, reason TEXT NOT NULL, key_id TEXT NOT NULL,"
    " persons INTEGER NOT NULL, documents INTEGER NOT NULL, tokens INTEGER NOT NULL,"
    " skipped INTEGER NOT NULL)",
)


class TokenIndexError(RcfError):
    """The token index cannot serve or be built."""

    default_reason = "index_unavailable"
    default_status = "UNAVAILABLE"


def ensure_schema(conn: sqlite3.Connection, tables: Iterable[str]) -> None:
    """Create the index tables, and the triggers on whichever indexed tables exist."""
    for stmt in SCHEMA:
        conn.execute(stmt)
    for table in tables:
        if table not in INDEXED_DATASETS:
            continue
        for event in ("DELETE", "UPDATE"):
            conn.execute(
                f"CREATE TRIGGER IF NOT EXISTS identity_tokens_{table}_{event.lower()}"  # noqa: S608
                f" AFTER {event} ON {table} BEGIN DELETE FROM identity_tokens"
                f" WHERE dataset = '{table}' AND record_id = OLD.record_id; END"
            )
            conn.execute(
                f"CREATE TRIGGER IF NOT EXISTS identity_serial_{table}_{event.lower()}"
                f" AFTER {event} ON {table} BEGIN {_BUMP}; END"
            )
    conn.execute("INSERT OR IGNORE INTO store_meta VALUES (?, '0')", (SERIAL_META,))


_BUMP = (
    "UPDATE store_meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)"
    " WHERE key = 'identity_index_serial'"
)


def bump_serial(conn: sqlite3.Connection) -> None:
    """Mark the index changed (inside the transaction that changed it)."""
    conn.execute("INSERT OR IGNORE INTO store_meta VALUES (?, '0')", (SERIAL_META,))
    conn.execute(_BUMP)


def _records(conn: sqlite3.Connection, dataset: str, import_id: int | None) -> list[Record]:
    where = "" if import_id is None else " WHERE _import_id = ?"
    params: tuple[object, ...] = () if import_id is None else (import_id,)
    if dataset == "persons":
        sql = (
            "SELECT record_id, name_latin, aliases, name_original, date_of_birth, nationality,"  # noqa: S608
            f" document_numbers FROM persons{where}"
        )
        cols = ("record_id", "name_latin", "aliases", "name_original", "date_of_birth",
                "nationality", "document_numbers")  # fmt: skip
        return [PersonRecord.from_row(dict(zip(cols, row, strict=True)))
                for row in conn.execute(sql, params)]  # fmt: skip
    sql = f"SELECT record_id, issuing_state, document_number FROM documents{where}"  # noqa: S608
    return [
        DocumentRecord.from_row(
            {"record_id": r, "issuing_state": s, "document_number": (n or "").replace("<", "")}
        )
        for r, s, n in conn.execute(sql, params)
    ]


def _check_key(conn: sqlite3.Connection, key: OprfKey) -> None:
    row = conn.execute("SELECT value FROM store_meta WHERE key = ?", (KEY_META,)).fetchone()
    if row is None:
        conn.execute("INSERT INTO store_meta VALUES (?, ?)", (KEY_META, key.key_id))
    elif row[0] != key.key_id:
        raise TokenIndexError(
            "The token index was built under another OPRF key than the node's; "
            "run 'rcf data reindex'.",
            reason="index_key_mismatch",
        )


def _insert(conn: sqlite3.Connection, dataset: str, records: Sequence[Record], key: OprfKey
            ) -> tuple[int, int]:  # fmt: skip
    batch = build_token_index(records, key)
    conn.executemany(
        "INSERT OR IGNORE INTO identity_tokens VALUES (?, ?, ?, ?)",
        ((row.token[:TAG_BYTES], dataset, row.record_id, row.strength) for row in batch.rows),
    )
    return len(batch.rows), len(batch.skipped)


def index_import(conn: sqlite3.Connection, dataset: str, import_id: int, key: OprfKey) -> int:
    """Inside an import's transaction: (re)index the rows this import wrote; tokens written."""
    if dataset not in INDEXED_DATASETS:
        return 0
    _check_key(conn, key)
    records = _records(conn, dataset, import_id)
    # Changed rows lost their tokens through the UPDATE trigger; inserted rows had none.
    tokens, _ = _insert(conn, dataset, records, key)
    bump_serial(conn)
    return tokens


@dataclass(frozen=True)
class BuildResult:
    key_id: str
    persons: int
    documents: int
    tokens: int
    skipped: int
    seconds: float


def rebuild(conn: sqlite3.Connection, key: OprfKey, *, reason: str) -> BuildResult:
    """Rewrite the whole index under key, in the caller's transaction, and record the build."""
    started = time.perf_counter()
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.execute("DELETE FROM identity_tokens")
    conn.execute(
        "INSERT INTO store_meta VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (KEY_META, key.key_id),
    )
    counts = {"persons": 0, "documents": 0}
    tokens = skipped = 0
    for dataset in INDEXED_DATASETS:
        if dataset not in tables:
            continue
        records = _records(conn, dataset, None)
        counts[dataset] = len(records)
        t, s = _insert(conn, dataset, records, key)
        tokens += t
        skipped += s
    bump_serial(conn)
    conn.execute(
        "INSERT INTO identity_index_builds (at_ms, reason, key_id, persons, documents, tokens,"
        " skipped) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (now_ms(), reason, key.key_id, counts["persons"], counts["documents"], tokens, skipped),
    )
    return BuildResult(key.key_id, counts["persons"], counts["documents"], tokens, skipped,
                       time.perf_counter() - started)  # fmt: skip


@dataclass(frozen=True)
class Match:
    record_id: str
    strength: str
    category: str
    nationality: str


class TokenIndex:
    """Read side for the responder: one read-only connection, shared under a lock."""

    def __init__(self, data_db: Path) -> None:
        self._path = data_db
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self._path.exists():
                raise TokenIndexError("This node holds no identity data yet.", reason="no_data")
            self._conn = sqlite3.connect(
                f"file:{self._path}?mode=ro", uri=True, check_same_thread=False, timeout=30
            )
        return self._conn

    def key_id(self) -> str | None:
        with self._lock:
            try:
                row = (
                    self._connection()
                    .execute("SELECT value FROM store_meta WHERE key = ?", (KEY_META,))
                    .fetchone()
                )
            except sqlite3.OperationalError:
                return None  # no store_meta yet: nothing imported
            return None if row is None else str(row[0])

    def serial(self) -> tuple[str | None, int]:
        """The key id the index was built under and its change serial (one snapshot)."""
        if not self._path.exists():
            return None, 0
        # A connection of its own: a long-lived read-only one was seen to keep an older
        # snapshot after another process rewrote and checkpointed the file.
        conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=30)
        try:
            rows = dict(
                conn.execute(
                    "SELECT key, value FROM store_meta WHERE key IN (?, ?)",
                    (KEY_META, SERIAL_META),
                )
            )
        except sqlite3.OperationalError:
            return None, 0  # no store_meta yet: nothing imported
        finally:
            conn.close()
        key_id = rows.get(KEY_META)
        return (None if key_id is None else str(key_id)), int(rows.get(SERIAL_META) or 0)

    def filter_tags(self, dataset: str) -> tuple[int, list[tuple[bytes, str, str]]]:
        """The serial and every tag of dataset with its record's category and nationality."""
        if not self._path.exists():
            return 0, []
        conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=30)  # see serial
        try:
            conn.execute("BEGIN")  # tags and serial from one snapshot
            row = conn.execute(
                "SELECT value FROM store_meta WHERE key = ?", (SERIAL_META,)
            ).fetchone()
            serial = int(row[0]) if row else 0
            if dataset == "persons":
                sql = (
                    "SELECT t.tag, p.category, p.nationality FROM identity_tokens t"
                    " JOIN persons p ON p.record_id = t.record_id WHERE t.dataset = ?"
                )
            else:
                sql = "SELECT tag, '', '' FROM identity_tokens WHERE dataset = ?"
            rows = [
                (bytes(t), str(c or ""), str(n or "")) for t, c, n in conn.execute(sql, (dataset,))
            ]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0, []
            raise
        finally:
            conn.close()
        return serial, rows

    def lookup(self, dataset: str, tags: Sequence[bytes]) -> dict[bytes, list[Match]]:
        """Every indexed record of dataset that shares one of tags, with what policy needs."""
        found: dict[bytes, list[tuple[str, str]]] = {}
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN")  # one snapshot for tokens and records
                unique = list(dict.fromkeys(tags))
                for start in range(0, len(unique), _IN_BATCH):
                    part = unique[start : start + _IN_BATCH]
                    marks = ",".join("?" * len(part))
                    for tag, rid, strength in conn.execute(
                        "SELECT tag, record_id, strength FROM identity_tokens"  # noqa: S608
                        f" WHERE dataset = ? AND tag IN ({marks})",
                        (dataset, *part),
                    ):
                        found.setdefault(bytes(tag), []).append((str(rid), str(strength)))
                meta = self._meta(conn, dataset, {r for v in found.values() for r, _ in v})
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return {}
                raise
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        return {
            tag: [Match(rid, s, *meta.get(rid, ("", ""))) for rid, s in rows]
            for tag, rows in found.items()
        }

    @staticmethod
    def _meta(conn: sqlite3.Connection, dataset: str, ids: set[str]) -> dict[str, tuple[str, str]]:
        if dataset != "persons" or not ids:
            return {}
        out: dict[str, tuple[str, str]] = {}
        listed = list(ids)
        for start in range(0, len(listed), _IN_BATCH):
            part = listed[start : start + _IN_BATCH]
            marks = ",".join("?" * len(part))
            for rid, category, nationality in conn.execute(
                "SELECT record_id, category, nationality FROM persons"  # noqa: S608
                f" WHERE record_id IN ({marks})",
                part,
            ):
                out[str(rid)] = (str(category or ""), str(nationality or ""))
        return out

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
