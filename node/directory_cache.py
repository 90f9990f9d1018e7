"""The node's copy of the signed directory: on disk, in memory, and kept fresh.

The cache survives restarts and hub outages. A newer serial replaces it; a
lower one is refused (rollback); once it expires the node fails closed, and
says so, until the hub is reachable again.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from trust.clock import now_ms
from trust.directory import Directory, verify_directory
from trust.dsse import Envelope
from trust.errors import DirectoryError
from trust.signed import read_envelope, store_envelope


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace path with data so a crash leaves the old or the new file, never half."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


class DirectoryCache:
    def __init__(self, path: Path, *, hub_public_key: bytes) -> None:
        self._path = path
        self._hub_key = hub_public_key
        self._lock = threading.Lock()
        self._directory = verify_directory(
            read_envelope(path, what="cached directory", error=DirectoryError),
            hub_public_key=hub_public_key,
            now_ms=None,
        )
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
            return True
