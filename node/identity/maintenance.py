"""Rebuilding the token index and rotating the OPRF key; both audited as local operations.

A rebuild rewrites the whole index in one data.db transaction and records it in
``identity_index_builds``; ``node.operations`` audits every recorded build
(``identity_reindex`` or ``oprf_key_rotation``), as it does imports and purges.
A rotation writes the new key file just before the index commits under it: a
crash between the two leaves the index under the old key, which the node
notices (``index_not_ready``) until ``rcf data reindex`` rebuilds it.
"""

from __future__ import annotations

from pathlib import Path

from rcf.node.data.store import DataStore
from rcf.node.identity.node_keys import load_or_create_oprf_key, write_oprf_key
from rcf.node.identity.token_store import BuildResult, rebuild
from rcf.trust.dictionary import DataDictionary
from rcf.trust.oprf import OprfKey


def reindex(root: Path, dictionary: DataDictionary) -> BuildResult:
    """Rebuild the token index of the node folder at root under its current key."""
    key = load_or_create_oprf_key(root)
    store = DataStore(root / "data.db", dictionary=dictionary, oprf_key=key)
    try:
        with store.transaction() as conn:
            return rebuild(conn, key, reason="reindex")
    finally:
        store.close()


def rotate(root: Path, dictionary: DataDictionary) -> tuple[OprfKey, BuildResult]:
    """A new OPRF key for the node at root, and the index rebuilt under it."""
    key = OprfKey.generate()
    store = DataStore(root / "data.db", dictionary=dictionary, oprf_key=key)
    try:
        with store.transaction() as conn:
            result = rebuild(conn, key, reason="rotate")
            write_oprf_key(root, key)
    finally:
        store.close()
    return key, result
