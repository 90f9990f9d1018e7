"""The `rcf` command line. Thin: parses, calls a client or a module, renders."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys

import click
import structlog

from rcf.cli import (
    alert_cmds,
    audit_cmds,
    bench_cmds,
    console_cmds,
    data_cmds,
    hub_cmds,
    identity_cmds,
    node_cmds,
    policy_cmds,
    query_cmds,
    report_cmds,
)
from rcf.devnet import demo as demo_cmds


def configure_logging() -> None:
    """Structured JSON logs on stderr; level from RCF_LOG_LEVEL (default warning)."""
    level = getattr(logging, os.environ.get("RCF_LOG_LEVEL", "WARNING").upper(), logging.WARNING)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(importlib.metadata.version("rcf-exchange"), prog_name="rcf")
def rcf() -> None:
    """rcf-exchange: answer each other's questions without handing over data."""
    configure_logging()


for module in (
    alert_cmds,
    hub_cmds,
    node_cmds,
    audit_cmds,
    data_cmds,
    demo_cmds,
    bench_cmds,
    console_cmds,
    policy_cmds,
    query_cmds,
    identity_cmds,
    report_cmds,
):
    module.register(rcf)


def main() -> None:
    rcf(prog_name="rcf")
