"""A node's identity-check secrets, each a private file (0600) in the node folder.

- ``oprf.key``: the OPRF secret scalar (hex), under which the token index is
  built and round 1 is evaluated. Created at first use; replaced by
  ``rcf node rotate-oprf-key`` (which re-indexes in the same step).
- ``reference.key``: 32 random bytes (hex) for opaque hit references:
  HMAC-SHA-256(reference.key, dataset ":" record id), first 16 bytes, hex. It does
  not change when the OPRF key rotates, so a reference stays the same.

Both live beside the signing key and go into backups with the folder.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from rcf.trust.errors import ConfigError
from rcf.trust.files import write_private
from rcf.trust.oprf import OprfError, OprfKey

OPRF_KEY_FILE = "oprf.key"
REFERENCE_KEY_FILE = "reference.key"
REFERENCE_BYTES = 16


def oprf_key_path(root: Path) -> Path:
    return root / OPRF_KEY_FILE


def read_oprf_key(root: Path) -> OprfKey | None:
    """The node's OPRF key, or None when it has none yet."""
    path = oprf_key_path(root)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from exc
    try:
        return OprfKey.from_secret(bytes.fromhex(text))
    except (ValueError, OprfError) as exc:
        raise ConfigError(f"{path} does not hold a valid OPRF key.") from exc


def write_oprf_key(root: Path, key: OprfKey) -> None:
    """Replace the node's OPRF key file atomically (0600)."""
    write_private(oprf_key_path(root), key.secret.hex() + "\n")


def load_or_create_oprf_key(root: Path) -> OprfKey:
    """The node's OPRF key, created (random, RFC 9497 section 3.2) at first use."""
    key = read_oprf_key(root)
    if key is None:
        key = OprfKey.generate()
        write_oprf_key(root, key)
    return key


def load_or_create_reference_key(root: Path) -> bytes:
    """The secret behind opaque hit references, created at first use."""
    path = root / REFERENCE_KEY_FILE
    try:
        raw = bytes.fromhex(path.read_text().strip())
        if len(raw) == 32:
            return raw
        raise ConfigError(f"{path} does not hold a 32-byte reference key.")
    except FileNotFoundError:
        raw = secrets.token_bytes(32)
        write_private(path, raw.hex() + "\n")
        return raw
    except ValueError as exc:
        raise ConfigError(f"{path} does not hold a 32-byte reference key.") from exc


def hit_reference(secret: bytes, dataset: str, record_id: str) -> str:
    """The opaque reference of one record: stable, unlinkable to the record without secret."""
    mac = hmac.new(secret, f"{dataset}:{record_id}".encode(), hashlib.sha256).digest()
    return mac[:REFERENCE_BYTES].hex()
