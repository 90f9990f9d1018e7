"""The demo's last step: every node's log anchored in the hub's witnessed log, then
`rcf audit verify` and `rcf audit crosscheck` run as an auditor would."""

from __future__ import annotations

import subprocess
import time
from typing import Protocol

from rcf.cli.output import console, table
from rcf.devnet.local_network import LocalNetwork, failure_text, rcf_command
from rcf.hub.audit_log import AuditLogReader
from rcf.node.audit.anchor import AnchorStore
from rcf.node.audit.chain import AuditLog
from rcf.node.ops.state import StateDB
from rcf.trust import checkpoint as cp
from rcf.trust.errors import ConfigError

SETTLE_S = 90.0


class DemoLike(Protocol):
    net: LocalNetwork

    @property
    def ids(self) -> list[str]: ...


def _shipped(net: LocalNetwork, member_id: str) -> tuple[int, int]:
    state = StateDB(net.node_layout(member_id).state_db)
    try:
        return AuditLog(state, None).last_seq(), AnchorStore(state).shipped_seq()
    finally:
        state.close()


def _final_size(net: LocalNetwork) -> tuple[int, int]:
    quorum = net.hub_layout.load_config().audit_quorum
    reader = AuditLogReader(net.hub_layout.audit_log_db)
    try:
        note = reader.final_note(quorum)
        final = cp.parse_checkpoint_body(cp.parse_note(note).text).size if note else 0
        return final, reader.store.size()
    finally:
        reader.close()


def wait_until_anchored(net: LocalNetwork, ids: list[str]) -> list[list[object]]:
    """Until every record is shipped and the hub's final checkpoint covers its whole log."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        shipped = {m: _shipped(net, m) for m in ids}
        final, size = _final_size(net)
        if all(last == done for last, done in shipped.values()) and final == size > 0:
            return [[m, last, done, final] for m, (last, done) in shipped.items()]
        if time.monotonic() > deadline:
            raise ConfigError(
                "The nodes' audit records did not reach a final hub checkpoint in time; see "
                f"the logs in {net.root / 'logs'}."
            )
        time.sleep(0.5)


def step_audit_trail(demo: DemoLike) -> None:
    net = demo.net
    rows = wait_until_anchored(net, demo.ids)
    quorum = net.hub_layout.load_config().audit_quorum
    table(
        f"audit records shipped to the hub's Merkle log; checkpoint final with {quorum} "
        "witness cosignatures",
        ["node", "records", "shipped", "hub log size (final)"],
        rows,
    )
    nodes = [arg for m in demo.ids for arg in ("--node-dir", str(net.node_layout(m).root))]
    trusted = net.root / "auditor-trusted-checkpoint.note"
    for args in (
        ["audit", "verify", *nodes, "--hub-dir", str(net.hub_layout.root), "--trusted",
         str(trusted)],
        ["audit", "crosscheck", *nodes],
    ):  # fmt: skip
        shown = "rcf " + " ".join(args[:2]) + " …"
        result = subprocess.run(
            [*rcf_command(), *args], capture_output=True, text=True, check=False, timeout=300
        )
        console.print(f"[bold]$ {shown}[/bold]")
        console.print(result.stdout.rstrip(), markup=False, highlight=False)
        if result.returncode != 0:
            raise ConfigError(f"{shown} failed: {failure_text(result)}")
