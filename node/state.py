"""The node's own SQLite state file and its group-commit writer.

Writes that must be durable before a response leaves (audit records, seen
nonces) go through one writer thread that commits them in batches: many
concurrent calls share one transaction, and each caller waits until its own
write is committed.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import sqlite_utils

MAX_BATCH = 512

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL,"
    " query_id TEXT NOT NULL, query_type TEXT NOT NULL, purpose TEXT NOT NULL,"
    " requester TEXT NOT NULL, responder TEXT NOT NULL, side TEXT NOT NULL,"
    " decision TEXT NOT NULL, reason TEXT NOT NULL, request_sha256 TEXT NOT NULL,"
    " response_sha256 TEXT NOT NULL, prev_hash TEXT NOT NULL, record_hash TEXT NOT NULL,"
    " key_id TEXT NOT NULL, signature BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_query ON audit (query_id)",
    "CREATE TABLE IF NOT EXISTS seen_nonces (requester TEXT NOT NULL, nonce BLOB NOT NULL,"
    " expires_at_ms INTEGER NOT NULL, PRIMARY KEY (requester, nonce)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS seen_nonces_expiry ON seen_nonces (expires_at_ms)",
    # Append-only: the database itself refuses to change or drop audit rows.
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
)

Write = Callable[[sqlite3.Connection], object]


class StateDB:
    """One node's state.db: a reader connection and a batching writer thread."""

    def __init__(self, path: Path, *, sync: str = "normal") -> None:
        self.path = path
        self._writer_conn = self._connect(sync)
        with self._writer_conn:
            for stmt in SCHEMA:
                self._writer_conn.execute(stmt)
        self._queue: queue.Queue[tuple[Write, Future[object]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)
        self._thread.start()
        self._read_lock = threading.Lock()
        self._reader = self._connect(sync)

    def _connect(self, sync: str) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        db = sqlite_utils.Database(conn)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
        return conn

    def submit(self, write: Write) -> Future[object]:
        """Queue write for the next batch; the future resolves once it is committed."""
        fut: Future[object] = Future()
        self._queue.put((write, fut))
        return fut

    def read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._read_lock:
            return list(self._reader.execute(sql, params).fetchall())

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._commit(batch)
                    return
                batch.append(nxt)
            self._commit(batch)

    def _commit(self, batch: list[tuple[Write, Future[object]]]) -> None:
        results: list[object] = []
        conn = self._writer_conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for write, _ in batch:
                conn.execute("SAVEPOINT one")
                try:
                    results.append(write(conn))
                    conn.execute("RELEASE one")
                except Exception as exc:  # one bad write must not sink the batch
                    conn.execute("ROLLBACK TO one")
                    conn.execute("RELEASE one")
                    results.append(exc)
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _, fut in batch:
                fut.set_exception(exc)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._writer_conn.close()
        self._reader.close()
