"""A whole network on this machine: a hub and member nodes as child processes.

`rcf demo` and the benchmarks use it. Setup steps (hub init, members, join
tokens, node enrolment) are the same library calls the admin and operator
commands make; serving runs as `rcf hub serve` / `rcf node serve` processes.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rcf.devnet.processes import die_with_parent
from rcf.hub.layout import HubLayout
from rcf.hub.registry import Registry
from rcf.hub.setup import init_hub, open_registry
from rcf.node.ops.config import NodeLayout
from rcf.node.ops.enrollment import NodeAddresses, init_with_token
from rcf.trust.errors import RcfError
from rcf.trust.files import write_private
from rcf.trust.join_token import JoinToken

PIDS_FILE = "demo-pids.json"


def rcf_command() -> list[str]:
    """How to run our own CLI in a child process, whatever the install."""
    script = Path(sys.executable).parent / "rcf"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rcf.cli"]


def failure_text(result: subprocess.CompletedProcess[str]) -> str:
    """Why a child rcf command failed, in its own last words (never an empty sentence)."""
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return lines[-1] if lines else f"it exited {result.returncode} and said nothing"


def start_and_wait(
    argv: list[str],
    ready: Callable[[], bool],
    *,
    log: Path,
    timeout_s: float = 20.0,
    outlive_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start argv with its output in log and wait until ready() holds.

    The child has its own session (a Ctrl-C reaches only us, and we stop it) and,
    unless outlive_parent, is sent SIGTERM by the kernel when this process dies,
    however it dies (see rcf.devnet.processes)."""
    env = {**os.environ, "RCF_LOG_LEVEL": os.environ.get("RCF_LOG_LEVEL", "warning")}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=None if outlive_parent else die_with_parent(),  # noqa: PLW1509
        )
    deadline = time.monotonic() + timeout_s
    try:
        while not ready():
            if proc.poll() is not None:
                raise RcfError(
                    f"'{' '.join(argv[1:3])}' exited at start; see {log}.",
                    reason="start_failed",
                    status="UNAVAILABLE",
                )
            if time.monotonic() > deadline:
                raise RcfError(
                    f"'{' '.join(argv[1:3])}' was not ready within {timeout_s:.0f} s; see {log}.",
                    reason="start_failed",
                    status="UNAVAILABLE",
                )
            time.sleep(0.05)
    except BaseException:
        # Interrupted or failed while starting: the caller never learns of this
        # process, so it must not outlive us.
        stop(proc)
        raise
    return proc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now.

    Picked once, when a folder is created, and written into its configuration:
    a restart by hand (`rcf hub serve`, `rcf node serve`) then comes back on
    the same address, which the directory, join tokens and every node's
    hub_address already name, exactly as a deployment's fixed ports do."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class MemberSpec:
    member_id: str
    name: str
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


@dataclass
class LocalNetwork:
    root: Path
    network: str = "bali-process-rcf"
    # True only for `rcf demo --keep`: the servers keep running after we exit.
    outlive_parent: bool = False
    hub_layout: HubLayout = field(init=False)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hub_layout = HubLayout(self.root / "hub")
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        if not self.outlive_parent:
            # An exit that skips the caller's finally still stops them in order; a
            # kill that skips atexit too is covered by the kernel (die_with_parent).
            atexit.register(self.stop_all)

    def registry(self) -> Registry:
        return open_registry(self.hub_layout)

    def node_layout(self, member_id: str) -> NodeLayout:
        return NodeLayout(self.root / "nodes" / member_id)

    def init_hub(self, members: list[MemberSpec], *, audit_quorum: int = 1) -> None:
        # Everything on this machine: loopback, free ports fixed now, published as bound.
        init_hub(
            self.hub_layout.root,
            network=self.network,
            listen=f"127.0.0.1:{free_port()}",
            enroll_listen=f"127.0.0.1:{free_port()}",
            audit_quorum=audit_quorum,
        )
        registry = self.registry()
        try:
            for m in members:
                registry.add_member(m.member_id, name=m.name, groups=m.groups, roles=m.roles)
        finally:
            registry.close()

    def start_hub(self) -> None:
        # A hub killed before it could clean up leaves its runtime file behind.
        self.hub_layout.runtime.unlink(missing_ok=True)
        self.procs["hub"] = start_and_wait(
            [*rcf_command(), "hub", "serve", "--hub-dir", str(self.hub_layout.root)],
            self.hub_layout.runtime.exists,
            log=self.root / "logs" / "hub.log",
            outlive_parent=self.outlive_parent,
        )
        self._save_pids()

    def enroll(self, member_id: str) -> NodeLayout:
        runtime = self.hub_layout.read_runtime()
        registry = self.registry()
        try:
            secret = registry.create_join_token(member_id)
        finally:
            registry.close()
        token = JoinToken(
            secret=secret,
            member_id=member_id,
            hub_address=runtime["address"],
            enroll_address=runtime["enroll_address"],
            ca_pem=self.hub_layout.ca_cert.read_bytes(),
            hub_public_key=self.hub_layout.load_public_key(),
        )
        layout = self.node_layout(member_id)
        init_with_token(
            layout.root,
            member_id=member_id,
            token_text=token.encode(),
            addresses=NodeAddresses(listen=f"127.0.0.1:{free_port()}"),
        )
        # A fixed federation port implies the fixed metrics port (9465), which every
        # node on this machine would share: give each its own, fixed as well.
        text = layout.config.read_text()
        text = re.sub(
            r"^metrics_listen = .*$",
            f'metrics_listen = "127.0.0.1:{free_port()}"',
            text,
            flags=re.M,
        )
        write_private(layout.config, text)
        return layout

    def start_node(self, member_id: str) -> None:
        layout = self.node_layout(member_id)
        layout.runtime.unlink(missing_ok=True)  # left by a node that was killed
        self.procs[member_id] = start_and_wait(
            [*rcf_command(), "node", "serve", "--node-dir", str(layout.root)],
            layout.runtime.exists,
            log=self.root / "logs" / f"{member_id}.log",
            outlive_parent=self.outlive_parent,
        )
        self._save_pids()

    def _save_pids(self) -> None:
        pids = {name: p.pid for name, p in self.procs.items()}
        (self.root / PIDS_FILE).write_text(json.dumps(pids, indent=2) + "\n")

    def stop_all(self) -> None:
        # Nodes first, so none of them logs a refresh failure against a stopped hub.
        for name in sorted(self.procs, key=lambda n: n == "hub"):
            stop(self.procs[name])
        self.procs.clear()
        (self.root / PIDS_FILE).unlink(missing_ok=True)


def stop_kept(root: Path) -> list[str]:
    """Stop a network left running by `rcf demo --keep`; returns what was stopped."""
    pids = json.loads((root / PIDS_FILE).read_text())
    stopped = []
    for name, pid in pids.items():
        try:
            os.kill(int(pid), signal.SIGTERM)
            stopped.append(name)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 10
    for name in stopped:
        while _alive(int(pids[name])) and time.monotonic() < deadline:
            time.sleep(0.05)
    (root / PIDS_FILE).unlink(missing_ok=True)
    return stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Demo:
    """The demo's network and the members that have a node in it."""

    net: LocalNetwork
    members: list[MemberSpec]
    # Files the demo tells the user to open (chart, report): kept when the folder goes.
    outputs: list[Path] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [m.member_id for m in self.members]
