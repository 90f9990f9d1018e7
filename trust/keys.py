"""Ed25519 signing keys (PyNaCl) with stable key ids, and their key files."""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing

from rcf.trust.errors import ConfigError, VerificationError

KEY_FILE_PREFIX = "rcf-ed25519-seed:"
PUBLIC_KEY_FILE_PREFIX = "rcf-ed25519-public:"


def key_id_for(public_key: bytes) -> str:
    """Stable id of a public key: a prefix of its SHA-256, never reused across keys."""
    if len(public_key) != 32:
        raise VerificationError("An Ed25519 public key must be 32 bytes.", reason="bad_key")
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:32]


def verify_signature(*, public_key: bytes, message: bytes, signature: bytes) -> None:
    """Verify an Ed25519 signature; raise VerificationError if it does not hold."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError) as exc:
        raise VerificationError("The signature does not verify.") from exc


def public_key_text(public_key: bytes) -> str:
    """The contents of a public key file for public_key."""
    return PUBLIC_KEY_FILE_PREFIX + public_key.hex() + "\n"


def load_public_key(path: Path) -> bytes:
    """Read a public key file written from public_key_text."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"Cannot read public key {path}: {exc.strerror}.") from exc
    try:
        if not text.startswith(PUBLIC_KEY_FILE_PREFIX):
            raise ValueError
        key = bytes.fromhex(text[len(PUBLIC_KEY_FILE_PREFIX) :])
        key_id_for(key)
    except (ValueError, VerificationError) as exc:
        raise ConfigError(f"{path} is not an rcf Ed25519 public key file.") from exc
    return key


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key with its public half and key id."""

    _key: nacl.signing.SigningKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        if len(seed) != 32:
            raise ConfigError("An Ed25519 seed must be 32 bytes.")
        return cls(nacl.signing.SigningKey(seed))

    @functools.cached_property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    @functools.cached_property
    def key_id(self) -> str:
        return key_id_for(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Detached signature over message."""
        return bytes(self._key.sign(message).signature)

    def save(self, path: Path) -> None:
        """Write the seed to a new file readable by the owner only."""
        seed = bytes(self._key)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(KEY_FILE_PREFIX + seed.hex() + "\n")

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"Cannot read signing key {path}: {exc.strerror}.") from exc
        if not text.startswith(KEY_FILE_PREFIX):
            raise ConfigError(f"{path} is not an rcf signing key file.")
        try:
            seed = bytes.fromhex(text[len(KEY_FILE_PREFIX) :])
        except ValueError as exc:
            raise ConfigError(f"{path} holds a malformed signing key.") from exc
        return cls.from_seed(seed)
