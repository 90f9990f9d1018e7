"""Rollback protection that survives a restart.

The directory cache refuses a lower serial than the one it holds, but the
file it holds is only a file: replacing ``directory.signed`` with an older
signed copy (or ``dictionary.signed`` with an older dictionary) would wind
the node back, undoing suspensions until the next refresh. So the highest
directory serial and dictionary version the node ever accepted are also kept
in state.db, and anything lower is refused, at start as well as on refresh.

The floor is raised only after the newer file is written, so a crash in
between leaves a file newer than the floor (raised at the next start), never
a floor above the file.
"""

from __future__ import annotations

import sqlite3

from rcf.node.data.dictionary import read_cached_dictionary
from rcf.node.ops.config import NodeLayout
from rcf.node.ops.state import StateDB
from rcf.trust.dictionary import DictionaryError, parse_version
from rcf.trust.directory import Directory
from rcf.trust.errors import DirectoryError

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rollback_floor (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
    " WITHOUT ROWID"
)
SERIAL = "directory_serial"
DICTIONARY = "dictionary_version"


class RollbackFloor:
    """The highest directory serial and dictionary version ever accepted, in state.db."""

    def __init__(self, state: StateDB) -> None:
        self._state = state
        state.run(lambda conn: conn.execute(SCHEMA))

    def _get(self, name: str) -> str | None:
        rows = self._state.read("SELECT value FROM rollback_floor WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def _set(self, name: str, value: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO rollback_floor VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

        self._state.run(write)

    @property
    def directory_serial(self) -> int:
        return int(self._get(SERIAL) or 0)

    @property
    def dictionary_version(self) -> str:
        return self._get(DICTIONARY) or ""

    def refuse_older_directory(self, directory: Directory) -> None:
        """Raise DirectoryError if directory is older than one accepted before."""
        floor = self.directory_serial
        if directory.serial < floor:
            raise DirectoryError(
                f"The cached directory has serial {directory.serial}, but this node already "
                f"accepted serial {floor}; directory.signed was replaced with an older copy "
                "(rollback). Restore the newer file, or re-enrol the node.",
                reason="directory_rollback",
            )

    def accept_directory(self, serial: int) -> None:
        """Raise the floor to serial (once that directory is on disk)."""
        if serial > self.directory_serial:
            self._set(SERIAL, str(serial))

    def refuse_older_dictionary(self, version: str) -> None:
        """Raise DictionaryError if version is older than one accepted before."""
        floor = self.dictionary_version
        if floor and parse_version(version) < parse_version(floor):
            raise DictionaryError(
                f"The data dictionary is version {version}, but this node already accepted "
                f"version {floor}; dictionary.signed was replaced with an older copy "
                "(rollback). Delete it: the node fetches the current one from the hub.",
                reason="dictionary_rollback",
            )

    def accept_dictionary(self, version: str) -> None:
        """Raise the floor to version (once that dictionary is on disk)."""
        floor = self.dictionary_version
        if not floor or parse_version(version) > parse_version(floor):
            self._set(DICTIONARY, version)


def open_floor(layout: NodeLayout, state: StateDB, *, hub_public_key: bytes) -> RollbackFloor:
    """The node's floor, after checking the cached dictionary against it (at start).

    A missing dictionary.signed is no rollback: the node then uses its built-in
    version and fetches the current one from the hub; only an older file is refused."""
    floor = RollbackFloor(state)
    if layout.dictionary_cache.exists():
        cached = read_cached_dictionary(layout, hub_public_key)
        if cached is not None:
            floor.refuse_older_dictionary(cached.version)
            floor.accept_dictionary(cached.version)
    return floor
