"""The hub's append-only Merkle log (RFC 9162) in SQLite, built for 10^7+ entries.

Storage: every entry, and the hash of every complete perfect subtree, written
once as the subtree completes. Nodes are keyed by their position in post-order
(the order an append-only tree creates them), so each batch is a pure append
at the end of one B-tree: the leaf at index i sits at 2i - popcount(i), and the
perfect subtree (level h, index k) right after its last leaf's position plus h.

Every root, inclusion proof and consistency proof is made of the hashes of
O(log n) perfect subtrees (trust.merkle names them), fetched in one query. No
row is ever updated or deleted (triggers refuse it); a batch is one
transaction, so a crash leaves the log at a batch boundary.

Storage only: signing checkpoints, witnesses and the RPCs live elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType

from rcf.trust import merkle
from rcf.trust.errors import ConfigError, RequestRejected
from rcf.trust.sqlite import immediate

SCHEMA_VERSION = 1
MAX_ENTRY_BYTES = 64 * 1024
MAX_BATCH = 1_000_000
CACHE_KIB = -65536  # negative: KiB, as SQLite takes it

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS merkle_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS merkle_nodes (pos INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS merkle_entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)",
    *(
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table}"
        f" BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        for table in ("merkle_nodes", "merkle_entries")
        for op in ("UPDATE", "DELETE")
    ),
)


def node_position(level: int, index: int) -> int:
    """Post-order position of the perfect subtree covering [index << level, (index+1) << level)."""
    last_leaf = ((index + 1) << level) - 1
    return 2 * last_leaf - last_leaf.bit_count() + level


def _out_of_range(message: str) -> RequestRejected:
    return RequestRejected(message, reason="out_of_range", status="OUT_OF_RANGE")


def _create_private(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


class MerkleStore:
    """One append-only Merkle log in one SQLite file (WAL; -wal/-shm inherit its 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            _create_private(path)
            self._conn = sqlite3.connect(
                path, timeout=30, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"Cannot open the Merkle log {path}: {exc}.") from exc
        self._lock = threading.Lock()
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(f"PRAGMA cache_size={CACHE_KIB}")
            with immediate(self._conn):
                for stmt in _SCHEMA:
                    self._conn.execute(stmt)
                self._conn.execute(
                    "INSERT OR IGNORE INTO merkle_meta VALUES ('schema_version', ?), ('size', 0)",
                    (SCHEMA_VERSION,),
                )
                version = self._meta("schema_version")
            if version != SCHEMA_VERSION:
                raise ConfigError(f"{path} is a Merkle log of unknown schema {version}.")
            self._size = 0
            self._peaks: list[bytes] = []
            self._load_frontier()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ConfigError(f"{path} is not a usable Merkle log: {exc}.") from exc
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> MerkleStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------

    def _meta(self, key: str) -> int:
        row = self._conn.execute("SELECT value FROM merkle_meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise ConfigError(f"The Merkle log {self.path} lacks its '{key}' record.")
        return int(row[0])

    def _load_frontier(self) -> None:
        """Read the size and the hashes of its perfect subtrees (the right edge of the tree)."""
        size = self._meta("size")
        last = self._conn.execute("SELECT MAX(idx) FROM merkle_entries").fetchone()[0]
        if (last is None and size != 0) or (last is not None and last + 1 != size):
            raise ConfigError(f"The Merkle log {self.path} is damaged: its size is inconsistent.")
        self._peaks = self._subtree_hashes(merkle.subtree_decomposition(0, size)) if size else []
        self._size = size

    def _fetch(self, positions: Iterable[int]) -> dict[int, bytes]:
        wanted = sorted(set(positions))
        found: dict[int, bytes] = {}
        # SQLite allows at least 999 bound parameters; proofs need < 130 positions.
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                self._conn.execute(
                    f"SELECT pos, hash FROM merkle_nodes WHERE pos IN ({marks})",  # noqa: S608
                    chunk,
                ).fetchall()
            )
        if len(found) != len(wanted):
            raise ConfigError(f"The Merkle log {self.path} is damaged: hashes are missing.")
        return found

    def _subtree_hashes(self, subtrees: Sequence[tuple[int, int]]) -> list[bytes]:
        found = self._fetch(node_position(level, index) for level, index in subtrees)
        return [found[node_position(level, index)] for level, index in subtrees]

    def _range_hashes(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """MTH of each RFC subtree range, from one read of the perfect subtrees they span."""
        parts = [merkle.subtree_decomposition(start, end) for start, end in ranges]
        found = self._fetch(node_position(lv, ix) for part in parts for lv, ix in part)
        return [merkle.fold_right([found[node_position(lv, ix)] for lv, ix in p]) for p in parts]

    def _refresh(self) -> None:
        """Catch up with entries another handle (or process) appended since we last looked."""
        if self._meta("size") != self._size:
            self._load_frontier()

    def _check_size(self, size: int, what: str = "tree size") -> None:
        if type(size) is not int or not 0 <= size <= self._size:
            raise _out_of_range(f"The {what} is beyond the log's {self._size} entries.")

    # -- the log --------------------------------------------------------------

    def size(self) -> int:
        """Number of entries in the log."""
        with self._lock:
            self._refresh()
            return self._size

    def append(
        self,
        leaves: Sequence[bytes],
        *,
        with_write: Callable[[sqlite3.Connection, int], None] | None = None,
    ) -> int:
        """Append entries in one transaction; returns the index of the first one.

        Entries are the logged records' bytes; the log hashes each as a leaf,
        SHA-256(0x00 || entry), and keeps the bytes for entry(). with_write, if
        given, runs in the same transaction (with the first index), so what a
        caller records about the entries commits with them or not at all.
        """
        if len(leaves) > MAX_BATCH:
            raise RequestRejected(
                f"A batch may hold at most {MAX_BATCH} entries.",
                reason="batch_too_large",
                status="INVALID_ARGUMENT",
            )
        for data in leaves:
            if not isinstance(data, bytes) or len(data) > MAX_ENTRY_BYTES:
                raise RequestRejected(
                    f"Every log entry must be bytes of at most {MAX_ENTRY_BYTES} bytes.",
                    reason="bad_entry",
                    status="INVALID_ARGUMENT",
                )
        sha256 = hashlib.sha256
        with self._lock:
            if not leaves:
                self._refresh()
                return self._size
            with immediate(self._conn):
                if self._meta("size") != self._size:  # another process appended
                    self._load_frontier()
                first = n = self._size
                peaks = list(self._peaks)
                nodes: list[tuple[int, bytes]] = []
                for data in leaves:
                    h = sha256(b"\x00" + data).digest()
                    pos = 2 * n - n.bit_count()
                    nodes.append((pos, h))
                    n += 1
                    carry = n
                    while not carry & 1:  # the new leaf completes perfect subtrees
                        h = sha256(b"\x01" + peaks.pop() + h).digest()
                        pos += 1
                        nodes.append((pos, h))
                        carry >>= 1
                    peaks.append(h)
                self._conn.executemany("INSERT INTO merkle_nodes VALUES (?, ?)", nodes)
                self._conn.executemany(
                    "INSERT INTO merkle_entries VALUES (?, ?)",
                    zip(range(first, n), leaves, strict=True),
                )
                self._conn.execute("UPDATE merkle_meta SET value = ? WHERE key = 'size'", (n,))
                if with_write is not None:
                    with_write(self._conn, first)
            self._size, self._peaks = n, peaks
            return first

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first size entries (default: all); SHA-256("") when size is 0."""
        with self._lock:
            self._refresh()
            if size is None or size == self._size:
                return merkle.fold_right(self._peaks) if self._peaks else merkle.EMPTY_ROOT
            self._check_size(size)
            if size == 0:
                return merkle.EMPTY_ROOT
            return self._range_hashes([(0, size)])[0]

    def leaf_hash(self, index: int) -> bytes:
        """The RFC 9162 leaf hash of entry index."""
        with self._lock:
            self._refresh()
            if type(index) is not int or not 0 <= index < self._size:
                raise _out_of_range(f"There is no entry {index} in the log.")
            return self._fetch([node_position(0, index)])[node_position(0, index)]

    def entry(self, index: int) -> bytes:
        """The bytes of entry index, as appended."""
        with self._lock:
            self._refresh()
            if type(index) is not int or not 0 <= index < self._size:
                raise _out_of_range(f"There is no entry {index} in the log.")
            row = self._conn.execute(
                "SELECT data FROM merkle_entries WHERE idx = ?", (index,)
            ).fetchone()
            return bytes(row[0])

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size]), leaf upwards: what verify_inclusion takes."""
        with self._lock:
            self._refresh()
            self._check_size(size)
            if type(index) is not int or not 0 <= index < size:
                raise _out_of_range("The entry index is not inside the tree size.")
            return self._range_hashes(merkle.inclusion_ranges(index, size))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """PROOF(size1, D[size2]) for 0 < size1 <= size2: what verify_consistency takes."""
        with self._lock:
            self._refresh()
            self._check_size(size2)
            if type(size1) is not int or not 0 < size1 <= size2:
                raise _out_of_range("A consistency proof needs 0 < first size <= second size.")
            return self._range_hashes(merkle.consistency_ranges(size1, size2))
