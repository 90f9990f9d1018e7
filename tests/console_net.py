"""A console for tests: AU's node in the identity test network, its console served over
real HTTPS on 127.0.0.1 in this process, one account per role."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rcf.console.server import ConsoleServer
from rcf.console.sessions import Sessions
from tests.aggregate_fixtures import AU_DATA, MOVEMENTS_RULE, TH_DATA, load, movement_rows
from tests.identity_net import POLICY, identity_network
from tests.network import Network

PASSWORD = "correct horse battery staple"
ACCOUNTS = {
    "olga": "officer",
    "ana": "analyst",
    "pat": "policy-admin",
    "aud": "auditor",
    "ops": "operator",
}


@dataclass
class Clock:
    """Time the console's sessions see; tests move it forward instead of sleeping."""

    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ConsoleNet:
    net: Network
    server: ConsoleServer
    clock: Clock = field(default_factory=Clock)

    @property
    def url(self) -> str:
        return self.server.url


@contextmanager
def console_network(root: Path) -> Iterator[ConsoleNet]:
    net = identity_network(root / "net")
    load(net.layout("AU"), movement_rows("AU", AU_DATA), root)
    load(net.layout("TH"), movement_rows("TH", TH_DATA), root)
    th_policy = textwrap.dedent(POLICY.format(member="TH", detail="hit_with_reference"))
    # TH shares movement statistics with everyone, beside its identity rules.
    net.nodes["TH"].policy.apply(th_policy + MOVEMENTS_RULE, "TH.toml")
    clock = Clock()
    try:
        server = ConsoleServer(
            root / "console", net.layout("AU").root, listen="127.0.0.1:0",
            sessions=Sessions(idle_seconds=900, absolute_seconds=8 * 3600, clock=clock),
            title="AU console",
        )  # fmt: skip
        for name, role in ACCOUNTS.items():
            server.console.accounts.add(name, roles=(role,), password=PASSWORD)
        server.start()
        try:
            yield ConsoleNet(net, server, clock)
        finally:
            server.stop()
    finally:
        net.close()
