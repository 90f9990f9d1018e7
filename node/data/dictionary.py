"""The node's copy of the hub's signed data dictionary.

The node fetches the version the directory names and keeps it on disk beside
the directory, verified with the pinned hub key on every load. A node that has
never reached the hub (just enrolled, never served) uses the v1 defaults that
ship with the software; those are the very dictionary a new hub publishes, so
nothing is trusted that the installed code does not already contain.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from rcf.node.federation.hub_client import HubClient
from rcf.node.ops.config import NodeLayout
from rcf.trust.dictionary import (
    DataDictionary,
    DictionaryError,
    default_dictionary,
    parse_version,
    verify_dictionary,
)
from rcf.trust.signed import read_envelope, store_envelope


class DictionaryFloor(Protocol):
    """The oldest dictionary version the node may accept (rcf.node.ops.rollback keeps it)."""

    def refuse_older_dictionary(self, version: str) -> None: ...

    def accept_dictionary(self, version: str) -> None: ...


def read_cached_dictionary(layout: NodeLayout, hub_public_key: bytes) -> DataDictionary | None:
    """The verified dictionary.signed, or None if there is none."""
    path = layout.dictionary_cache
    if not path.exists():
        return None
    envelope = read_envelope(path, what="cached data dictionary", error=DictionaryError)
    return verify_dictionary(envelope, hub_public_key=hub_public_key)


def load_dictionary(layout: NodeLayout) -> DataDictionary:
    """The dictionary this node validates against: the verified cache, else the v1 defaults."""
    cached = read_cached_dictionary(layout, layout.load_config().hub_public_key)
    return cached if cached is not None else default_dictionary()


def sync_dictionary(
    layout: NodeLayout,
    hub: HubClient,
    *,
    hub_public_key: bytes,
    version: str,
    floor: DictionaryFloor | None = None,
) -> bool:
    """Fetch and cache dictionary version (named by the directory) if not held; True if new.

    With floor, a version older than any accepted before is refused, and the floor is
    raised once the new version is on disk."""
    if not version:
        return False
    held = read_cached_dictionary(layout, hub_public_key)
    if held is not None and held.version == version:
        return False
    if floor is not None:
        floor.refuse_older_dictionary(version)
    if held is not None and parse_version(version) < parse_version(held.version):
        raise DictionaryError(
            f"The directory names dictionary {version}, older than the {held.version} held "
            "(rollback).",
            reason="dictionary_rollback",
        )
    envelope = hub.get_dictionary(version=version)
    fresh = verify_dictionary(envelope, hub_public_key=hub_public_key)
    if fresh.version != version:
        raise DictionaryError(
            f"Asked the hub for dictionary {version} and got {fresh.version}.",
            reason="dictionary_mismatch",
        )
    store_envelope(layout.dictionary_cache, envelope)
    if floor is not None:
        floor.accept_dictionary(version)
    return True


def dictionary_loader(
    path: Path, load: Callable[[], DataDictionary]
) -> Callable[[], DataDictionary]:
    """load(), re-read only when the cached dictionary file changes (verified on each read)."""
    cache: dict[str, object] = {}
    lock = threading.Lock()

    def current() -> DataDictionary:
        try:
            stamp: object = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            stamp = None
        with lock:
            if cache.get("stamp", ...) != stamp or "dictionary" not in cache:
                cache["dictionary"] = load()
                cache["stamp"] = stamp
            held = cache["dictionary"]
        assert isinstance(held, DataDictionary)
        return held

    return current


def cached_dictionary(layout: NodeLayout) -> Callable[[], DataDictionary]:
    """load_dictionary(layout), re-read only when the hub's newer dictionary lands."""
    return dictionary_loader(layout.dictionary_cache, lambda: load_dictionary(layout))
