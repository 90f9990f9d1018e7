"""Options shared by several commands, confirmation prompts, and the signal-aware
wait for servers."""

from __future__ import annotations

import errno
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import click

from rcf.trust.errors import ConfigError
from rcf.trust.join_token import WILDCARD_HOSTS, split_address

hub_dir_option = click.option(
    "--hub-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="rcf-hub",
    show_default=True,
    envvar="RCF_HUB_DIR",
    help="The hub's folder (env RCF_HUB_DIR).",
)
node_dir_option = click.option(
    "--node-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="rcf-node",
    show_default=True,
    envvar="RCF_NODE_DIR",
    help="The node's folder (env RCF_NODE_DIR).",
)
yes_option = click.option(
    "--yes", "-y", "yes", is_flag=True, help="Do it without asking for confirmation."
)
local_option = click.option(
    "--local",
    is_flag=True,
    help="Allow loopback and wildcard addresses: a network on this one machine.",
)


class MemberIdType(click.ParamType):  # type: ignore[type-arg]
    """A member id as typed on the command line: 'th' and 'TH' are the same member."""

    name = "MEMBER"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return str(value).strip().upper()


MEMBER_ID = MemberIdType()


def confirm(question: str, *, yes: bool) -> None:
    """Ask before an irreversible change; without a terminal, --yes is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError(f"{question} Give --yes to confirm (there is no terminal to ask).")
    if not click.confirm(question, default=False, err=True):
        raise ConfigError("Not confirmed; nothing was changed.", reason="not_confirmed")


def check_can_listen(address: str, *, what: str) -> None:
    """Fail with one sentence, before the server starts, if address cannot be bound.

    gRPC reports a busy port or a foreign address only as 'Failed to bind'; a plain
    socket says which it is. The socket is closed at once, so the server binds next.
    """
    host, port = split_address(address, what=f"{what} listen address")
    bind_host = "" if host in WILDCARD_HOSTS else host
    try:
        infos = socket.getaddrinfo(bind_host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)  # fmt: skip
    except socket.gaierror as exc:
        raise ConfigError(
            f"Cannot listen on {address} ({what}): '{host}' is not an address of this host."
        ) from exc
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"Cannot listen on {address} ({what}): port {port} is already in use "
                    "(is another server running?)."
                ) from exc
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(
                    f"Cannot listen on {address} ({what}): {host} is not an address of this host."
                ) from exc
            if exc.errno == errno.EACCES:
                raise ConfigError(
                    f"Cannot listen on {address} ({what}): port {port} needs privileges; "
                    "use a port above 1023."
                ) from exc
            raise ConfigError(f"Cannot listen on {address} ({what}): {exc.strerror}.") from exc


class StopSignal:
    """SIGINT and SIGTERM handlers, installed before a server starts so that a
    signal sent as soon as it says "ready" still stops it cleanly."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self.received = ""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.received = self.received or signal.Signals(signum).name
        self._stop.set()

    def wait(self) -> str:
        """Block until a signal came; returns its name."""
        while not self._stop.wait(0.5):
            pass
        return self.received


def wait_for_signal() -> str:
    """Block until SIGINT or SIGTERM, so servers stop cleanly either way; returns its name."""
    return StopSignal().wait()
