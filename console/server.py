"""Serving the console over HTTPS (uvicorn) on the address the operator chose.

Without a certificate of its own the console makes a self-signed one for its
address, kept in its folder (0600); an agency puts its own reverse proxy and
certificate in front for anything beyond loopback.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rcf.console.accounts import AccountStore
from rcf.console.app import Console, create_app
from rcf.console.node_api import NodeApi
from rcf.console.sessions import Sessions
from rcf.trust.errors import ConfigError
from rcf.trust.files import private_dir, write_private
from rcf.trust.join_token import split_address

DEFAULT_LISTEN = "127.0.0.1:8443"


@dataclass(frozen=True)
class ConsoleLayout:
    """The console's own folder: accounts, its TLS certificate, its runtime file."""

    root: Path

    @property
    def cert(self) -> Path:
        return self.root / "console-cert.pem"

    @property
    def key(self) -> Path:
        return self.root / "console-key.pem"

    @property
    def runtime(self) -> Path:
        return self.root / "console.json"

    def accounts(self) -> AccountStore:
        return AccountStore(self.root)


def self_signed(layout: ConsoleLayout, host: str) -> None:
    """A certificate for host (made once; remade if the host changes)."""
    if layout.cert.exists() and layout.key.exists():
        cert = x509.load_pem_x509_certificate(layout.cert.read_bytes())
        if cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == host:
            return
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(
        layout.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_private(layout.cert, cert.public_bytes(serialization.Encoding.PEM))


class ConsoleServer:
    """One console: bound at construction, served by start() (a thread) or run()."""

    def __init__(
        self,
        console_dir: Path,
        node_dir: Path,
        *,
        listen: str = DEFAULT_LISTEN,
        sessions: Sessions | None = None,
        title: str = "",
    ) -> None:
        self.layout = ConsoleLayout(private_dir(console_dir))
        host, port = split_address(listen)
        self_signed(self.layout, host)
        node = NodeApi(node_dir)
        self.console = Console(
            node=node,
            accounts=self.layout.accounts(),
            sessions=sessions or Sessions(),
            title=title or "rcf console",
        )
        self.app = create_app(self.console)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, int(port)))
        except OSError as exc:
            self._sock.close()
            raise ConfigError(f"Cannot listen on {listen}: {exc.strerror}.") from None
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self.url = f"https://{host if family == socket.AF_INET else f'[{host}]'}:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                ssl_certfile=str(self.layout.cert),
                ssl_keyfile=str(self.layout.key),
                # Paths never carry identifiers, but nothing about a request is logged here:
                # the node's audit log records what users did.
                access_log=False,
                log_level="warning",
                server_header=False,
                lifespan="off",
                # Live feeds (server-sent events) stay open: do not wait for them on stop.
                timeout_graceful_shutdown=2,
            )
        )
        self._thread: threading.Thread | None = None

    def _announce(self) -> None:
        write_private(self.layout.runtime, json.dumps({"url": self.url, "pid": os.getpid()}) + "\n")

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM (uvicorn's handlers), in this thread."""
        self._announce()
        # uvicorn handles SIGINT/SIGTERM while serving, then raises the signal again for
        # the handler that was there before: that one does nothing, so a stop exits 0.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: None)
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self.layout.runtime.unlink(missing_ok=True)

    def start(self) -> None:
        """Serve in a background thread (tests, the demo)."""
        self._thread = threading.Thread(
            target=lambda: self._server.run(sockets=[self._sock]), name="console", daemon=True
        )
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise ConfigError("The console did not start.")
            threading.Event().wait(0.02)
        self._announce()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()
        self.layout.runtime.unlink(missing_ok=True)
