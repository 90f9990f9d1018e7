"""`rcf hub status`: a short, read-only summary of a hub folder.

It opens the registry read-only (no schema check, no directory renewal), so
it changes nothing even while the hub is serving.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from rcf.hub.layout import HubLayout
from rcf.protos.v1 import envelope_pb2
from rcf.trust.clock import now_ms
from rcf.trust.directory import verify_directory
from rcf.trust.dsse import Envelope
from rcf.trust.errors import ConfigError
from rcf.trust.files import loose_modes


@dataclass(frozen=True)
class HubStatus:
    root: str
    network: str
    directory_serial: int
    directory_issued_at_ms: int
    directory_expires_at_ms: int
    dictionary_version: str
    members: dict[str, int]  # status → count
    nodes_enrolled: int
    open_join_tokens: int
    running: dict[str, Any] | None  # addresses and pid while `rcf hub serve` runs
    # Active members no one can call after a hit on their data.
    members_without_ncp: list[str] = field(default_factory=list)
    file_mode_warnings: list[str] = field(default_factory=list)


def _running(layout: HubLayout) -> dict[str, Any] | None:
    try:
        runtime = layout.read_runtime()
    except ConfigError:
        return None
    try:
        os.kill(int(runtime.get("pid", "0")), 0)
    except (ValueError, ProcessLookupError):
        return None  # a runtime file left behind by a killed hub
    except PermissionError:
        pass  # alive, owned by someone else
    return dict(runtime)


def hub_status(layout: HubLayout) -> HubStatus:
    """What the hub folder holds, read without changing anything."""
    config = layout.load_config()
    hub_key = layout.load_public_key()
    try:
        conn = sqlite3.connect(f"file:{layout.registry_db}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigError(f"Cannot open {layout.registry_db}: {exc}.") from exc
    try:
        members = dict(
            conn.execute("SELECT status, COUNT(*) FROM members GROUP BY status").fetchall()
        )
        (nodes,) = conn.execute("SELECT COUNT(*) FROM nodes").fetchone()
        (tokens,) = conn.execute(
            "SELECT COUNT(*) FROM join_tokens WHERE used_at_ms IS NULL AND expires_at_ms > ?",
            (now_ms(),),
        ).fetchone()
        without_ncp = [
            str(r[0])
            for r in conn.execute(
                "SELECT member_id FROM members WHERE status = 'active' AND member_id NOT IN"
                " (SELECT member_id FROM ncps) ORDER BY member_id"
            )
        ]
        row = conn.execute(
            "SELECT envelope FROM directories ORDER BY serial DESC LIMIT 1"
        ).fetchone()
    except sqlite3.Error as exc:
        raise ConfigError(f"{layout.registry_db} is not a readable hub registry: {exc}.") from exc
    finally:
        conn.close()
    serial = issued = expires = 0
    dictionary_version = ""
    if row is not None:
        msg = envelope_pb2.Envelope()
        msg.ParseFromString(row[0])
        directory = verify_directory(Envelope.from_proto(msg), hub_public_key=hub_key, now_ms=None)
        serial, issued, expires = directory.serial, directory.issued_at_ms, directory.expires_at_ms
        dictionary_version = directory.dictionary_version
    return HubStatus(
        root=str(layout.root),
        network=config.network,
        directory_serial=serial,
        directory_issued_at_ms=issued,
        directory_expires_at_ms=expires,
        dictionary_version=dictionary_version,
        members={str(k): int(v) for k, v in members.items()},
        nodes_enrolled=int(nodes),
        open_join_tokens=int(tokens),
        running=_running(layout),
        members_without_ncp=without_ncp,
        file_mode_warnings=loose_modes(layout.root),
    )
