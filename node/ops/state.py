"""The node's own SQLite state file and its group commit.

Writes that must be durable before a response leaves (audit records, seen
nonces) are committed in batches: whichever caller takes the commit lock first
commits everything queued so far in one transaction, and the others find their
write already done. No writer thread, so an uncontended write costs one commit
and no thread hand-off; under load, batches form by themselves.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from rcf.trust.files import private_file

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL,"
    " query_id TEXT NOT NULL, query_type TEXT NOT NULL, purpose TEXT NOT NULL,"
    " requester TEXT NOT NULL, responder TEXT NOT NULL, side TEXT NOT NULL,"
    " decision TEXT NOT NULL, reason TEXT NOT NULL, request_sha256 TEXT NOT NULL,"
    " response_sha256 TEXT NOT NULL, prev_hash TEXT NOT NULL, record_hash TEXT NOT NULL,"
    " key_id TEXT NOT NULL)",
    # One node signature per committed batch, over the chain head at that record:
    # through the hash chain it covers every earlier record too.
    "CREATE TABLE IF NOT EXISTS audit_signatures (seq INTEGER PRIMARY KEY REFERENCES audit,"
    " key_id TEXT NOT NULL, signature BLOB NOT NULL)",
    # No index on query_id: it would cost a random page write per record, and
    # nothing on the request path looks records up by it.
    "DROP INDEX IF EXISTS audit_query",
    # Nonces and query ids seen, appended in arrival order (see node.replay).
    "CREATE TABLE IF NOT EXISTS replay_seen (expires_at_ms INTEGER NOT NULL,"
    " requester TEXT NOT NULL, nonce BLOB NOT NULL, query_id TEXT NOT NULL)",
    "DROP TABLE IF EXISTS seen_nonces",
    # Append-only: the database itself refuses to change or drop audit rows.
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_sig_no_update BEFORE UPDATE ON audit_signatures"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_sig_no_delete BEFORE DELETE ON audit_signatures"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
)

Write = Callable[[sqlite3.Connection], object]
# A batch this large stops the leader's wait for more (see StateDB.gather).
GATHER_CAP = 64
BatchHook = Callable[[sqlite3.Connection], None]
RollbackHook = Callable[[], None]


class _Pending:
    __slots__ = ("done", "error", "result", "wake", "write")

    def __init__(self, write: Write, *, waiter: bool) -> None:
        self.write = write
        self.done = False
        self.result: object = None
        self.error: BaseException | None = None
        # Held from birth; released exactly once: when the write is committed, or to
        # make this waiter the next leader. None for queued writes nobody waits on.
        self.wake: threading.Lock | None = None
        if waiter:
            self.wake = threading.Lock()
            self.wake.acquire()


class StateDB:
    """One node's state.db: a reader connection and a group-committing writer connection."""

    def __init__(self, path: Path, *, sync: str = "normal") -> None:
        self.path = private_file(path)  # 0600 before SQLite opens it; -wal/-shm follow
        self._writer_conn = self._connect(sync)
        with self._writer_conn:
            for stmt in SCHEMA:
                self._writer_conn.execute(stmt)
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._committing = False
        self._expected: Callable[[], int] | None = None
        self._gather_s = 0.0
        self.batches = 0
        self.batched_writes = 0
        self._read_lock = threading.Lock()
        self._reader = self._connect(sync)
        self._hooks: list[BatchHook] = []
        self._rollback_hooks: list[RollbackHook] = []

    def on_batch_end(self, hook: BatchHook, *, on_rollback: RollbackHook) -> None:
        """Run hook inside every batch's transaction, after its writes, before COMMIT;
        on_rollback after a batch is rolled back, to drop state cached from it."""
        self._hooks.append(hook)
        self._rollback_hooks.append(on_rollback)

    def gather(self, expected_writers: Callable[[], int], *, window_s: float) -> None:
        """Let a batch leader wait up to window_s for followers when writers overlap
        (expected_writers() > 1): one commit, head signature and fsync then serve many
        requests. A lone writer never waits; a full batch (GATHER_CAP) stops waiting."""
        self._expected = expected_writers
        self._gather_s = window_s

    def _wait_for_followers(self) -> None:
        expected = self._expected
        if expected is None or self._gather_s <= 0 or expected() <= 1:
            return
        deadline = time.monotonic() + self._gather_s
        with self._lock:
            while True:
                waiting = sum(1 for p in self._pending if p.wake is not None)
                remaining = deadline - time.monotonic()
                if waiting >= GATHER_CAP or remaining <= 0:
                    return
                self._arrived.wait(remaining)

    def _connect(self, sync: str) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        db = sqlite_utils.Database(conn)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
        return conn

    def queue(self, write: Write) -> None:
        """Queue write for the next batch without waiting; the next run() commits it first."""
        with self._lock:
            self._pending.append(_Pending(write, waiter=False))

    def run(self, write: Write) -> object:
        """Commit write (with whatever else is queued) and return its result.

        A caller that finds no batch in progress leads: it commits everything pending,
        wakes each waiter of that batch once, and hands the lead to the first waiter
        still pending. Everyone else sleeps on its own lock until then, so a batch
        costs one wake-up per waiter, not a broadcast to all of them.
        """
        item = _Pending(write, waiter=True)
        with self._lock:
            self._pending.append(item)
            lead = not self._committing
            self._committing = True
            if not lead:
                self._arrived.notify()
        if not lead:
            assert item.wake is not None
            item.wake.acquire()
        if not item.done:
            self._lead()
        if item.error is not None:
            raise item.error
        return item.result

    def _lead(self) -> None:
        self._wait_for_followers()
        with self._lock:
            batch, self._pending = self._pending, []
            self.batches += 1
            self.batched_writes += sum(1 for p in batch if p.wake is not None)
        try:
            self._commit(batch)
        finally:
            for other in batch:
                other.done = True
            with self._lock:
                successor = next((p for p in self._pending if p.wake is not None), None)
                if successor is None:
                    self._committing = False
            for other in batch:
                if other.wake is not None:
                    other.wake.release()
            if successor is not None and successor.wake is not None:
                successor.wake.release()

    def flush(self) -> None:
        """Commit whatever is queued."""
        self.run(lambda conn: None)

    def read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._read_lock:
            return list(self._reader.execute(sql, params).fetchall())

    def _commit(self, batch: list[_Pending]) -> None:
        # Fast path: the whole batch in one transaction. If any write fails, roll back
        # and commit each write on its own, so one bad write cannot sink the others.
        try:
            self._transaction(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = batch[0].error or exc
            else:
                for item in batch:
                    try:
                        self._transaction([item])
                    except Exception as exc:
                        item.error = exc
        for item in batch:
            item.done = True

    def _transaction(self, items: list[_Pending]) -> None:
        conn = self._writer_conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for item in items:
                item.result = item.write(conn)
            for hook in self._hooks:
                hook(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for reset in self._rollback_hooks:
                reset()
            if len(items) == 1:
                items[0].error = exc
            raise

    def close(self) -> None:
        self.flush()
        self._writer_conn.close()
        self._reader.close()
