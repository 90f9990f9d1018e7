"""Backing up a node folder while it runs, and restoring it onto a stopped one.

A backup is one tar file, mode 0600 (it holds the node's private keys): both
SQLite files copied with SQLite's online backup API from a single read
transaction, so the data store and the state (audit log, seen nonces, policy
versions, and the highest directory serial the node ever accepted) come from
the same moment; the keys, certificates, node.toml, operator token and the
cached signed directory and dictionary; and ``backup.json``, which names every
file with its SHA-256.

Restoring refuses a folder whose node is running (it takes the same lock
`rcf node serve` holds) and never rolls the directory back: if the folder
already holds a newer signed directory than the backup, that one is kept, so
a restore cannot undo a suspension or a revocation the node had already seen.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rcf.node.ops.config import NodeLayout
from rcf.trust.clock import now_ms
from rcf.trust.directory import verify_directory
from rcf.trust.errors import ConfigError, RcfError
from rcf.trust.serving import InstanceLock
from rcf.trust.signed import read_envelope

MANIFEST = "backup.json"
KIND = "rcf-node-backup/v1"
DATABASES = ("data.db", "state.db")
# Files a running node writes for itself; they describe a process, not the node.
SKIPPED = {"serve.lock", "node-runtime.json", MANIFEST}
SKIPPED_SUFFIXES = ("-wal", "-shm", "-journal", ".tmp", ".new")


@dataclass(frozen=True)
class BackupInfo:
    member_id: str
    created_at_ms: int
    files: dict[str, str]  # name → sha256
    directory_serial: int


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_databases(layout: NodeLayout, into: Path) -> None:
    """Both databases from one read transaction, through SQLite's backup API."""
    present = [name for name in DATABASES if (layout.root / name).exists()]
    if not present:
        return
    src = sqlite3.connect(layout.root / present[0], isolation_level=None)
    try:
        schemas = {present[0]: "main"}
        for name in present[1:]:
            alias = name.split(".")[0]
            src.execute("ATTACH DATABASE ? AS " + alias, (str(layout.root / name),))
            schemas[name] = alias
        # Reading every schema inside one transaction pins one snapshot of each, so
        # writes that land while we copy are in neither copy or in both.
        src.execute("BEGIN")
        for schema in schemas.values():
            src.execute(f"SELECT COUNT(*) FROM {schema}.sqlite_master").fetchone()  # noqa: S608
        for name, schema in schemas.items():
            dst = sqlite3.connect(into / name)
            try:
                src.backup(dst, name=schema)
            finally:
                dst.close()
        src.execute("COMMIT")
    finally:
        src.close()


def _directory_serial(path: Path, hub_public_key: bytes) -> int:
    try:
        envelope = read_envelope(path, what="directory")
        return verify_directory(envelope, hub_public_key=hub_public_key, now_ms=None).serial
    except RcfError:
        return 0


def create_backup(root: Path, dest: Path) -> BackupInfo:
    """Write a consistent copy of the node folder at root to dest (a new file, 0600)."""
    layout = NodeLayout(root)
    config = layout.load_config()
    if dest.exists():
        raise ConfigError(f"{dest} already exists; choose a new file name for the backup.")
    if dest.resolve().is_relative_to(root.resolve()):
        raise ConfigError("Write the backup outside the node folder (it would copy itself).")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".rcf-backup-", dir=dest.parent) as tmp_name:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o700)
        _copy_databases(layout, tmp)
        for path in sorted(root.iterdir()):
            name = path.name
            if (
                not path.is_file()
                or name in SKIPPED
                or name in DATABASES
                or name.endswith(SKIPPED_SUFFIXES)
            ):
                continue
            shutil.copy2(path, tmp / name)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        info = BackupInfo(
            member_id=config.member_id,
            created_at_ms=now_ms(),
            files=files,
            directory_serial=_directory_serial(
                tmp / layout.directory_cache.name, config.hub_public_key
            ),
        )
        manifest = json.dumps(
            {
                "kind": KIND,
                "member_id": info.member_id,
                "created_at_ms": info.created_at_ms,
                "directory_serial": info.directory_serial,
                "files": info.files,
            },
            indent=2,
            sort_keys=True,
        ).encode()
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
                entry = tarfile.TarInfo(MANIFEST)
                entry.size, entry.mode, entry.mtime = (
                    len(manifest),
                    0o600,
                    info.created_at_ms // 1000,
                )
                tar.addfile(entry, io.BytesIO(manifest))
                for name in files:
                    tar.add(tmp / name, arcname=name, filter=_private)
                raw.flush()
                os.fsync(raw.fileno())
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
    return info


def _private(entry: tarfile.TarInfo) -> tarfile.TarInfo:
    entry.mode, entry.uid, entry.gid, entry.uname, entry.gname = 0o600, 0, 0, "", ""
    return entry


@contextmanager
def open_backup(path: Path) -> Iterator[tuple[BackupInfo, tarfile.TarFile]]:
    """The manifest of a backup file and the open archive; one sentence if it is not one."""
    try:
        tar = tarfile.open(path, mode="r:gz")  # noqa: SIM115 (closed below, after the yield)
    except (OSError, tarfile.TarError) as exc:
        raise ConfigError(f"{path} is not an rcf node backup (cannot read it as one).") from exc
    with tar:
        try:
            member = tar.extractfile(MANIFEST)
            data = json.loads(member.read()) if member else None
            if not isinstance(data, dict) or data.get("kind") != KIND:
                raise ConfigError(f"{path} is not an rcf node backup (no {MANIFEST}).")
            info = BackupInfo(
                member_id=str(data["member_id"]),
                created_at_ms=int(data["created_at_ms"]),
                files={str(k): str(v) for k, v in dict(data["files"]).items()},
                directory_serial=int(data.get("directory_serial", 0)),
            )
        except (KeyError, ValueError, TypeError, tarfile.TarError) as exc:
            raise ConfigError(f"{path} is not an rcf node backup (damaged {MANIFEST}).") from exc
        yield info, tar


def restore_backup(path: Path, root: Path) -> BackupInfo:
    """Restore the backup at path into root; the node there must be stopped.

    Files are checked against the manifest before anything in root changes; the
    folder's newer signed directory, if it has one, is kept.
    """
    with open_backup(path) as (info, tar):
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        try:
            lock = InstanceLock(root / "serve.lock", "A node")
        except ConfigError as exc:
            raise ConfigError(f"{exc} Stop it before restoring a backup onto it.") from exc
        try:
            _restore_locked(path, info, tar, NodeLayout(root))
        finally:
            lock.release()
        return info


def _restore_locked(path: Path, info: BackupInfo, tar: tarfile.TarFile, layout: NodeLayout) -> None:
    root = layout.root
    current_serial = 0
    if layout.config.exists():
        config = layout.load_config()
        if config.member_id != info.member_id:
            raise ConfigError(
                f"{root} holds {config.member_id}'s node; this backup is {info.member_id}'s."
            )
        if layout.directory_cache.exists():
            current_serial = _directory_serial(layout.directory_cache, config.hub_public_key)
    with tempfile.TemporaryDirectory(prefix=".rcf-restore-", dir=root) as tmp_name:
        tmp = Path(tmp_name)
        for name, digest in info.files.items():
            if "/" in name or name in ("", ".", "..") or name in SKIPPED:
                raise ConfigError(f"{path} names a file it may not restore ({name!r}).")
            member = tar.extractfile(name)
            if member is None:
                raise ConfigError(f"{path} lacks {name}, which its manifest lists.")
            target = tmp / name
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(member, out)
            if _sha256(target) != digest:
                raise ConfigError(f"{path} is damaged: {name} does not match its manifest.")
        # Never roll the directory back: a newer one already here stays.
        keep_directory = current_serial > info.directory_serial
        # The old databases' WAL files belong to the old databases.
        for name in DATABASES:
            for suffix in ("-wal", "-shm"):
                (root / (name + suffix)).unlink(missing_ok=True)
        for name in info.files:
            if keep_directory and name == layout.directory_cache.name:
                continue
            os.replace(tmp / name, root / name)


def describe(info: BackupInfo) -> str:
    when = dt.datetime.fromtimestamp(info.created_at_ms / 1000, dt.UTC)
    return (
        f"node {info.member_id}, taken {when:%Y-%m-%d %H:%M:%S} UTC, "
        f"{len(info.files)} files, directory serial {info.directory_serial}"
    )
