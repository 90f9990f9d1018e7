"""Where a hub keeps its files, and loading them with clear errors."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from rcf.trust.errors import ConfigError
from rcf.trust.files import write_private
from rcf.trust.keys import SigningKey, load_public_key, public_key_text
from rcf.trust.tls import TlsMaterial

DEFAULT_DIRECTORY_TTL_S = 7 * 24 * 3600
DEFAULT_LISTEN = "0.0.0.0:7443"
DEFAULT_ENROLL_LISTEN = "0.0.0.0:7444"
DEFAULT_AUDIT_QUORUM = 1


@dataclass(frozen=True)
class HubLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "hub.toml"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def tls_key(self) -> Path:
        return self.root / "hub-tls.key"

    @property
    def tls_cert(self) -> Path:
        return self.root / "hub-tls.pem"

    @property
    def signing_key(self) -> Path:
        return self.root / "hub-signing.key"

    @property
    def public_key(self) -> Path:
        """The signing key's public half: what commands that only verify read."""
        return self.root / "hub-signing.pub"

    @property
    def registry_db(self) -> Path:
        return self.root / "registry.db"

    @property
    def audit_log_db(self) -> Path:
        """The regional audit log: every member's shipped records in one Merkle log."""
        return self.root / "audit-log.db"

    @property
    def runtime(self) -> Path:
        """Written by `rcf hub serve`: the addresses it listens on."""
        return self.root / "hub-runtime.json"

    def require(self) -> None:
        if not self.config.exists():
            where = "There is no hub folder at" if not self.root.exists() else "Not a hub folder:"
            raise ConfigError(
                f"{where} {self.root}: give --hub-dir DIR or set RCF_HUB_DIR to the folder "
                "'rcf hub init' created."
            )

    def load_config(self) -> HubConfig:
        self.require()
        try:
            data = tomllib.loads(self.config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"Cannot read {self.config}: {exc}.") from exc
        try:
            return HubConfig(
                network=str(data["network"]),
                directory_ttl_s=int(data.get("directory_ttl_s", DEFAULT_DIRECTORY_TTL_S)),
                listen=str(data.get("listen", DEFAULT_LISTEN)),
                enroll_listen=str(data.get("enroll_listen", DEFAULT_ENROLL_LISTEN)),
                public_address=str(data.get("public_address", "")),
                enroll_public_address=str(data.get("enroll_public_address", "")),
                audit_quorum=int(data.get("audit_quorum", DEFAULT_AUDIT_QUORUM)),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"{self.config} is missing or has a bad value: {exc}.") from exc

    def load_signing_key(self) -> SigningKey:
        return SigningKey.load(self.signing_key)

    def load_public_key(self) -> bytes:
        """The hub's Ed25519 public key, read without touching the private key file.

        A hub folder made before the public key file existed has only the private key;
        the public half is then derived from it once and written beside it."""
        if not self.public_key.exists() and self.signing_key.exists():
            write_private(self.public_key, public_key_text(self.load_signing_key().public_key))
        return load_public_key(self.public_key)

    def load_tls(self) -> TlsMaterial:
        return TlsMaterial.load(key=self.tls_key, cert=self.tls_cert, ca=self.ca_cert)

    def read_runtime(self) -> dict[str, str]:
        try:
            data = json.loads(self.runtime.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"The hub in {self.root} is not running (no {self.runtime.name}); "
                "start it with 'rcf hub serve' or give --hub-address.",
                reason="not_running",
                status="UNAVAILABLE",
            ) from exc
        return {str(k): str(v) for k, v in data.items()}


@dataclass(frozen=True)
class HubConfig:
    """hub.toml. Listen addresses are where `rcf hub serve` binds; public addresses
    are what nodes dial (join tokens and enrolment responses carry them)."""

    network: str
    directory_ttl_s: int
    listen: str = DEFAULT_LISTEN
    enroll_listen: str = DEFAULT_ENROLL_LISTEN
    public_address: str = ""
    enroll_public_address: str = ""
    # Witness cosignatures that make an audit-log checkpoint final.
    audit_quorum: int = 1
