"""Private files and folders: hub and node folders are 0700, every file in them 0600.

Modes are set explicitly (``fchmod``/``chmod``) rather than left to the umask,
so a permissive umask (0000, 0002) changes nothing. SQLite creates a
database's ``-wal`` and ``-shm`` files with the database file's own mode, so a
database created here through ``private_file`` keeps its companions private
too. ``loose_modes`` finds anything looser, for the status commands.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create path (and parents) if missing; make path itself 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create path empty if missing; make it 0600 (an existing file keeps its content)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def write_private(path: Path, data: bytes | str) -> None:
    """Replace path with data, 0600, atomically: a crash leaves the old or the new file."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        if fd >= 0:
            os.close(fd)
    tmp.replace(path)


@contextmanager
def open_private(path: Path, *, encoding: str = "utf-8", newline: str = "") -> Iterator[IO[str]]:
    """A text file opened for writing from scratch, 0600 before the first byte lands."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    with os.fdopen(fd, "w", encoding=encoding, newline=newline) as fh:
        yield fh


def loose_modes(root: Path) -> list[str]:
    """One sentence per folder under root (root too) looser than 0700 and file looser than
    0600; empty if everything is private."""
    found: list[str] = []

    def check(path: Path, wanted: int, kind: str) -> None:
        try:
            mode = stat.S_IMODE(path.lstat().st_mode)
        except FileNotFoundError:
            return  # gone meanwhile (a -wal file at checkpoint, a .tmp being renamed)
        if mode & ~wanted & 0o777:
            found.append(
                f"{kind} {path} is mode {mode:04o}; it should be {wanted:04o} "
                f"(chmod {wanted:o} '{path}')."
            )

    if not root.is_dir():
        return found
    check(root, DIR_MODE, "folder")
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        for d in dirs:
            if not (base / d).is_symlink():
                check(base / d, DIR_MODE, "folder")
        for f in files:
            if not (base / f).is_symlink():
                check(base / f, FILE_MODE, "file")
    return sorted(found)
