"""Replay protection: a nonce, and a query id, are accepted once per requester.

Both are remembered until the request that carried them expires (after which
the request is refused as expired anyway), in memory for the fast check and in
state.db so that a restart does not reopen the window. The table is written
append-only in arrival order with no index, so remembering costs a sequential
append in the same group commit as the request's audit record; expired rows are
swept in bulk once a minute.

``replay_seen`` is not signed, so at start the query ids of the responder
records in the audit log's recent past (``audit_window_ms``, longer than any
request may live) are remembered too: the audit chain is signed and anchored at
the hub, and a replayed request carries its signed query id, so wiping
``replay_seen`` reopens no window.
"""

from __future__ import annotations

import sqlite3
import threading

from rcf.node.ops.state import StateDB
from rcf.trust.clock import now_ms
from rcf.trust.errors import RequestRejected

PURGE_EVERY_MS = 60_000
# Longer than any request may live (max_request_ttl_s plus clock skew, 330 s by default).
AUDIT_WINDOW_MS = 3_600_000
_PAGE = 5_000


class ReplayGuard:
    def __init__(self, state: StateDB, *, audit_window_ms: int = AUDIT_WINDOW_MS) -> None:
        self._state = state
        self._lock = threading.Lock()
        now = now_ms()
        self._nonces: dict[tuple[str, bytes], int] = {}
        self._query_ids: dict[tuple[str, str], int] = {}
        for requester, nonce, query_id, expires in state.read(
            "SELECT requester, nonce, query_id, expires_at_ms FROM replay_seen"
            " WHERE expires_at_ms > ?",
            (now,),
        ):
            self._nonces[(str(requester), bytes(nonce))] = int(expires)  # type: ignore[call-overload]
            self._query_ids[(str(requester), str(query_id))] = int(expires)  # type: ignore[call-overload]
        self._remember_audited(now, audit_window_ms)
        self._next_purge = now

    def _remember_audited(self, now: int, window_ms: int) -> None:
        """Query ids the node answered or refused in the last window_ms, newest first."""
        before = 2**62
        while True:
            rows = self._state.read(
                "SELECT seq, ts_ms, requester, query_id FROM audit WHERE seq < ?"
                " AND side = 'responder' ORDER BY seq DESC LIMIT ?",
                (before, _PAGE),
            )
            for seq, ts, requester, query_id in rows:
                if int(str(ts)) <= now - window_ms:
                    return
                if query_id:
                    key = (str(requester), str(query_id))
                    self._query_ids[key] = max(
                        self._query_ids.get(key, 0), int(str(ts)) + window_ms
                    )
                before = int(str(seq))
            if len(rows) < _PAGE:
                return

    def remember(self, requester: str, nonce: bytes, query_id: str, expires_at_ms: int) -> None:
        """Record nonce and query id, or raise RequestRejected if either was seen before."""
        nonce_key, query_key = (requester, nonce), (requester, query_id)
        now = now_ms()
        with self._lock:
            if nonce_key in self._nonces:
                raise RequestRejected(
                    "This request was already received once (replayed nonce).",
                    reason="replayed_nonce",
                    status="ALREADY_EXISTS",
                )
            if query_key in self._query_ids:
                raise RequestRejected(
                    "This query id was already used by this requester.",
                    reason="replayed_query_id",
                    status="ALREADY_EXISTS",
                )
            self._nonces[nonce_key] = expires_at_ms
            self._query_ids[query_key] = expires_at_ms
            purge = now >= self._next_purge
            if purge:
                self._nonces = {k: v for k, v in self._nonces.items() if v > now}
                self._query_ids = {k: v for k, v in self._query_ids.items() if v > now}
                self._next_purge = now + PURGE_EVERY_MS

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO replay_seen VALUES (?, ?, ?, ?)",
                (expires_at_ms, requester, nonce, query_id),
            )
            if purge:
                conn.execute("DELETE FROM replay_seen WHERE expires_at_ms <= ?", (now,))

        # Not awaited here: the audit record that every request ends with commits it first.
        self._state.queue(write)
