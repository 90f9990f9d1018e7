"""A node starts only on the policy version its audit chain last recorded as applied."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from rcf.node.federation.server import NodeServer
from rcf.trust.errors import ConfigError
from tests.network import Network
from tests.test_policy_network import ping_policy


def _drop_newest_policy(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER policy_versions_no_delete")  # an attacker with file access
    conn.execute("DELETE FROM policy_versions WHERE version = (SELECT MAX(version) FROM"
                 " policy_versions)")  # fmt: skip
    conn.commit()
    conn.close()


def test_deleting_the_newest_policy_version_stops_the_node(net: Network) -> None:
    th = net.nodes["TH"]
    th.policy.apply(ping_policy("only-au", ["AU"]), "th.toml")
    th.policy.apply(ping_policy("only-nz", ["NZ"]), "th.toml")  # version 3: AU refused
    net.stop_node("TH")
    layout = net.layout("TH")
    NodeServer(layout).stop(grace=0)  # untouched: starts

    _drop_newest_policy(layout.state_db)
    with pytest.raises(ConfigError) as info:
        NodeServer(layout)
    assert info.value.reason == "policy_rollback"
    assert str(info.value).startswith(
        "The audit log records policy version 3 as applied but state.db's newest is 2"
    )


def test_deleting_every_policy_version_does_not_reseed(net: Network) -> None:
    net.stop_node("TH")
    layout = net.layout("TH")
    _drop_newest_policy(layout.state_db)  # the seed, version 1
    with pytest.raises(ConfigError, match=r"version 1 as applied but state\.db's newest is none"):
        NodeServer(layout)


def test_a_version_applied_without_its_audit_record_is_recorded_at_start(net: Network) -> None:
    th = net.nodes["TH"]
    source = ping_policy("ping", ["*"])
    stored = th.policy.store.append(  # as if the process died between the two commits
        member_id="TH",
        key=th.signing_key,
        source=source,
        source_sha256=hashlib.sha256(source.encode()).hexdigest(),
        filename="th.toml",
        action="apply",
    )
    assert stored is not None
    net.stop_node("TH")
    node = net.start_node("TH")
    last = node.audit.last_of_type("PolicyChange")
    assert last is not None and last.event.query_id == f"policy-TH-v{stored.version}"
    assert node.policy.gate is not None and node.policy.gate.policy.version == stored.version
