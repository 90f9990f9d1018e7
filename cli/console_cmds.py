"""`rcf console …`: serve the members' web console and manage its accounts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from rcf.cli.errors import guarded
from rcf.cli.operator_client import node_running
from rcf.cli.options import node_dir_option
from rcf.console.accounts import ROLES
from rcf.console.node_api import NodeApi
from rcf.console.server import DEFAULT_LISTEN, ConsoleLayout, ConsoleServer
from rcf.node.ops.config import NodeLayout
from rcf.trust.errors import ConfigError

console_dir_option = click.option(
    "--console-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="rcf-console",
    show_default=True,
    envvar="RCF_CONSOLE_DIR",
    help="The console's folder: its accounts and certificate (env RCF_CONSOLE_DIR).",
)


@click.group("console")
def console_group() -> None:
    """The members' web console for this node's staff."""


@console_group.command("serve")
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True,
              help="HOST:PORT to serve HTTPS on (loopback by default).")  # fmt: skip
@console_dir_option
@node_dir_option
@guarded
def serve(listen: str, console_dir: Path, node_dir: Path) -> None:
    """Serve the console over HTTPS until stopped (Ctrl-C or SIGTERM)."""
    NodeLayout(node_dir).require()
    server = ConsoleServer(console_dir, node_dir, listen=listen)
    click.echo(f"console at {server.url}/ (stop with Ctrl-C)", err=True)
    server.run()


@console_group.group("user")
def user_group() -> None:
    """Console accounts."""


def _password() -> str:
    # Non-interactive setups (the demo, tests) hand it over in the environment.
    given = os.environ.get("RCF_CONSOLE_PASSWORD")
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise ConfigError("Type the password at a terminal, or set RCF_CONSOLE_PASSWORD.")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _audit(node_dir: Path, action: str, detail: str) -> str:
    """Record a user change in the node's audit log when the node runs."""
    if not node_running(NodeLayout(node_dir)):
        return " (node not running: not audited)"
    NodeApi(node_dir).record("operator-cli", action, detail)
    return ""


@user_group.command("add")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(ROLES),
              help="A role of the account; repeat for several.")  # fmt: skip
@click.option("--totp", is_flag=True, help="Require an authenticator code (TOTP) at login.")
@console_dir_option
@node_dir_option
@guarded
def user_add(name: str, roles: tuple[str, ...], totp: bool, console_dir: Path,
             node_dir: Path) -> None:  # fmt: skip
    """Create a console account NAME with its roles."""
    secret = (
        ConsoleLayout(console_dir)
        .accounts()
        .add(name, roles=roles, password=_password(), totp=totp)
    )
    note = _audit(node_dir, "user_add", f"account={name} roles={'+'.join(roles)}")
    click.echo(f"account {name} added ({', '.join(roles)}){note}")
    if secret:
        click.echo(f"authenticator secret (enter it in the user's app): {secret}")


@user_group.command("remove")
@click.argument("name")
@console_dir_option
@node_dir_option
@guarded
def user_remove(name: str, console_dir: Path, node_dir: Path) -> None:
    """Remove the console account NAME (a running console ends its sessions at their expiry)."""
    ConsoleLayout(console_dir).accounts().remove(name)
    note = _audit(node_dir, "user_remove", f"account={name}")
    click.echo(f"account {name} removed{note}")


@user_group.command("unlock")
@click.argument("name")
@console_dir_option
@node_dir_option
@guarded
def user_unlock(name: str, console_dir: Path, node_dir: Path) -> None:
    """Unlock NAME after repeated failed logins."""
    ConsoleLayout(console_dir).accounts().unlock(name)
    note = _audit(node_dir, "user_unlock", f"account={name}")
    click.echo(f"account {name} unlocked{note}")


@user_group.command("list")
@console_dir_option
@guarded
def user_list(console_dir: Path) -> None:
    """The console accounts and their roles."""
    for a in ConsoleLayout(console_dir).accounts().list():
        click.echo(f"{a.name}\t{','.join(a.roles)}\t{'totp' if a.totp else ''}")


def register(root: click.Group) -> None:
    root.add_command(console_group)
