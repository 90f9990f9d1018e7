"""Replay protection: a nonce is accepted once per requester until its request expires.

Seen nonces live in memory for the fast check and in state.db so that a
restart does not reopen the window; the write joins the same group commit as
the audit record, so it is durable before the response leaves.
"""

from __future__ import annotations

import sqlite3
import threading

from node.state import StateDB
from trust.clock import now_ms
from trust.errors import RequestRejected


class ReplayGuard:
    def __init__(self, state: StateDB) -> None:
        self._state = state
        self._lock = threading.Lock()
        now = now_ms()
        self._seen: dict[tuple[str, bytes], int] = {
            (str(r[0]), bytes(r[1])): int(r[2])  # type: ignore[call-overload]
            for r in state.read(
                "SELECT requester, nonce, expires_at_ms FROM seen_nonces WHERE expires_at_ms > ?",
                (now,),
            )
        }
        self._next_purge = now

    def remember(self, requester: str, nonce: bytes, expires_at_ms: int) -> None:
        """Record the nonce, or raise RequestRejected if it was seen before."""
        key = (requester, nonce)
        now = now_ms()
        with self._lock:
            if key in self._seen:
                raise RequestRejected(
                    "This request was already received once (replayed nonce).",
                    reason="replayed_nonce",
                    status="ALREADY_EXISTS",
                )
            self._seen[key] = expires_at_ms
            purge = now >= self._next_purge
            if purge:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
                self._next_purge = now + 60_000

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO seen_nonces VALUES (?, ?, ?)",
                (requester, nonce, expires_at_ms),
            )
            if purge:
                conn.execute("DELETE FROM seen_nonces WHERE expires_at_ms <= ?", (now,))

        # Not awaited here: the audit record that every request ends with commits it first.
        self._state.queue(write)
