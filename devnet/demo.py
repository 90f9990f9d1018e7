"""`rcf demo`: a hub and member nodes on this machine, every capability end to end.

The demo is a list of steps (``STEPS``); each later capability adds its own
step, so the demo always shows everything built so far.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

import click
import grpc

from rcf.cli.errors import describe_rpc_error, guarded
from rcf.cli.operator_client import operator_stub
from rcf.cli.output import console, table
from rcf.devnet.demo_aggregate import step_aggregate
from rcf.devnet.demo_alerts import step_alerts
from rcf.devnet.demo_audit import step_audit_trail
from rcf.devnet.demo_identity import step_identity
from rcf.devnet.local_network import (
    Demo,
    LocalNetwork,
    MemberSpec,
    failure_text,
    rcf_command,
    stop_kept,
)
from rcf.devnet.synthetic import DATASET_CODES, generate_member_data
from rcf.node.data.dictionary import load_dictionary
from rcf.node.data.importer import import_file
from rcf.node.data.store import DataStore
from rcf.node.ops.assembly import read_only
from rcf.node.ops.config import NodeLayout
from rcf.protos.v1 import operator_pb2
from rcf.trust import pki
from rcf.trust.audit_record import verify_chain
from rcf.trust.directory import MemberStatus, Ncp
from rcf.trust.errors import ConfigError, RcfError

MEMBERS = [
    MemberSpec("AU", "Australia", groups=("steering-group",)),
    MemberSpec("ID", "Indonesia", groups=("steering-group",)),
    MemberSpec("NZ", "New Zealand", groups=("steering-group",)),
    MemberSpec("TH", "Thailand", groups=("steering-group",)),
    MemberSpec("RSO", "Regional Support Office", roles=("coordinator",)),
]
# In the directory, with no node in this demo: the example policies grant them by role.
DIRECTORY_ONLY = [
    MemberSpec("UNHCR", "UNHCR Regional Bureau for Asia and the Pacific", roles=("unhcr",)),
    MemberSpec("IOM", "IOM Regional Office for Asia and the Pacific", roles=("iom",)),
]
# The example policies ship inside the package (package data), so an installed wheel has them.
POLICIES = importlib.resources.files("rcf") / "policies"
NCPS = {
    "AU": ("Australian Border Force", "duty operations", "+61 2 6275 0000", ("en",)),
    "ID": ("Directorate General of Immigration", "duty desk", "+62 21 522 4658", ("id", "en")),
    "NZ": ("Immigration New Zealand", "intelligence unit", "+64 4 910 9915", ("en", "mi")),
    "TH": ("Royal Thai Police, Immigration Bureau", "duty desk", "+66 2 287 3101", ("th", "en")),
    "RSO": ("Regional Support Office", "coordinator", "+66 2 343 9477", ("en",)),
}

DEMO_DATASETS = list(DATASET_CODES)
DEMO_LABELS = ["movements", "traffick.", "doc fraud", "asylum", "persons", "documents"]


def step_hub(demo: Demo) -> None:
    demo.net.init_hub(demo.members + DIRECTORY_ONLY, audit_quorum=len(demo.members) // 2 + 1)
    registry = demo.net.registry()
    try:
        for member_id, (agency, role, phone, languages) in NCPS.items():
            if member_id in demo.ids:
                registry.add_ncp(
                    member_id,
                    Ncp(
                        ncp_id="",
                        agency=agency,
                        role=role,
                        name=f"{member_id} national contact point",
                        email=f"ncp@{member_id.lower()}.example",
                        phone=phone,
                        languages=languages,
                        working_hours="24/7",
                    ),
                )
    finally:
        registry.close()
    demo.net.start_hub()
    runtime = demo.net.hub_layout.read_runtime()
    console.print(
        f"hub up: mutual TLS on {runtime['address']}, enrolment on {runtime['enroll_address']}; "
        f"{len(demo.members)} members and their NCPs registered"
    )


def _own_key_id(layout: NodeLayout) -> str:
    """The node's current signing key id, as the directory lists it (no private key read)."""
    with read_only(layout) as core:
        member = core.directory.peek().member(core.config.member_id)
        assert member is not None
        return member.signing_keys[-1].key_id


def step_enrol(demo: Demo) -> None:
    rows = []
    for m in demo.members:
        layout = demo.net.enroll(m.member_id)
        rows.append(
            [
                m.member_id,
                m.name,
                ",".join(m.groups + m.roles),
                _own_key_id(layout),
                pki.fingerprint(layout.tls_cert.read_bytes()),
            ]
        )
    table(
        "enrolled over the wire with one-time join tokens",
        ["member", "name", "group / role", "signing key", "TLS cert sha256"],
        rows,
    )


def step_serve(demo: Demo) -> None:
    for member_id in demo.ids:
        demo.net.start_node(member_id)
    serials = {}
    for member_id in demo.ids:
        with operator_stub(demo.net.node_layout(member_id)) as (stub, md):
            s = stub.RefreshDirectory(
                operator_pb2.RefreshDirectoryRequest(), metadata=md, timeout=30
            )
        serials[member_id] = s.directory_serial
    console.print(
        "nodes up; each published its endpoint and holds the signed directory (serials "
        + ", ".join(f"{k} {v}" for k, v in serials.items())
        + ")"
    )


def _ping(requester: str, responder: str, demo: Demo, *, times: int = 1) -> tuple[bool, str]:
    """Ping times over; the last round trip is reported (the first pays the TLS handshake)."""
    with operator_stub(demo.net.node_layout(requester)) as (stub, md):
        try:
            for _ in range(times):
                r = stub.PingPeer(
                    operator_pb2.PingPeerRequest(member_id=responder, purpose="connectivity-check"),
                    metadata=md,
                    timeout=15,
                )
        except grpc.RpcError as exc:
            return False, describe_rpc_error(exc)
    ok = r.signer_member == responder and r.request_digest_matches
    return ok, f"{r.latency_ms:.1f} ms ✓ {r.signer_member}"


def step_ping(demo: Demo) -> None:
    rows = []
    failures = 0
    for a in demo.ids:
        cells = []
        for b in demo.ids:
            if a == b:
                cells.append("—")
                continue
            ok, text = _ping(a, b, demo, times=2)
            failures += not ok
            cells.append(text if ok else f"FAILED {text}")
        rows.append([a, *cells])
    table(
        "signed ping, every node to every other: round trip after the TLS handshake, "
        "verified signer",
        ["from \\ to", *demo.ids],
        rows,
    )
    if failures:
        raise ConfigError(f"{failures} pings failed; see the logs in {demo.net.root / 'logs'}.")


def step_suspend(demo: Demo) -> None:
    if "NZ" not in demo.ids or "TH" not in demo.ids:
        return
    registry = demo.net.registry()
    try:
        registry.set_status("NZ", MemberStatus.SUSPENDED)
        with operator_stub(demo.net.node_layout("TH")) as (stub, md):
            stub.RefreshDirectory(operator_pb2.RefreshDirectoryRequest(), metadata=md, timeout=30)
        ok, text = _ping("NZ", "TH", demo)
        registry.set_status("NZ", MemberStatus.ACTIVE)
        with operator_stub(demo.net.node_layout("TH")) as (stub, md):
            stub.RefreshDirectory(operator_pb2.RefreshDirectoryRequest(), metadata=md, timeout=30)
        ok_again, _ = _ping("NZ", "TH", demo)
    finally:
        registry.close()
    console.print(
        f"hub suspends NZ → TH refreshes its directory → NZ's ping to TH: "
        f"{'ANSWERED (unexpected)' if ok else 'refused: ' + text}"
    )
    console.print(f"hub reinstates NZ → NZ's ping to TH: {'answered' if ok_again else 'refused'}")


def step_metrics(demo: Demo) -> None:
    """What TH's operator sees in Prometheus after the pings and the suspension."""
    if "TH" not in demo.ids:
        return
    address = demo.net.node_layout("TH").read_runtime().get("metrics_address", "")
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    rows = []
    for line in text.splitlines():
        if line.startswith(("rcf_requests_total{", "rcf_directory_serial ", "rcf_policy_version ")):
            name, _, value = line.rpartition(" ")
            rows.append([name, f"{float(value):g}"])
    table(
        f"TH's Prometheus metrics (http://{address}/metrics, loopback only)",
        ["series", "value"],
        rows,
    )


def step_audit(demo: Demo) -> None:
    rows = []
    for member_id in demo.ids:
        layout = demo.net.node_layout(member_id)
        with read_only(layout) as core:
            records = core.audit.records()
            count = verify_chain(records, core.public_keys())
        answered = sum(r.event.decision == "answered" for r in records)
        refused = sum(r.event.decision == "refused" for r in records)
        rows.append([member_id, count, answered, refused, "hash chain and signatures verified"])
    table(
        "local audit logs (both sides of every query; never contents)",
        ["node", "records", "answered", "refused", "check"],
        rows,
    )


def step_data(demo: Demo) -> None:
    rows = []
    for member_id in demo.ids:
        if member_id == "RSO":
            continue  # the RSO holds no national data
        layout = demo.net.node_layout(member_id)
        files = generate_member_data(member_id, demo.net.root / "data", seed=2024, rows=2000)
        store = DataStore(layout.data_db, dictionary=load_dictionary(layout))
        try:
            imported = 0
            for dataset, path in files.items():
                if dataset in store.dictionary.datasets:
                    result = import_file(store, path, dataset=dataset)
                    imported += result.inserted + result.updated + result.unchanged
            held = {s.dataset: s.records for s in store.stats()}
        finally:
            store.close()
        rows.append([member_id, f"{imported:,}", *(f"{held[d]:,}" for d in DEMO_DATASETS)])
    table(
        "synthetic national data generated (seed 2024) and imported: rcf data stats",
        ["node", "imported", *DEMO_LABELS],
        rows,
    )


EXPLAIN = [
    # (node asked, requester, explain arguments, what it shows)
    ("TH", "AU", ["--query", "Aggregate", "--dataset", "irregular_movements",
                  "--group-by", "nationality,route", "--purpose", "operational-planning"]),
    ("TH", "RSO", ["--query", "Aggregate", "--dataset", "irregular_movements",
                   "--group-by", "nationality", "--purpose", "regional-analysis"]),
    ("TH", "RSO", ["--query", "IdentityCheck", "--dataset", "persons",
                   "--purpose", "border-control"]),
    ("AU", "NZ", ["--query", "IdentityCheck", "--dataset", "documents",
                  "--purpose", "border-control"]),
    ("RSO", "TH", ["--query", "Aggregate", "--dataset", "irregular_movements",
                   "--purpose", "regional-analysis"]),
]  # fmt: skip


def _rcf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*rcf_command(), *args], capture_output=True, text=True, check=False, timeout=120
    )


def step_policy(demo: Demo) -> None:
    if not POLICIES.is_dir():
        raise ConfigError(f"The example policies are missing from this installation ({POLICIES}).")
    rows = []
    for member_id in demo.ids:
        path = POLICIES / f"{member_id}.toml"
        node_dir = str(demo.net.node_layout(member_id).root)
        result = _rcf("policy", "apply", str(path), "--node-dir", node_dir)
        if result.returncode != 0:
            raise ConfigError(f"Applying {path.name} failed: {failure_text(result)}")
        history = json.loads(_rcf("policy", "history", "--node-dir", node_dir, "--json").stdout)
        rows.append([member_id, path.name, len(history), result.stdout.strip().splitlines()[-1]])
    table(
        "example sharing policies applied to the running nodes: rcf policy apply (hot reload)",
        ["node", "file", "versions", "result"],
        rows,
    )
    rows = []
    for node, requester, args in EXPLAIN:
        node_dir = str(demo.net.node_layout(node).root)
        result = _rcf(
            "policy", "explain", "--requester", requester, *args, "--node-dir", node_dir, "--json"
        )
        if result.returncode != 0:
            raise ConfigError(f"rcf policy explain failed: {failure_text(result)}")
        d = json.loads(result.stdout)
        rows.append(
            [
                f"{requester} → {node}",
                " ".join(a for a in args if not a.startswith("--")),
                "allowed" if d.get("allowed") else "refused",
                d.get("rule") or "—",
                d.get("reason", ""),
            ]
        )
    table(
        "who may ask what: rcf policy explain (dry run; default deny)",
        ["requester → node", "query", "decision", "rule", "reason"],
        rows,
    )


STEPS: list[tuple[str, Callable[[Demo], None]]] = [
    ("Hub: network CA, hub key, registry, NCPs", step_hub),
    ("Enrolment: node keys, CSRs, certificates, signed directory", step_enrol),
    ("Nodes serve; directory refresh", step_serve),
    ("Data: realistic synthetic records imported at every state's node", step_data),
    ("Sharing policies applied and explained", step_policy),
    ("Signed ping between every pair of nodes", step_ping),
    ("Identity checks: hit, possible hit, no hit", step_identity),
    ("Document-fraud alert raised at TH, received everywhere TH's policy allows", step_alerts),
    ("Suspension takes effect at the next directory refresh", step_suspend),
    ("Regional statistics: a query to every member, a chart, the situation report", step_aggregate),
    ("Monitoring: a node's Prometheus metrics", step_metrics),
    ("Audit trail", step_audit),
    (
        "Audit trail anchored at the hub, witnessed; rcf audit verify and crosscheck",
        step_audit_trail,
    ),
]


# Where a demo run without --dir keeps its chart and report (in the current folder).
OUTPUT_FOLDER = "rcf-demo-output"


def keep_outputs(outputs: list[Path], into: Path) -> list[Path]:
    """Copy the files the demo told the user to open into into; the copies' paths.

    A folder that cannot be written is said, not raised: the demo itself worked."""
    present = [p for p in outputs if p.is_file()]
    if not present:
        return []
    try:
        into.mkdir(exist_ok=True)
        return [Path(shutil.copy2(p, into / p.name)) for p in present]
    except OSError as exc:
        console.print(f"could not keep the chart and report in {into}: {exc.strerror}")
        return []


def _other(demo: Demo, member_id: str) -> str:
    return demo.ids[0] if member_id != demo.ids[0] else demo.ids[-1]


def shown_command() -> str:
    """How to run rcf again from any folder: the command this one was started as,
    made absolute when it is a path (e.g. .venv/bin/rcf), as shell-safe text."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "rcf":
        # Typed as a path (.venv/bin/rcf): absolute, so it works from any folder.
        return shlex.quote(str(Path(argv0).absolute())) if os.sep in argv0 else "rcf"
    return " ".join(shlex.quote(part) for part in rcf_command())


def _print_keep_instructions(demo: Demo) -> None:
    root = demo.net.root
    rcf = shown_command()
    console.print(f"\nthe network keeps running in {root}")
    table(
        "reach each node",
        ["member", "federation endpoint", "try"],
        [
            [
                m,
                str(demo.net.node_layout(m).read_runtime()["address"]),
                f"{rcf} ping --node-dir {demo.net.node_layout(m).root} {_other(demo, m)}",
            ]
            for m in demo.ids
        ],
    )
    console.print(f"hub admin: {rcf} hub member list --hub-dir {demo.net.hub_layout.root}")
    console.print(f"stop it:   {rcf} demo stop {root}")


@click.group("demo", invoke_without_command=True)
@click.option("--keep", is_flag=True, help="Leave the network running and say how to reach it.")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=(
        "Folder for the network (default: a temporary folder, removed at the end; the "
        "chart and report are then kept in ./rcf-demo-output)."
    ),
)
@click.pass_context
@guarded
def demo(ctx: click.Context, keep: bool, folder: Path | None) -> None:
    """Start a hub and five nodes (AU, ID, NZ, TH, RSO) here and show every capability."""
    if ctx.invoked_subcommand is not None:
        return
    if folder is not None and folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} is not empty; give a new folder or none.")
    root = folder or Path(tempfile.mkdtemp(prefix="rcf-demo-"))
    session = Demo(LocalNetwork(root, outlive_parent=keep), MEMBERS)
    console.rule(f"rcf demo in {root}")
    finished = False
    # A library blocked in C (gRPC) may swallow the KeyboardInterrupt itself; the
    # flag makes sure the demo still stops at the next step, and exits 130.
    interrupted = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        for number, (title, step) in enumerate(STEPS, start=1):
            if interrupted.is_set():
                raise KeyboardInterrupt
            console.rule(f"{number}. {title}")
            step(session)
        if interrupted.is_set():
            raise KeyboardInterrupt
        finished = True
    except (KeyboardInterrupt, RcfError) as exc:
        if isinstance(exc, RcfError) and not interrupted.is_set():
            raise
        console.print("\ninterrupted: stopping the network")
        keep = False
    finally:
        kept: list[Path] = []
        if not (keep and finished):
            session.net.stop_all()
            if folder is None:
                if finished:
                    kept = keep_outputs(session.outputs, Path.cwd() / OUTPUT_FOLDER)
                shutil.rmtree(root, ignore_errors=True)
    if not finished:
        sys.exit(130)
    if kept:
        console.print(
            f"\nthe network's folder {root} was removed; what the demo wrote for you to open "
            f"is kept in {kept[0].parent}:",
            markup=False,
            highlight=False,
        )
        for path in kept:
            console.print(f"  {path}", markup=False, highlight=False)
    if keep:
        _print_keep_instructions(session)
    else:
        console.rule("demo complete: network stopped")


@demo.command("stop")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@guarded
def demo_stop(folder: Path) -> None:
    """Stop a network left running by `rcf demo --keep`."""
    try:
        stopped = stop_kept(folder)
    except FileNotFoundError as exc:
        raise ConfigError(f"No running demo network in {folder}.") from exc
    click.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def register(root: click.Group) -> None:
    root.add_command(demo)
