"""The hub's published data dictionary versions, kept in the registry database.

Every version is stored signed, as published, so a node asking for an older
one gets the very bytes it was given before. A new version is accepted only
if it is a valid successor of the latest (see trust.dictionary.check_successor).
"""

from __future__ import annotations

import dataclasses
import sqlite3

from rcf.protos.v1 import envelope_pb2
from rcf.trust.clock import now_ms
from rcf.trust.dictionary import (
    DataDictionary,
    DictionaryError,
    check_successor,
    default_dictionary,
    parse_version,
    sign_dictionary,
    verify_dictionary,
)
from rcf.trust.dsse import Envelope
from rcf.trust.keys import SigningKey


def ensure_schema(conn: sqlite3.Connection, key: SigningKey | None) -> None:
    """Inside a transaction: create the table and publish the v1 defaults on a new hub
    (key None: a registry opened read-only, which publishes nothing)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS dictionaries (version TEXT PRIMARY KEY,"
        " major INTEGER NOT NULL, minor INTEGER NOT NULL,"
        " published_at_ms INTEGER NOT NULL, envelope BLOB NOT NULL)"
    )
    if key is not None and conn.execute("SELECT COUNT(*) FROM dictionaries").fetchone()[0] == 0:
        _insert(conn, default_dictionary(), key)


def _insert(conn: sqlite3.Connection, dictionary: DataDictionary, key: SigningKey) -> None:
    published = dataclasses.replace(dictionary, issued_at_ms=now_ms())
    major, minor = parse_version(published.version)
    envelope = sign_dictionary(published, key)
    conn.execute(
        "INSERT INTO dictionaries VALUES (?, ?, ?, ?, ?)",
        (
            published.version,
            major,
            minor,
            published.issued_at_ms,
            envelope.to_proto().SerializeToString(),
        ),
    )


def latest_version(conn: sqlite3.Connection) -> str:
    row = conn.execute(
        "SELECT version FROM dictionaries ORDER BY major DESC, minor DESC LIMIT 1"
    ).fetchone()
    return str(row[0]) if row else ""


def signed(conn: sqlite3.Connection, version: str = "") -> Envelope:
    """The signed dictionary of version (the latest if empty)."""
    row = conn.execute(
        "SELECT envelope FROM dictionaries WHERE version = ?", (version or latest_version(conn),)
    ).fetchone()
    if row is None:
        raise DictionaryError(
            f"The hub has no data dictionary version {version!r}.",
            reason="dictionary_unknown",
            status="NOT_FOUND",
        )
    msg = envelope_pb2.Envelope()
    msg.ParseFromString(row[0])
    return Envelope.from_proto(msg)


def publish(conn: sqlite3.Connection, dictionary: DataDictionary, key: SigningKey) -> None:
    """Inside a transaction: store dictionary as the next version, if it may follow."""
    current = verify_dictionary(signed(conn), hub_public_key=key.public_key)
    check_successor(current, dictionary)
    _insert(conn, dictionary, key)
