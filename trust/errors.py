"""The exception hierarchy every layer shares.

Each error carries a short machine-readable ``reason`` code (what audit records
and refusals carry) and a ``status`` naming the gRPC status code that means the
same thing, so adapters translate without guessing. ``str(error)`` is one clear
sentence for a person.
"""

from __future__ import annotations


class RcfError(Exception):
    """Base of every error this project raises on purpose."""

    default_reason = "error"
    default_status = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        status: str | None = None,
        audit_reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.status = status or self.default_status
        # The detailed code this side's audit log keeps when ``reason`` (what the
        # other side learns) is deliberately vaguer, e.g. for policy refusals.
        self.audit_reason = audit_reason or self.reason
        # Machine-readable context for the other side (ErrorInfo metadata); never
        # anything a requester sent.
        self.metadata = dict(metadata or {})

    def __str__(self) -> str:
        return self.message


class ConfigError(RcfError):
    """A file, folder or setting given by the user is missing or malformed."""

    default_reason = "bad_config"
    default_status = "FAILED_PRECONDITION"


class VerificationError(RcfError):
    """A signature, certificate or signed document did not verify."""

    default_reason = "bad_signature"
    default_status = "UNAUTHENTICATED"


class DirectoryError(RcfError):
    """The signed directory is unusable (rolled back, expired, unsigned)."""

    default_reason = "directory_invalid"
    default_status = "UNAVAILABLE"


class RequestRejected(RcfError):
    """A peer's request was refused; reason says why in one code."""

    default_reason = "rejected"
    default_status = "PERMISSION_DENIED"


class RegistryError(RcfError):
    """A hub registry operation cannot be done (unknown member, bad token …)."""

    default_reason = "registry"
    default_status = "FAILED_PRECONDITION"


class PeerError(RcfError):
    """Calling a peer failed: unreachable, refused, or answered badly."""

    default_reason = "peer_error"
    default_status = "UNAVAILABLE"
