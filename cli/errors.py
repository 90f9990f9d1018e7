"""How the CLI turns failures into one sentence and an exit code.

Exit codes (the README's table; every command follows it):

    0    done
    1    failed: bad input or file, refused, a check found a problem, not confirmed
    2    usage: unknown command or option, missing argument (Click's own), malformed option value
    3    unavailable: the hub, this node or a peer is not running or not reachable,
         or the directory has expired; the same command may work later
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import click
import grpc

from rcf.trust.errors import RcfError
from rcf.trust.status import read_refusal, transport_failure

P = ParamSpec("P")
T = TypeVar("T")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_ERROR: "failed: bad input or file, refused, a check found a problem, not confirmed",
    EXIT_USAGE: "usage: unknown command or option, missing argument, malformed option value",
    EXIT_UNAVAILABLE: "unavailable: the hub, this node or a peer is not running or not "
    "reachable, or the directory has expired; the same command may work later",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

# Status codes that mean "try again later", whoever reports them.
UNAVAILABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


# An option value of the wrong form (a month that is not YYYY-MM): usage, like Click's own.
BAD_OPTION = "bad_option"


def exit_code_for(exc: RcfError) -> int:
    """The README's class for one of our errors."""
    if exc.reason == BAD_OPTION:
        return EXIT_USAGE
    return EXIT_UNAVAILABLE if exc.status == "UNAVAILABLE" else EXIT_ERROR


def exit_code_for_rpc(exc: grpc.RpcError) -> int:
    if isinstance(exc, grpc.Call) and exc.code() in UNAVAILABLE_CODES:
        return EXIT_UNAVAILABLE
    return EXIT_ERROR


def describe_rpc_error(exc: grpc.RpcError) -> str:
    refusal = read_refusal(exc)
    if refusal.code == grpc.StatusCode.UNAVAILABLE and not refusal.reason:
        return f"The node is not reachable ({transport_failure(refusal.message)})."
    reason = f": {refusal.reason}" if refusal.reason else ""
    return f"{refusal.message} [{refusal.code.name.lower()}{reason}]"


def run_guarded(fn: Callable[[], T]) -> T:
    """Run fn; print one sentence and exit non-zero on any expected failure."""
    try:
        return fn()
    except RcfError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exit_code_for(exc))
    except grpc.RpcError as exc:
        click.echo(f"error: {describe_rpc_error(exc)}", err=True)
        sys.exit(exit_code_for_rpc(exc))
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
