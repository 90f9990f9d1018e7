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

from trust.errors import ConfigError

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
