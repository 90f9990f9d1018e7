"""Join tokens: what a hub admin hands a node operator to enrol over the wire.

A token carries the one-time secret, the member it is for, the hub's addresses,
the network CA certificate and the hub's signing key, so the node can verify
the hub from the first byte. Format: ``rcfjoin1.`` + base64url(JSON).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from rcf.trust.errors import ConfigError

PREFIX = "rcfjoin1."


@dataclass(frozen=True)
class JoinToken:
    secret: str
    member_id: str
    hub_address: str
    enroll_address: str
    ca_pem: bytes
    hub_public_key: bytes

    def encode(self) -> str:
        body = {
            "secret": self.secret,
            "member": self.member_id,
            "hub": self.hub_address,
            "enroll": self.enroll_address,
            "ca": self.ca_pem.decode(),
            "hub_key": self.hub_public_key.hex(),
        }
        raw = json.dumps(body, separators=(",", ":")).encode()
        return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> JoinToken:
        text = text.strip()
        if not text.startswith(PREFIX):
            raise ConfigError("That is not an rcf join token (it should start with 'rcfjoin1.').")
        body = text[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            data = json.loads(raw)
            return cls(
                secret=str(data["secret"]),
                member_id=str(data["member"]),
                hub_address=str(data["hub"]),
                enroll_address=str(data["enroll"]),
                ca_pem=str(data["ca"]).encode(),
                hub_public_key=bytes.fromhex(data["hub_key"]),
            )
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                "The join token is damaged; ask the hub admin for a new one."
            ) from exc


# -- public addresses ---------------------------------------------------------------
#
# A server listens on one address (often a wildcard such as 0.0.0.0:7443) and is
# reached at another: the name or IP, and port, other hosts dial. Tokens, enrolment
# responses and the directory carry the public one.

# Recognised in order to refuse them as public addresses, never to bind them.
WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]", "*"}  # noqa: S104


def split_address(address: str, *, what: str = "address") -> tuple[str, int]:
    """('host', port) from 'host:port' or '[v6]:port'; one sentence if malformed."""
    host, sep, port_text = address.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(
            f"The {what} '{address}' is not HOST:PORT (for example hub.example.org:7443)."
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def unreachable_kind(address: str) -> str:
    """'a wildcard address' or 'a loopback address' if no other host can dial it, else ''."""
    host, _ = split_address(address)
    if host in WILDCARD_HOSTS:
        return "a wildcard address"
    if host == "localhost" or host.startswith("127.") or host in ("::1", "[::1]"):
        return "a loopback address"
    return ""


def with_default_port(address: str, port: int, *, what: str) -> str:
    """'host' → 'host:port'; 'host:p' stays; checked either way."""
    text = address.strip()
    if ":" not in text or (text.startswith("[") and text.endswith("]")):
        text = join_address(text.strip("[]"), port)
    host, p = split_address(text, what=what)
    if not host:
        raise ConfigError(f"The {what} '{address}' has no host name or IP.")
    if p == 0:
        raise ConfigError(f"The {what} '{address}' needs a fixed port, not 0.")
    return join_address(host, p)


def check_public(address: str, *, what: str, local: bool, fix: str) -> str:
    """Refuse a public address that other hosts cannot reach, unless local (one machine)."""
    kind = unreachable_kind(address)
    if kind and not local:
        raise ConfigError(
            f"The {what} {address} is {kind} that no other host can reach: {fix}, "
            "or give --local for a network on this one machine."
        )
    return address


def check_token_addresses(token: JoinToken, *, local: bool) -> None:
    """A token must send a node to addresses it can reach from its own host."""
    for address, what in (
        (token.hub_address, "hub address in this join token"),
        (token.enroll_address, "enrolment address in this join token"),
    ):
        check_public(
            address,
            what=what,
            local=local,
            fix="ask the hub admin for a token made with the hub's public address",
        )
