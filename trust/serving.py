"""What every gRPC server here shares: health, reflection, size caps, error mapping."""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Callable, Iterable
from concurrent import futures
from typing import TypeVar

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from rcf.trust.errors import ConfigError, RcfError
from rcf.trust.status import abort_with

log = structlog.get_logger("rcf.server")


def internal_error() -> RcfError:
    """What a caller sees of an unexpected failure: nothing of its cause."""
    return RcfError(
        "The server failed to handle the request; its operator has the details.",
        reason="internal",
        status="INTERNAL",
    )


def build_server(
    *, max_workers: int, max_message_bytes: int, service_names: Iterable[str]
) -> tuple[grpc.Server, health.HealthServicer]:
    """A thread-pool server with health checking and reflection registered."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    for name in [*service_names, ""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer


def bind(server: grpc.Server, address: str, credentials: grpc.ServerCredentials) -> str:
    """Bind address (port 0 picks a free one) and return the actual host:port."""
    port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    host = address.rsplit(":", 1)[0]
    return f"{host}:{port}"


Servicer = TypeVar("Servicer")
Request = TypeVar("Request")
Response = TypeVar("Response")


def refusals_as_status(
    method: Callable[[Servicer, Request, grpc.ServicerContext], Response],
) -> Callable[[Servicer, Request, grpc.ServicerContext], Response]:
    """Servicer methods raise RcfError; the call ends with the status the error names.

    Anything else is a bug or a fault (disk full): it is logged here with its
    traceback and the caller gets INTERNAL with a fixed sentence, never the text.
    """

    @functools.wraps(method)
    def wrapper(self: Servicer, request: Request, context: grpc.ServicerContext) -> Response:
        try:
            return method(self, request, context)
        except RcfError as exc:
            abort_with(context, exc)
        except Exception as exc:
            log.exception("internal_error", method=method.__name__, error=type(exc).__name__)
            abort_with(context, internal_error())

    return wrapper


class InstanceLock:
    """An exclusive lock on a folder's lock file for as long as a server runs there.

    Two servers on one folder would share its SQLite files and overwrite each
    other's runtime file; the second one is refused. The OS drops the lock when
    the process dies, so a crash leaves nothing stale behind.
    """

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip()
            os.close(self._fd)
            raise ConfigError(
                f"{what} is already running from this folder"
                + (f" (pid {holder})." if holder else ".")
            ) from exc
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1
