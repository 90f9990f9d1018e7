"""Console accounts: Argon2id passwords, optional TOTP, lock-out after repeated failures.

The accounts live in the console's own folder (accounts.db, 0600 in a 0700 folder),
never in the node's databases: the console reaches its node only through the
operator API.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from rcf.trust.errors import ConfigError
from rcf.trust.files import private_dir, private_file

ROLES = ("officer", "analyst", "policy-admin", "auditor", "operator")
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
LOCK_AFTER = 5  # failed logins in a row
LOCK_SECONDS = 15 * 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    roles TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret TEXT NOT NULL DEFAULT '',
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0,
    last_totp_step INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Account:
    name: str
    roles: tuple[str, ...]
    totp: bool


class LoginFailed(Exception):
    """Wrong name, password or code, or a locked account: the user is told only that."""


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ConfigError(
            "An account name is 1 to 64 of a-z, 0-9, '.', '_' or '-', starting with a letter "
            "or digit."
        )
    return name


def check_roles(roles: tuple[str, ...]) -> tuple[str, ...]:
    if not roles:
        raise ConfigError(f"Give at least one --role ({', '.join(ROLES)}).")
    for r in roles:
        if r not in ROLES:
            raise ConfigError(f"Unknown role '{r}'; the roles are {', '.join(ROLES)}.")
    return tuple(dict.fromkeys(roles))


class AccountStore:
    """The console's accounts database; clock injectable for the lock-out tests."""

    def __init__(self, folder: Path, *, clock: Callable[[], float] = time.time) -> None:
        private_dir(folder)
        self.path = private_file(folder / "accounts.db")
        self._clock = clock
        self._hasher = PasswordHasher()  # argon2id with the library's current parameters
        with self._conn() as conn:
            conn.execute(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        return conn

    def add(self, name: str, *, roles: tuple[str, ...], password: str, totp: bool = False) -> str:
        """Create an account; returns its TOTP secret ("" without TOTP)."""
        check_name(name)
        roles = check_roles(roles)
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise ConfigError(f"A password needs at least {MIN_PASSWORD} characters.")
        secret = pyotp.random_base32() if totp else ""
        with closing(self._conn()) as conn:
            try:
                conn.execute(
                    "INSERT INTO accounts (name, roles, password_hash, totp_secret, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (name, ",".join(roles), self._hasher.hash(password), secret, self._clock()),
                )
            except sqlite3.IntegrityError:
                raise ConfigError(f"There is already an account named {name}.") from None
        return secret

    def remove(self, name: str) -> None:
        with closing(self._conn()) as conn:
            if conn.execute("DELETE FROM accounts WHERE name = ?", (name,)).rowcount == 0:
                raise ConfigError(f"There is no account named {name}.")

    def unlock(self, name: str) -> None:
        with closing(self._conn()) as conn:
            cur = conn.execute(
                "UPDATE accounts SET failures = 0, locked_until = 0 WHERE name = ?", (name,)
            )
            if cur.rowcount == 0:
                raise ConfigError(f"There is no account named {name}.")

    def list(self) -> list[Account]:
        with closing(self._conn()) as conn:
            rows = conn.execute(
                "SELECT name, roles, totp_secret FROM accounts ORDER BY name"
            ).fetchall()
        return [Account(r[0], tuple(r[1].split(",")), bool(r[2])) for r in rows]

    def get(self, name: str) -> Account | None:
        return next((a for a in self.list() if a.name == name), None)

    def locked(self, name: str) -> bool:
        with closing(self._conn()) as conn:
            row = conn.execute(
                "SELECT locked_until FROM accounts WHERE name = ?", (name,)
            ).fetchone()
        return bool(row) and float(row[0]) > self._clock()

    def authenticate(self, name: str, password: str, code: str = "") -> Account:
        """The account if name, password (and code, with TOTP) are right and it is not
        locked; else LoginFailed. LOCK_AFTER failures in a row lock it for LOCK_SECONDS."""
        with closing(self._conn()) as conn:
            row = conn.execute(
                "SELECT roles, password_hash, totp_secret, failures, locked_until,"
                " last_totp_step FROM accounts WHERE name = ?",
                (name,),
            ).fetchone()
            if row is None:
                # The same work as for a real account, so timing does not tell names apart.
                with suppress(VerificationError):
                    self._hasher.verify(_DUMMY_HASH, password[:MAX_PASSWORD])
                raise LoginFailed
            roles, pw_hash, secret, failures, locked_until, last_step = row
            now = self._clock()
            if float(locked_until) > now:
                raise LoginFailed
            good = True
            try:
                self._hasher.verify(pw_hash, password[:MAX_PASSWORD])
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                good = False
            step = 0
            if good and secret:
                totp = pyotp.TOTP(secret)
                step = int(now // totp.interval)
                # A code is good once: the step it belongs to must be newer than the last used.
                good = any(
                    totp.verify(code.strip(), for_time=int(now) + d * totp.interval)
                    and step + d > int(last_step)
                    for d in (-1, 0)
                )
            if not good:
                failures = int(failures) + 1
                lock = now + LOCK_SECONDS if failures >= LOCK_AFTER else 0.0
                conn.execute(
                    "UPDATE accounts SET failures = ?, locked_until = ? WHERE name = ?",
                    (0 if lock else failures, lock, name),
                )
                raise LoginFailed
            conn.execute(
                "UPDATE accounts SET failures = 0, last_totp_step = MAX(last_totp_step, ?)"
                " WHERE name = ?",
                (step, name),
            )
        return Account(name, tuple(roles.split(",")), bool(secret))


_DUMMY_HASH = PasswordHasher().hash("not an account: equalises the time a wrong name takes")
