"""The one place a node's object graph is built from its folder.

The server builds the full graph with the member's signing key. The CLI builds
a read-only one (no signing key: it verifies with public keys from the
directory) for everything it reads, and takes the signing key only through
``offline``: an explicit path for changes made while the node is stopped, which
holds the folder's server lock so the node cannot start meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rcf.node.audit.chain import AuditLog
from rcf.node.audit.operations import reconcile_operations
from rcf.node.federation.directory_cache import DirectoryCache
from rcf.node.ops.config import NodeConfig, NodeLayout
from rcf.node.ops.rollback import RollbackFloor, open_floor
from rcf.node.ops.state import StateDB
from rcf.node.policy.admin import PolicyAdmin
from rcf.trust.keys import SigningKey
from rcf.trust.serving import InstanceLock


@dataclass
class NodeCore:
    """What every side of a node shares: config, directory, state, audit log, policy."""

    layout: NodeLayout
    config: NodeConfig
    signing_key: SigningKey | None
    directory: DirectoryCache
    state: StateDB
    audit: AuditLog
    policy: PolicyAdmin
    floor: RollbackFloor | None

    def close(self) -> None:
        self.state.close()

    def public_keys(self) -> dict[str, bytes]:
        """Every signing key this member ever had, by key id (to verify its records)."""
        member = self.directory.peek().member(self.config.member_id)
        keys = {k.key_id: k.public_key for k in member.signing_keys} if member else {}
        if self.signing_key is not None:
            keys[self.signing_key.key_id] = self.signing_key.public_key
        return keys


def build_core(layout: NodeLayout, *, signing_key: SigningKey | None) -> NodeCore:
    """The node's shared objects; signing_key None gives a read-only core."""
    config = layout.load_config()
    state = StateDB(layout.state_db, sync=config.audit_sync)
    # The rollback floor in state.db is only raised by a core that may sign (the
    # server and the offline path); a read-only view just reads the cache.
    floor = (
        open_floor(layout, state, hub_public_key=config.hub_public_key)
        if signing_key is not None
        else None
    )
    directory = DirectoryCache(
        layout.directory_cache, hub_public_key=config.hub_public_key, floor=floor
    )
    audit = AuditLog(state, signing_key)
    policy = PolicyAdmin(
        layout=layout,
        member_id=config.member_id,
        signing_key=signing_key,
        state=state,
        audit=audit,
        directory=directory.peek,
    )
    return NodeCore(layout, config, signing_key, directory, state, audit, policy, floor)


@contextmanager
def read_only(layout: NodeLayout) -> Iterator[NodeCore]:
    """A core that reads and verifies but cannot sign or append."""
    core = build_core(layout, signing_key=None)
    try:
        yield core
    finally:
        core.close()


@contextmanager
def offline(layout: NodeLayout) -> Iterator[NodeCore]:
    """The node's signing core while its server is stopped (refused while it runs).

    Unaudited operations (an import whose audit record a crash prevented) are
    audited first, as the server does when it starts.
    """
    layout.require()
    lock = InstanceLock(layout.root / "serve.lock", "A node")
    try:
        core = build_core(layout, signing_key=layout.load_signing_key())
        try:
            reconcile_operations(core.layout, core.audit)
            yield core
        finally:
            core.close()
    finally:
        lock.release()
