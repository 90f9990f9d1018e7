"""Server-side sessions: a random id in the cookie, everything else in memory here.

A session ends after IDLE seconds without a request or ABSOLUTE seconds after login,
whichever comes first. Logging in always issues a new id (no session fixation); each
session has its own CSRF token, which every form carries back.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

IDLE_SECONDS = 15 * 60
ABSOLUTE_SECONDS = 8 * 60 * 60


@dataclass
class Session:
    sid: str
    csrf: str
    created: float
    seen: float
    user: str = ""  # "" before login: a session that only carries the login form's CSRF token
    roles: tuple[str, ...] = ()
    flash: list[str] = field(default_factory=list)

    def csrf_ok(self, token: str) -> bool:
        return bool(token) and hmac.compare_digest(token.encode(), self.csrf.encode())


class Sessions:
    def __init__(
        self,
        *,
        idle_seconds: float = IDLE_SECONDS,
        absolute_seconds: float = ABSOLUTE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.idle = idle_seconds
        self.absolute = absolute_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def new(self, *, user: str = "", roles: tuple[str, ...] = ()) -> Session:
        now = self._clock()
        s = Session(
            sid=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), created=now, seen=now,
            user=user, roles=roles,
        )  # fmt: skip
        with self._lock:
            self._expire(now)
            self._by_id[s.sid] = s
        return s

    def get(self, sid: str) -> Session | None:
        """The live session with this id (its idle clock restarted), or None."""
        now = self._clock()
        with self._lock:
            s = self._by_id.get(sid)
            if s is None:
                return None
            if now - s.seen > self.idle or now - s.created > self.absolute:
                del self._by_id[sid]
                return None
            s.seen = now
            return s

    def login(self, old: Session | None, *, user: str, roles: tuple[str, ...]) -> Session:
        """A fresh session for user; the pre-login one is dropped."""
        if old is not None:
            self.end(old.sid)
        return self.new(user=user, roles=roles)

    def end(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def end_user(self, user: str) -> None:
        """End every session of user (account removed)."""
        with self._lock:
            for sid in [k for k, s in self._by_id.items() if s.user == user]:
                del self._by_id[sid]

    def _expire(self, now: float) -> None:
        for sid in [
            k for k, s in self._by_id.items()
            if now - s.seen > self.idle or now - s.created > self.absolute
        ]:  # fmt: skip
            del self._by_id[sid]
