"""The node's copy of the signed directory: on disk, in memory, and kept fresh.

The cache survives restarts and hub outages. A newer serial replaces it; a
lower one is refused (rollback); once it expires the node fails closed, and
says so, until the hub is reachable again.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from rcf.trust.clock import now_ms
from rcf.trust.directory import Directory, verify_directory
from rcf.trust.dsse import Envelope
from rcf.trust.errors import DirectoryError
from rcf.trust.signed import read_envelope, store_envelope

if TYPE_CHECKING:
    from rcf.node.ops.rollback import RollbackFloor


class DirectoryCache:
    """The held directory. With a floor (the node's, in state.db), a cached file older
    than any directory accepted before is refused at start too."""

    def __init__(
        self, path: Path, *, hub_public_key: bytes, floor: RollbackFloor | None = None
    ) -> None:
        self._path = path
        self._hub_key = hub_public_key
        self._lock = threading.Lock()
        self._floor = floor
        self._directory = verify_directory(
            read_envelope(path, what="cached directory", error=DirectoryError),
            hub_public_key=hub_public_key,
            now_ms=None,
        )
        if floor is not None:
            floor.refuse_older_directory(self._directory)
            floor.accept_directory(self._directory.serial)
        self.fetched_at_ms = int(path.stat().st_mtime * 1000)

    def current(self) -> Directory:
        """The directory to decide with; raises DirectoryError once it has expired."""
        directory = self._directory
        if directory.expired(now_ms()):
            raise DirectoryError(
                f"The cached directory (serial {directory.serial}) has expired and the hub "
                "could not be reached to renew it; refusing to answer until it is.",
                reason="directory_expired",
            )
        return directory

    def peek(self) -> Directory:
        """The held directory even if expired (for status displays)."""
        return self._directory

    def update(self, envelope: Envelope) -> bool:
        """Adopt a newer signed directory; True if it replaced the held one."""
        with self._lock:
            held = self._directory.serial
            fresh = verify_directory(
                envelope, hub_public_key=self._hub_key, now_ms=now_ms(), min_serial=held
            )
            self.fetched_at_ms = now_ms()
            if fresh.serial == held:
                return False
            store_envelope(self._path, envelope)
            self._directory = fresh
            if self._floor is not None:
                self._floor.accept_directory(fresh.serial)
            return True
