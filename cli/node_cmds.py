"""`rcf node …` for the node operator, and `rcf ping` for officers."""

from __future__ import annotations

from pathlib import Path

import click
import grpc

from cli.errors import describe_rpc_error, guarded
from cli.operator_client import operator_stub
from cli.options import node_dir_option, wait_for_signal
from cli.output import console, emit_json, json_option, table, utc_time
from node.config import NodeLayout
from node.enrollment import complete_offline, init_offline, init_with_token, rotate_keys
from node.server import NodeServer
from protos.rcf.v1 import operator_pb2
from trust.errors import ConfigError
from trust.files import loose_modes


@click.group("node")
def node() -> None:
    """Set up, enrol and run this state's node."""


@node.command("init")
@node_dir_option
@click.option("--member", "member_id", required=True, help="This node's member id, e.g. TH.")
@click.option("--join-token", default=None, help="Join token from the hub admin.")
@click.option(
    "--join-token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="File holding the join token.",
)
@click.option("--offline", is_flag=True, help="Write an enrolment request file instead.")
@guarded
def node_init(
    node_dir: Path,
    member_id: str,
    join_token: str | None,
    join_token_file: Path | None,
    offline: bool,
) -> None:
    """Create the node's keys and enrol with the hub (join token, or offline files)."""
    if join_token_file is not None:
        join_token = join_token_file.read_text()
    if offline == bool(join_token):
        raise ConfigError("Give either --join-token (or --join-token-file) or --offline.")
    if offline:
        path = init_offline(node_dir, member_id=member_id)
        click.echo(f"wrote {path}; send it to the hub admin ('rcf hub enroll --request …'),")
        click.echo("then run 'rcf node enroll --response FILE' with the file that comes back")
        return
    assert join_token is not None
    layout = init_with_token(node_dir, member_id=member_id, token_text=join_token)
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


@node.command("serve")
@node_dir_option
@click.option("--listen", default=None, help="Federation address (default from node.toml).")
@guarded
def node_serve(node_dir: Path, listen: str | None) -> None:
    """Serve the federation and operator APIs until interrupted."""
    server = NodeServer(NodeLayout(node_dir))
    server.start(listen=listen)
    click.echo(
        f"node {server.config.member_id} serving on {server.address} "
        f"(operator on {server.operator_address})",
        err=True,
    )
    try:
        wait_for_signal()
    finally:
        server.stop()


def _status_dict(s: operator_pb2.StatusResponse) -> dict[str, object]:
    return {
        "member_id": s.member_id,
        "federation_endpoint": s.federation_endpoint,
        "directory_serial": s.directory_serial,
        "directory_expires_at": utc_time(s.directory_expires_at_ms),
        "directory_fetched_at": utc_time(s.directory_fetched_at_ms),
        "last_refresh_error": s.last_refresh_error,
        "audit_records": s.audit_records,
        "signing_key_id": s.signing_key_id,
    }


@node.command("status")
@node_dir_option
@json_option
@guarded
def node_status(node_dir: Path, as_json: bool) -> None:
    """Show the running node's endpoint, directory and audit state; warn about files in its
    folder that others can read."""
    layout = NodeLayout(node_dir)
    warnings = loose_modes(layout.root)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    with operator_stub(layout) as (stub, md):
        data = _status_dict(stub.Status(operator_pb2.StatusRequest(), metadata=md, timeout=10))
    if as_json:
        emit_json({**data, "file_mode_warnings": warnings})
        return
    for k, v in data.items():
        console.print(f"{k:>22}  {v}")


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
@click.argument("members", nargs=-1, required=True)
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
    failed = False
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
                    failed = True
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
    if failed:
        raise SystemExit(1)


def register(root: click.Group) -> None:
    root.add_command(node)
    root.add_command(ping)
