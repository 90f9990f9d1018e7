"""gRPC mutual-TLS credentials and the peer identity a server sees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from rcf.trust import pki
from rcf.trust.errors import ConfigError


@dataclass(frozen=True)
class TlsMaterial:
    """One party's TLS key and certificate, and the network CA it trusts."""

    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes

    @classmethod
    def load(cls, *, key: Path, cert: Path, ca: Path) -> TlsMaterial:
        try:
            return cls(key.read_bytes(), cert.read_bytes(), ca.read_bytes())
        except OSError as exc:
            raise ConfigError(f"Cannot read TLS material {exc.filename}: {exc.strerror}.") from exc

    def server_credentials(self, *, require_client_auth: bool = True) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.ca_pem,
            require_client_auth=require_client_auth,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.key_pem,
            certificate_chain=self.cert_pem,
        )

    @property
    def fingerprint(self) -> str:
        return pki.fingerprint(self.cert_pem)


def channel_options(*, server_name: str, max_message_bytes: int) -> list[tuple[str, object]]:
    """Options that pin the server's certificate name and cap message size."""
    return [
        ("grpc.ssl_target_name_override", server_name),
        ("grpc.default_authority", server_name),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Peers and the hub come back after outages; don't wait minutes to notice.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 5000),
    ]


def secure_channel(
    *, target: str, tls: TlsMaterial, server_name: str, max_message_bytes: int
) -> grpc.Channel:
    """A mutual-TLS channel to target that accepts only server_name's certificate."""
    return grpc.secure_channel(
        target,
        tls.channel_credentials(),
        options=channel_options(server_name=server_name, max_message_bytes=max_message_bytes),
    )


def peer_certificate_pem(context: grpc.ServicerContext) -> bytes | None:
    """The verified client certificate of the current call, if it presented one."""
    values = context.auth_context().get("x509_pem_cert")
    if not values:
        return None
    return bytes(next(iter(values)))
