"""Options shared by several commands, and the signal-aware wait for servers."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

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


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM, so servers stop cleanly either way."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
