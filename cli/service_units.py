"""`rcf hub service-unit` and `rcf node service-unit`: the systemd units shipped in the package.

The units are package data (rcf/deploy/systemd/), so an operator who installed the wheel
has them without a checkout. The unit files name the program as the checkout install puts
it (/opt/rcf-exchange/.venv/bin/rcf); the command writes the rcf that is running instead,
so the unit starts the same installation the operator just used.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import click

from rcf.cli.errors import guarded
from rcf.trust.errors import ConfigError

# What the shipped unit files say ExecStart runs.
_SHIPPED_PROGRAM = "/opt/rcf-exchange/.venv/bin/rcf"


def unit_text(file_name: str, program: str) -> str:
    """The shipped unit file_name, its ExecStart running program."""
    text = resources.files("rcf").joinpath("deploy", "systemd", file_name).read_text("utf-8")
    return text.replace(f"ExecStart={_SHIPPED_PROGRAM} ", f"ExecStart={program} ")


def running_program() -> str:
    """The absolute path of the rcf executable running now (the console script)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "rcf":
        return str(argv0.absolute())
    found = shutil.which("rcf")
    return str(Path(found).absolute()) if found else _SHIPPED_PROGRAM


def write_unit(path: Path, text: str) -> None:
    """Write a unit file as systemd expects it: 0644, readable by the service manager."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(path, 0o644)
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {exc.strerror}.") from exc


def service_unit_command(group: click.Group, file_name: str, what: str) -> Callable[..., Any]:
    """Add `service-unit` to group: print (or --write) the shipped unit file_name."""

    @group.command("service-unit", help=f"Print the systemd unit that runs {what} ({file_name}).")
    @click.option(
        "--write",
        "write_path",
        type=click.Path(path_type=Path),
        help=f"Write the unit to this file (e.g. /etc/systemd/system/{file_name}) "
        "instead of printing it.",
    )
    @click.option(
        "--rcf",
        "program",
        help="The rcf executable the unit runs (default: this one).",
    )
    @guarded
    def service_unit(write_path: Path | None, program: str | None) -> None:
        text = unit_text(file_name, program or running_program())
        if write_path is None:
            click.echo(text, nl=False)
            return
        if write_path.is_dir():
            write_path = write_path / file_name
        write_unit(write_path, text)
        click.echo(f"wrote {write_path}; run 'systemctl daemon-reload'", err=True)

    return service_unit
