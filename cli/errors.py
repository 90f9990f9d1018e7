"""How the CLI turns failures into one sentence and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import click
import grpc

from trust.errors import RcfError
from trust.status import read_refusal

P = ParamSpec("P")
T = TypeVar("T")

EXIT_ERROR = 1
EXIT_UNAVAILABLE = 3


def describe_rpc_error(exc: grpc.RpcError) -> str:
    refusal = read_refusal(exc)
    if refusal.code == grpc.StatusCode.UNAVAILABLE and not refusal.reason:
        return f"The node is not reachable ({refusal.message})."
    reason = f": {refusal.reason}" if refusal.reason else ""
    return f"{refusal.message} [{refusal.code.name.lower()}{reason}]"


def run_guarded(fn: Callable[[], T]) -> T:
    """Run fn; print one sentence and exit non-zero on any expected failure."""
    try:
        return fn()
    except RcfError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE if exc.status == "UNAVAILABLE" else EXIT_ERROR)
    except grpc.RpcError as exc:
        click.echo(f"error: {describe_rpc_error(exc)}", err=True)
        sys.exit(EXIT_ERROR)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(f"error: {exc.strerror or exc}{where}.", err=True)
        sys.exit(EXIT_ERROR)


def guarded(fn: Callable[P, T]) -> Callable[P, T]:
    """Decorator form of run_guarded for click commands."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_guarded(lambda: fn(*args, **kwargs))

    return wrapper
