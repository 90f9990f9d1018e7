"""`rcf node …` for the node operator, and `rcf ping` for officers."""

from __future__ import annotations

from pathlib import Path

import click
import grpc

from rcf.cli.errors import (
    EXIT_ERROR,
    EXIT_UNAVAILABLE,
    describe_rpc_error,
    exit_code_for_rpc,
    guarded,
)
from rcf.cli.operator_client import node_running, operator_stub, record_operations
from rcf.cli.options import (
    MEMBER_ID,
    StopSignal,
    check_can_listen,
    confirm,
    local_option,
    node_dir_option,
    yes_option,
)
from rcf.cli.output import console, emit_json, json_option, table, utc_time
from rcf.node.data.dictionary import load_dictionary
from rcf.node.federation.server import NodeServer
from rcf.node.identity.maintenance import rotate as rotate_oprf
from rcf.node.ops.assembly import offline
from rcf.node.ops.backup import create_backup, describe, open_backup, restore_backup
from rcf.node.ops.config import DEFAULT_LISTEN, NodeLayout
from rcf.node.ops.enrollment import (
    NodeAddresses,
    complete_offline,
    init_offline,
    init_with_token,
    rotate_keys,
)
from rcf.protos.v1 import identity_pb2, identity_pb2_grpc, operator_pb2
from rcf.trust.errors import ConfigError, VerificationError
from rcf.trust.files import loose_modes
from rcf.trust.join_token import (
    JoinToken,
    check_public,
    check_token_addresses,
    split_address,
    unreachable_kind,
    with_default_port,
)

LOCAL_FIXED_LISTEN = "127.0.0.1:7445"


def node_addresses(listen: str | None, public_address: str | None, local: bool) -> NodeAddresses:
    """The listen address (a fixed port by default) and the public address peers dial."""
    listen = listen or (LOCAL_FIXED_LISTEN if local else DEFAULT_LISTEN)
    _, port = split_address(listen, what="--listen address")
    if public_address:
        public = with_default_port(public_address, port, what="--public-address")
        check_public(
            public,
            what="node's public address",
            local=local,
            fix="give the name or IP other nodes reach this node at",
        )
        return NodeAddresses(listen=listen, public_address=public)
    if not local:
        raise ConfigError(
            "Give --public-address (the name or IP other nodes reach this node at, e.g. "
            "th-node.example.org), or --local for a network on this one machine."
        )
    if unreachable_kind(listen) == "a wildcard address":
        raise ConfigError(
            f"--listen {listen} is a wildcard address peers cannot dial; give --public-address."
        )
    return NodeAddresses(listen=listen, public_address="")


@click.group("node")
def node() -> None:
    """Set up, enrol and run this state's node."""


@node.command("init")
@node_dir_option
@click.option(
    "--member", "member_id", type=MEMBER_ID, required=True, help="This node's member id, e.g. TH."
)
@click.option("--join-token", default=None, help="Join token from the hub admin.")
@click.option(
    "--join-token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="File holding the join token.",
)
@click.option("--offline", is_flag=True, help="Write an enrolment request file instead.")
@click.option(
    "--listen",
    default=None,
    help=f"Where the federation API listens; a fixed port [default: {DEFAULT_LISTEN}, "
    f"with --local {LOCAL_FIXED_LISTEN}].",
)
@click.option(
    "--public-address",
    default=None,
    help="HOST[:PORT] other nodes dial, published in the directory (port: --listen's).",
)
@local_option
@guarded
def node_init(
    node_dir: Path,
    member_id: str,
    join_token: str | None,
    join_token_file: Path | None,
    offline: bool,
    listen: str | None,
    public_address: str | None,
    local: bool,
) -> None:
    """Create the node's keys and enrol with the hub (join token, or offline files).

    node.toml gets a fixed listen port (7445 unless --listen says otherwise), so a
    restart keeps the address peers know; --public-address is what they dial.
    """
    if join_token_file is not None:
        join_token = join_token_file.read_text()
    if offline == bool(join_token):
        raise ConfigError("Give either --join-token (or --join-token-file) or --offline.")
    token = None if offline else JoinToken.decode(join_token or "")
    addresses = node_addresses(listen, public_address, local)
    if token is None:
        path = init_offline(node_dir, member_id=member_id, addresses=addresses)
        click.echo(f"wrote {path}; send it to the hub admin ('rcf hub enroll --request …'),")
        click.echo("then run 'rcf node enroll --response FILE' with the file that comes back")
        return
    check_token_addresses(token, local=local)
    layout = init_with_token(
        node_dir, member_id=member_id, token_text=token.encode(), addresses=addresses
    )
    click.echo(f"node {member_id} enrolled; folder {layout.root}; start it with 'rcf node serve'")


@node.command("enroll")
@node_dir_option
@click.option(
    "--response",
    "response_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The response file from the hub admin.",
)
@guarded
def node_enroll(node_dir: Path, response_path: Path) -> None:
    """Finish an offline enrolment with the hub's response file."""
    layout = complete_offline(node_dir, response_path=response_path)
    click.echo(f"node enrolled; folder {layout.root}; start it with 'rcf node serve'")


@node.command("rotate-keys")
@node_dir_option
@click.option("--join-token", default=None, help="Join token from the hub admin.")
@click.option(
    "--join-token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="File holding the join token.",
)
@guarded
def node_rotate_keys(node_dir: Path, join_token: str | None, join_token_file: Path | None) -> None:
    """Replace this node's signing key and TLS certificate (the node must be stopped)."""
    if join_token_file is not None:
        join_token = join_token_file.read_text()
    if not join_token:
        raise ConfigError("Give --join-token or --join-token-file (ask the hub admin for one).")
    key_id = rotate_keys(node_dir, token_text=join_token)
    click.echo(f"new signing key {key_id}; the old one stays listed for verification")


@node.command("rotate-oprf-key")
@node_dir_option
@yes_option
@guarded
def node_rotate_oprf_key(node_dir: Path, yes: bool) -> None:
    """Replace the node's OPRF key and rebuild its token index under it (audited).

    Done by the running node (checks under way are refused and must start again),
    or offline when the node is stopped."""
    layout = NodeLayout(node_dir)
    layout.require()
    confirm("Replace this node's OPRF key and rebuild its token index?", yes=yes)
    if node_running(layout):
        with operator_stub(layout) as (_, md):
            runtime = layout.read_runtime()
            with grpc.insecure_channel(str(runtime["operator_address"])) as channel:
                r = identity_pb2_grpc.IdentityOperatorStub(channel).RotateOprfKey(
                    identity_pb2.RotateOprfKeyRequest(), metadata=md, timeout=3600
                )
        key_id, tokens, how = r.key_id, r.tokens, "by the running node"
    else:
        with offline(layout):
            key, result = rotate_oprf(layout.root, load_dictionary(layout))
        record_operations(layout)
        key_id, tokens, how = key.key_id, result.tokens, "offline"
    click.echo(f"new OPRF key {key_id}; {tokens:,} tokens re-indexed {how}; audited")


@node.command("serve")
@node_dir_option
@click.option("--listen", default=None, help="Federation listen address (default: node.toml's).")
@guarded
def node_serve(node_dir: Path, listen: str | None) -> None:
    """Serve the federation and operator APIs until SIGTERM or Ctrl-C (one log line
    when ready, one when stopped)."""
    layout = NodeLayout(node_dir)
    config = layout.load_config()
    check_can_listen(listen or config.listen, what="federation")
    check_can_listen(config.operator_listen, what="operator API")
    stop = StopSignal()
    server = NodeServer(layout)
    try:
        server.start(listen=listen)
    except RuntimeError as exc:  # gRPC's bind failure, should the pre-check have passed
        raise ConfigError(f"Cannot listen on {listen or config.listen}.") from exc
    click.echo(
        f"node {config.member_id} ready: federation on {server.address} "
        f"(public {config.public_address or server.address}), operator API on "
        f"{server.operator_address}, hub {config.hub_address}, folder {layout.root}",
        err=True,
    )
    try:
        received = stop.wait()
    finally:
        server.stop()
    click.echo(f"node {config.member_id} stopped ({received})", err=True)


@node.command("backup")
@node_dir_option
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@guarded
def node_backup(node_dir: Path, dest: Path) -> None:
    """Write a consistent copy of the node (data, state with its audit log, keys) to DEST.

    Safe while the node runs (SQLite's online backup). DEST is a new file, mode 0600:
    it holds the node's private keys, so keep it like them.
    """
    info = create_backup(node_dir, dest)
    click.echo(f"backup written to {dest} ({describe(info)})")


@node.command("restore")
@node_dir_option
@click.argument("backup", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@yes_option
@guarded
def node_restore(node_dir: Path, backup: Path, yes: bool) -> None:
    """Restore BACKUP into the node folder; the node must be stopped (asks first unless --yes).

    A newer signed directory already in the folder is kept, so a restore never rolls
    back a suspension or revocation the node had seen.
    """
    with open_backup(backup) as (info, _):
        summary = describe(info)
    if NodeLayout(node_dir).config.exists():
        confirm(
            f"Replace the node in {node_dir} with the backup ({summary})? Records and audit "
            "entries written since the backup was taken are lost.",
            yes=yes,
        )
    restore_backup(backup, node_dir)
    click.echo(f"restored {summary} into {node_dir}; start it with 'rcf node serve'")


def _status_dict(s: operator_pb2.StatusResponse) -> dict[str, object]:
    return {
        "member_id": s.member_id,
        "federation_endpoint": s.federation_endpoint,
        "metrics_endpoint": s.metrics_endpoint,
        "directory_serial": s.directory_serial,
        "directory_expires_at": utc_time(s.directory_expires_at_ms),
        "directory_fetched_at": utc_time(s.directory_fetched_at_ms),
        "last_refresh_error": s.last_refresh_error,
        "audit_records": s.audit_records,
        "audit_unshipped_records": s.audit_unshipped_records,
        "audit_oldest_unshipped_at": utc_time(s.audit_oldest_unshipped_at_ms)
        if s.audit_oldest_unshipped_at_ms
        else "",
        "audit_ship_error": s.audit_ship_error,
        "signing_key_id": s.signing_key_id,
    }


@node.command("status")
@node_dir_option
@json_option
@click.option("--strict", is_flag=True, help="Exit non-zero when there is any warning.")
@guarded
def node_status(node_dir: Path, as_json: bool, strict: bool) -> None:
    """Show the running node's endpoint, directory and audit state; warn about files in its
    folder that others can read and about audit records the hub has not accepted for long."""
    layout = NodeLayout(node_dir)
    warnings = loose_modes(layout.root)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    with operator_stub(layout) as (stub, md):
        status = stub.Status(operator_pb2.StatusRequest(), metadata=md, timeout=10)
    data = _status_dict(status)
    backlog = status.audit_backlog_warning
    if backlog:
        click.echo(f"warning: {backlog}", err=True)
    if as_json:
        emit_json({**data, "file_mode_warnings": warnings, "audit_backlog_warning": backlog})
    else:
        width = max(len(k) for k in data)
        for k, v in data.items():
            console.print(f"{k:>{width}}  {v}")
    if strict and (backlog or warnings):
        raise VerificationError(backlog or warnings[0], reason="status_warning")


@node.command("refresh")
@node_dir_option
@guarded
def node_refresh(node_dir: Path) -> None:
    """Fetch the newest directory from the hub now."""
    with operator_stub(NodeLayout(node_dir)) as (stub, md):
        s = stub.RefreshDirectory(operator_pb2.RefreshDirectoryRequest(), metadata=md, timeout=30)
    click.echo(f"directory serial {s.directory_serial}")


@click.command("ping")
@node_dir_option
@click.argument("members", nargs=-1, required=True, type=MEMBER_ID)
@click.option("--count", default=1, show_default=True, help="Round trips per member.")
@click.option("--timeout", "timeout_ms", default=5000, show_default=True, help="Per call, in ms.")
@json_option
@guarded
def ping(
    node_dir: Path, members: tuple[str, ...], count: int, timeout_ms: int, as_json: bool
) -> None:
    """Signed round trip from this node to each of MEMBERS: latency and verified signer."""
    if count < 1:
        raise ConfigError("--count must be at least 1.")
    results = []
    codes: set[int] = set()
    with operator_stub(NodeLayout(node_dir)) as (stub, md):
        for member_id in members:
            for _ in range(count):
                try:
                    r = stub.PingPeer(
                        operator_pb2.PingPeerRequest(member_id=member_id, timeout_ms=timeout_ms),
                        metadata=md,
                        timeout=timeout_ms / 1000 + 5,
                    )
                except grpc.RpcError as exc:
                    codes.add(exit_code_for_rpc(exc))
                    error = describe_rpc_error(exc)
                    results.append({"member_id": member_id, "ok": False, "error": error})
                    continue
                results.append(
                    {
                        "member_id": member_id,
                        "ok": True,
                        "latency_ms": round(r.latency_ms, 3),
                        "signer": r.signer_member,
                        "signer_key_id": r.signer_key_id,
                        "query_id": r.query_id,
                    }
                )
    if as_json:
        emit_json(results)
    else:
        table(
            "signed ping",
            ["member", "result", "latency ms", "verified signer", "key"],
            [
                [r["member_id"], "ok" if r["ok"] else f"FAILED: {r['error']}",
                 r.get("latency_ms", ""), r.get("signer", ""), r.get("signer_key_id", "")]
                for r in results
            ],
        )  # fmt: skip
    if codes:
        # Unavailable only when every failure was (peers down); any refusal is a failure.
        raise SystemExit(EXIT_UNAVAILABLE if codes == {EXIT_UNAVAILABLE} else EXIT_ERROR)


def register(root: click.Group) -> None:
    root.add_command(node)
    root.add_command(ping)
