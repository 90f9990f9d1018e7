"""`rcf hub …`: the RSO hub admin's commands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import click

from rcf.cli.errors import BAD_OPTION, guarded
from rcf.cli.options import (
    MEMBER_ID,
    StopSignal,
    check_can_listen,
    confirm,
    hub_dir_option,
    local_option,
    yes_option,
)
from rcf.cli.output import console, emit_json, json_option, table, utc_time
from rcf.cli.service_units import service_unit_command
from rcf.hub.layout import DEFAULT_ENROLL_LISTEN, DEFAULT_LISTEN, HubLayout
from rcf.hub.registry import Registry
from rcf.hub.server import HubServer
from rcf.hub.setup import init_hub, open_registry
from rcf.hub.status import hub_status
from rcf.node.ops.enrollment import EnrollmentMaterial, read_request, write_response
from rcf.trust.dictionary import DataDictionary, verify_dictionary
from rcf.trust.directory import Member, MemberStatus, Ncp, verify_directory
from rcf.trust.errors import ConfigError, RegistryError
from rcf.trust.join_token import (
    JoinToken,
    check_public,
    join_address,
    split_address,
    with_default_port,
)

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """'90s', '15m', '12h', '7d' → seconds."""
    unit = text[-1:]
    if unit not in DURATION_UNITS or not text[:-1].isdigit():
        raise ConfigError(f"'{text}' is not a duration; write e.g. 90s, 15m, 12h or 7d.")
    return int(text[:-1]) * DURATION_UNITS[unit]


def _registry(hub_dir: Path, *, read_only: bool = False) -> Registry:
    return open_registry(HubLayout(hub_dir), read_only=read_only)


def member_dict(m: Member) -> dict[str, Any]:
    return {
        "member_id": m.member_id,
        "name": m.name,
        "status": m.status.label,
        "groups": list(m.groups),
        "roles": list(m.roles),
        "endpoint": m.nodes[0].endpoint if m.nodes else "",
        "signing_keys": [k.key_id for k in m.signing_keys],
        "ncps": len(m.ncps),
    }


def ncp_dict(member_id: str, c: Ncp) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "ncp_id": c.ncp_id,
        "agency": c.agency,
        "role": c.role,
        "name": c.name,
        "email": c.email,
        "phone": c.phone,
        "languages": list(c.languages),
        "working_hours": c.working_hours,
    }


@click.group("hub")
def hub() -> None:
    """Run and administer the RSO hub: registry, enrolment, directory."""


service_unit_command(hub, "rcf-hub.service", "the hub ('rcf hub serve')")


@hub.command("init")
@hub_dir_option
@click.option("--network", default="rcf", show_default=True, help="The network's name.")
@click.option(
    "--directory-ttl",
    default="7d",
    show_default=True,
    help="How long a signed directory stays valid (at least 1h).",
)
@click.option(
    "--public-address",
    default="",
    help="HOST[:PORT] nodes dial for the hub, e.g. hub.rso.example:7443 (port: --listen's).",
)
@click.option(
    "--enroll-public-address",
    default="",
    help="HOST:PORT nodes dial to enrol (default: --public-address's host with the "
    "--enroll-listen port).",
)
@click.option(
    "--listen", default=DEFAULT_LISTEN, show_default=True, help="Where 'hub serve' listens."
)
@click.option(
    "--enroll-listen",
    default=DEFAULT_ENROLL_LISTEN,
    show_default=True,
    help="Where 'hub serve' listens for join-token enrolment.",
)
@local_option
@guarded
def hub_init(
    hub_dir: Path,
    network: str,
    directory_ttl: str,
    public_address: str,
    enroll_public_address: str,
    listen: str,
    enroll_listen: str,
    local: bool,
) -> None:
    """Create the network CA, the hub's keys and an empty registry; write hub.toml."""
    ttl = parse_duration(directory_ttl)
    if ttl < 3600:
        # Nodes refresh every minute; a shorter life would freeze them at the first hiccup.
        raise ConfigError("--directory-ttl must be at least 1h (the default is 7d).")
    _, listen_port = split_address(listen, what="--listen address")
    _, enroll_port = split_address(enroll_listen, what="--enroll-listen address")
    if not public_address and not local:
        raise ConfigError(
            "Give --public-address (the name or IP nodes reach the hub at, e.g. "
            "hub.rso.example), or --local for a network on this one machine.",
            reason=BAD_OPTION,
        )
    if public_address:
        public_address = _public(
            with_default_port(public_address, listen_port, what="--public-address"),
            "hub's public address",
            local,
        )
        if not enroll_public_address:
            host, _ = split_address(public_address)
            enroll_public_address = join_address(host, enroll_port)
    if enroll_public_address:
        enroll_public_address = _public(
            with_default_port(enroll_public_address, enroll_port, what="--enroll-public-address"),
            "hub's public enrolment address",
            local,
        )
    layout = init_hub(
        hub_dir,
        network=network,
        directory_ttl_s=ttl,
        listen=listen,
        enroll_listen=enroll_listen,
        public_address=public_address,
        enroll_public_address=enroll_public_address,
    )
    where = f"public address {public_address}" if public_address else "local network"
    click.echo(f"hub initialised in {layout.root} (network {network}, {where})")


def _public(address: str, what: str, local: bool) -> str:
    return check_public(
        address,
        what=what,
        local=local,
        fix="give the name or IP other hosts reach the hub at",
    )


@hub.command("serve")
@hub_dir_option
@click.option(
    "--listen", default=None, help="Mutual-TLS listen address (default: hub.toml's, 0.0.0.0:7443)."
)
@click.option(
    "--enroll-listen",
    default=None,
    help="Join-token enrolment listen address (default: hub.toml's, 0.0.0.0:7444).",
)
@guarded
def hub_serve(hub_dir: Path, listen: str | None, enroll_listen: str | None) -> None:
    """Serve the registry until SIGTERM or Ctrl-C (one log line when ready, one when stopped)."""
    layout = HubLayout(hub_dir)
    config = layout.load_config()
    listen = listen or config.listen
    enroll_listen = enroll_listen or config.enroll_listen
    check_can_listen(listen, what="hub")
    check_can_listen(enroll_listen, what="hub enrolment")
    stop = StopSignal()
    server = HubServer(layout)
    try:
        server.start(listen=listen, enroll_listen=enroll_listen)
    except RuntimeError as exc:  # gRPC's bind failure, should the pre-check have passed
        server.stop(grace=0)
        raise ConfigError(f"Cannot listen on {listen} or {enroll_listen}.") from exc
    public = config.public_address or server.address
    enroll_public = config.enroll_public_address or server.enroll_address
    click.echo(
        f"hub ready: mutual TLS on {server.address} (public {public}), "
        f"enrolment on {server.enroll_address} (public {enroll_public}), folder {layout.root}",
        err=True,
    )
    try:
        received = stop.wait()
    finally:
        server.stop()
    click.echo(f"hub stopped ({received})", err=True)


@hub.command("status")
@hub_dir_option
@json_option
@guarded
def hub_status_cmd(hub_dir: Path, as_json: bool) -> None:
    """A read-only summary of the hub folder; warns about files others can read."""
    s = hub_status(HubLayout(hub_dir))
    if as_json:
        emit_json(asdict(s))
        return
    running = s.running
    rows = {
        "network": s.network,
        "serving": f"{running['address']} (enrolment {running['enroll_address']}, pid "
        f"{running['pid']})"
        if running
        else "no",
        "directory serial": s.directory_serial,
        "directory expires": utc_time(s.directory_expires_at_ms),
        "data dictionary": s.dictionary_version,
        "members": ", ".join(f"{n} {k}" for k, n in sorted(s.members.items())) or "none",
        "nodes enrolled": s.nodes_enrolled,
        "open join tokens": s.open_join_tokens,
    }
    for k, v in rows.items():
        console.print(f"{k:>18}  {v}", highlight=False, markup=False)
    for warning in s.file_mode_warnings:
        click.echo(f"warning: {warning}", err=True)
    if s.members_without_ncp:
        click.echo(
            f"warning: no National Contact Point for {', '.join(s.members_without_ncp)}: "
            "their hits reach the asker with no one to call (rcf hub ncp add MEMBER …).",
            err=True,
        )


@hub.group("member")
def member() -> None:
    """Members of the network: add, suspend, reinstate, revoke, list."""


@member.command("add")
@hub_dir_option
@click.argument("member_id", type=MEMBER_ID)
@click.option("--name", default="", help="Display name, e.g. 'Thailand'.")
@click.option("--group", "groups", multiple=True, help="Group, e.g. steering-group (repeatable).")
@click.option("--role", "roles", multiple=True, help="Role, e.g. coordinator (repeatable).")
@guarded
def member_add(
    hub_dir: Path, member_id: str, name: str, groups: tuple[str, ...], roles: tuple[str, ...]
) -> None:
    """Register a member state or organisation."""
    m = _registry(hub_dir).add_member(member_id, name=name, groups=groups, roles=roles)
    click.echo(f"member {m.member_id} added ({m.name})")


def _status_command(name: str, status: MemberStatus, verb: str, doc: str, final: bool) -> None:
    def command(hub_dir: Path, member_id: str, yes: bool = True) -> None:
        registry = _registry(hub_dir)
        if final:
            current = registry.snapshot().member(member_id)
            if current is None:
                raise RegistryError(f"No member {member_id} in the registry.")
            if current.status is not MemberStatus.REVOKED:
                confirm(
                    f"Revoke {member_id} for good? Its nodes lose access and it cannot be "
                    "reinstated.",
                    yes=yes,
                )
        m = registry.set_status(member_id, status)
        click.echo(f"member {m.member_id} {verb}; nodes apply it at their next directory refresh")

    command.__doc__ = doc
    decorated = guarded(command)
    if final:
        decorated = yes_option(decorated)
    decorated = click.argument("member_id", type=MEMBER_ID)(decorated)
    member.command(name)(hub_dir_option(decorated))


_status_command(
    "suspend",
    MemberStatus.SUSPENDED,
    "suspended",
    "Suspend MEMBER_ID: nodes refuse its requests until it is reinstated.",
    final=False,
)
_status_command(
    "reinstate",
    MemberStatus.ACTIVE,
    "reinstated",
    "Reinstate a suspended MEMBER_ID: nodes accept its requests again.",
    final=False,
)
_status_command(
    "revoke",
    MemberStatus.REVOKED,
    "revoked (final)",
    "Revoke MEMBER_ID for good (asks first unless --yes): it cannot be reinstated.",
    final=True,
)


@member.command("list")
@hub_dir_option
@json_option
@guarded
def member_list(hub_dir: Path, as_json: bool) -> None:
    """List members with status, groups, roles and endpoint."""
    members = [member_dict(m) for m in _registry(hub_dir, read_only=True).members()]
    if as_json:
        emit_json(members)
        return
    table(
        "members",
        ["member", "name", "status", "groups", "roles", "endpoint"],
        [
            [m["member_id"], m["name"], m["status"], ",".join(m["groups"]), ",".join(m["roles"]),
             m["endpoint"]]
            for m in members
        ],
    )  # fmt: skip


@hub.group("token")
def token() -> None:
    """One-time join tokens for enrolling nodes over the wire."""


def public_addresses(
    layout: HubLayout, hub_address: str | None, enroll_address: str | None, *, local: bool
) -> tuple[str, str]:
    """(hub, enrolment) addresses nodes dial: the options, else hub.toml's public
    addresses, else (a network on one machine) where the running hub is bound.
    An enrolment address not given follows the hub address's host."""
    config = layout.load_config()
    runtime: dict[str, str] = {}

    def running() -> dict[str, str]:
        if not runtime:
            runtime.update(layout.read_runtime())
        return runtime

    address = hub_address or config.public_address or running()["address"]
    if enroll_address:
        enroll = enroll_address
    elif config.enroll_public_address and not hub_address:
        enroll = config.enroll_public_address
    else:
        port = split_address(config.enroll_public_address or config.enroll_listen)[1]
        port = port or split_address(running()["enroll_address"])[1]
        enroll = join_address(split_address(address, what="hub address")[0], port)
    for value, what in ((address, "hub address"), (enroll, "enrolment address")):
        if split_address(value, what=what)[1] == 0:
            raise ConfigError(f"The {what} {value} has no port; give HOST:PORT.")
        check_public(
            value,
            what=what,
            local=local,
            fix="set the hub's public address (public_address in hub.toml, or --hub-address)",
        )
    return address, enroll


@token.command("create")
@hub_dir_option
@click.argument("member_id", type=MEMBER_ID)
@click.option(
    "--hub-address",
    help="HOST:PORT nodes reach the hub at (default: hub.toml's public_address).",
)
@click.option(
    "--enroll-address",
    help="HOST:PORT nodes enrol at (default: hub.toml's enroll_public_address, or the "
    "--hub-address host with the enrolment port).",
)
@click.option("--ttl", default="24h", show_default=True, help="How long the token stays valid.")
@local_option
@guarded
def token_create(
    hub_dir: Path,
    member_id: str,
    hub_address: str | None,
    enroll_address: str | None,
    ttl: str,
    local: bool,
) -> None:
    """Print a join token for MEMBER_ID's node (`rcf node init --join-token …`)."""
    layout = HubLayout(hub_dir)
    address, enroll = public_addresses(layout, hub_address, enroll_address, local=local)
    secret = _registry(hub_dir).create_join_token(member_id, ttl_ms=parse_duration(ttl) * 1000)
    click.echo(
        JoinToken(
            secret=secret,
            member_id=member_id,
            hub_address=address,
            enroll_address=enroll,
            ca_pem=layout.ca_cert.read_bytes(),
            hub_public_key=layout.load_public_key(),
        ).encode()
    )


@hub.command("enroll")
@hub_dir_option
@click.option(
    "--request",
    "request_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The enrol-request.json a node operator sent ('rcf node init --offline').",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the response file to send back ('rcf node enroll --response').",
)
@click.option(
    "--hub-address", help="HOST:PORT nodes reach the hub at (default: hub.toml's public_address)."
)
@click.option(
    "--replace",
    is_flag=True,
    help="Enrol even though the member has an enrolled node (its certificate stops working).",
)
@local_option
@guarded
def hub_enroll(
    hub_dir: Path,
    request_path: Path,
    out_path: Path,
    hub_address: str | None,
    local: bool,
    replace: bool,
) -> None:
    """Approve an offline enrolment request file and write the response file.

    Approving the same request again writes the same certificate; a different request for
    a member whose node is enrolled is refused unless --replace."""
    layout = HubLayout(hub_dir)
    member_id, csr, signing_public_key = read_request(request_path)
    address, _ = public_addresses(layout, hub_address, hub_address, local=local)
    result = _registry(hub_dir).enroll_offline(
        member_id=member_id, csr_pem=csr, signing_public_key=signing_public_key, replace=replace
    )
    write_response(
        out_path,
        EnrollmentMaterial(
            member_id=member_id,
            certificate_pem=result.certificate_pem,
            ca_pem=result.ca_certificate_pem,
            hub_public_key=layout.load_public_key(),
            hub_address=address,
            directory=result.directory,
        ),
    )
    click.echo(f"enrolled {member_id}; give {out_path} to its node operator")


@hub.group("ncp")
def ncp() -> None:
    """National Contact Points: who follows up a hit through official channels."""


def _ncp_options(required: bool) -> list[Callable[[F], F]]:
    return [
        click.option("--agency", required=required, help="Agency, e.g. 'Royal Thai Police'."),
        click.option("--role", "ncp_role", required=required, help="Role, e.g. 'duty officer'."),
        click.option("--name", required=required, help="Person or desk name."),
        click.option("--email", default=None, help="E-mail address of the desk or person."),
        click.option("--phone", default=None, help="Phone number, international format."),
        click.option("--language", "languages", multiple=True, help="Language (repeatable)."),
        click.option("--hours", "working_hours", default=None, help="e.g. 'Mon-Fri 08-17 ICT'."),
    ]


F = TypeVar("F", bound=Callable[..., Any])


def _apply(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return decorate


@ncp.command("add")
@hub_dir_option
@click.argument("member_id", type=MEMBER_ID)
@_apply(_ncp_options(required=True))
@guarded
def ncp_add(
    hub_dir: Path,
    member_id: str,
    agency: str,
    ncp_role: str,
    name: str,
    email: str | None,
    phone: str | None,
    languages: tuple[str, ...],
    working_hours: str | None,
) -> None:
    """Add an NCP for MEMBER_ID."""
    added = _registry(hub_dir).add_ncp(
        member_id,
        Ncp(
            ncp_id="",
            agency=agency,
            role=ncp_role,
            name=name,
            email=email or "",
            phone=phone or "",
            languages=languages,
            working_hours=working_hours or "",
        ),
    )
    click.echo(f"NCP {added.ncp_id} added for {member_id}")


@ncp.command("update")
@hub_dir_option
@click.argument("ncp_id")
@_apply(_ncp_options(required=False))
@guarded
def ncp_update(
    hub_dir: Path,
    ncp_id: str,
    agency: str | None,
    ncp_role: str | None,
    name: str | None,
    email: str | None,
    phone: str | None,
    languages: tuple[str, ...],
    working_hours: str | None,
) -> None:
    """Change fields of an NCP; unnamed fields stay as they are."""
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "agency": agency,
            "role": ncp_role,
            "name": name,
            "email": email,
            "phone": phone,
            "working_hours": working_hours,
        }.items()
        if v is not None
    }
    if languages:
        changes["languages"] = languages
    if not changes:
        raise ConfigError("Name at least one field to change (see --help).")
    _registry(hub_dir).update_ncp(ncp_id, changes)
    click.echo(f"NCP {ncp_id} updated")


@ncp.command("remove")
@hub_dir_option
@click.argument("ncp_id")
@guarded
def ncp_remove(hub_dir: Path, ncp_id: str) -> None:
    """Remove an NCP."""
    _registry(hub_dir).remove_ncp(ncp_id)
    click.echo(f"NCP {ncp_id} removed")


@ncp.command("list")
@hub_dir_option
@click.option(
    "--member", "member_id", type=MEMBER_ID, default=None, help="Only this member's NCPs."
)
@json_option
@guarded
def ncp_list(hub_dir: Path, member_id: str | None, as_json: bool) -> None:
    """List National Contact Points."""
    rows = [ncp_dict(m, c) for m, c in _registry(hub_dir, read_only=True).ncps(member_id)]
    if as_json:
        emit_json(rows)
        return
    table(
        "national contact points",
        ["member", "id", "agency", "role", "name", "email", "phone", "languages", "hours"],
        [
            [r["member_id"], r["ncp_id"], r["agency"], r["role"], r["name"], r["email"],
             r["phone"], ",".join(r["languages"]), r["working_hours"]]
            for r in rows
        ],
    )  # fmt: skip


@hub.command("directory")
@hub_dir_option
@json_option
@guarded
def hub_directory(hub_dir: Path, as_json: bool) -> None:
    """Show the current signed directory's header and members."""
    layout = HubLayout(hub_dir)
    envelope = _registry(hub_dir, read_only=True).current_directory()
    d = verify_directory(envelope, hub_public_key=layout.load_public_key(), now_ms=None)
    members = [member_dict(m) for m in d.members]
    if as_json:
        emit_json(
            {
                "network": d.network,
                "serial": d.serial,
                "issued_at_ms": d.issued_at_ms,
                "expires_at_ms": d.expires_at_ms,
                "dictionary_version": d.dictionary_version,
                "members": members,
            }
        )
        return
    console.print(
        f"network {d.network}, directory serial {d.serial}, data dictionary {d.dictionary_version}"
    )
    table(
        "members",
        ["member", "status", "endpoint", "keys"],
        [[m["member_id"], m["status"], m["endpoint"], len(m["signing_keys"])] for m in members],
    )


@hub.group("dictionary")
def dictionary() -> None:
    """The network data dictionary: show, export for editing, publish a new version."""


def _current_dictionary(hub_dir: Path, version: str = "") -> DataDictionary:
    layout = HubLayout(hub_dir)
    registry = _registry(hub_dir, read_only=True)
    try:
        envelope = registry.signed_dictionary(version)
    finally:
        registry.close()
    return verify_dictionary(envelope, hub_public_key=layout.load_public_key())


@dictionary.command("show")
@hub_dir_option
@click.option("--version", "version", default="", help="A published version (default: latest).")
@json_option
@guarded
def dictionary_show(hub_dir: Path, version: str, as_json: bool) -> None:
    """Datasets, their dimensions and code counts in the published dictionary."""
    d = _current_dictionary(hub_dir, version)
    if as_json:
        click.echo(d.to_json())
        return
    console.print(f"data dictionary version {d.version}")
    table(
        "datasets",
        ["dataset", "kind", "dimensions", "measures"],
        [
            [ds.name, ds.kind, ", ".join(dim.name for dim in ds.dimensions), ", ".join(ds.measures)]
            for ds in d.datasets.values()
        ],
    )


@dictionary.command("export")
@hub_dir_option
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The JSON file to write.",
)
@guarded
def dictionary_export(hub_dir: Path, out_path: Path) -> None:
    """Write the latest dictionary as JSON, to edit into the next version."""
    d = _current_dictionary(hub_dir)
    out_path.write_text(d.to_json() + "\n", encoding="utf-8")
    click.echo(f"wrote version {d.version} to {out_path}; raise 'version' before publishing")


@dictionary.command("publish")
@hub_dir_option
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@guarded
def dictionary_publish(hub_dir: Path, file: Path) -> None:
    """Sign and publish FILE (JSON) as the next version; nodes follow at their next refresh."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file} is not UTF-8 text.") from exc
    new = DataDictionary.from_json(text)
    registry = _registry(hub_dir)
    try:
        directory = registry.publish_dictionary(new)
    finally:
        registry.close()
    click.echo(
        f"data dictionary {new.version} published; directory serial {directory.serial} names it"
    )


def register(root: click.Group) -> None:
    root.add_command(hub)
