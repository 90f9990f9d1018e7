"""Errors about identifiers: they name the field and the rule broken, never the value."""

from __future__ import annotations

from rcf.trust.errors import RcfError


class InvalidIdentifier(RcfError):
    """A name, date of birth, document number or MRZ cannot be used for matching.

    ``field`` names the part (``name``, ``date_of_birth``, ``document_number``, an
    MRZ field …) and ``reason`` the rule; the message never carries the value.
    """

    default_reason = "invalid_identifier"
    default_status = "INVALID_ARGUMENT"

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message, reason=rule)
        self.field = field
        self.rule = rule


class MrzError(InvalidIdentifier):
    """A machine-readable zone is malformed or one of its check digits is wrong."""

    default_reason = "bad_mrz"
