"""The document-fraud alert: a typed value, its bounds, its field sets and matching.

An alert version is signed by the raising member (``trust.signed``; payload
type ``rcf.v1.Alert``). The raiser's policy decides which *fields* each
recipient gets; since a signature covers exact bytes, the raiser signs one
copy per distinct field set (``redact``), and each copy says which fields it
carries (``disclosed_fields``). A relay forwards such a copy unchanged; it
cannot remove or alter a field without breaking the raiser's signature.

Errors name the field and the rule broken, never the value (a document
number identifies a person).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import uuid
from dataclasses import dataclass, fields, replace
from typing import Any

from rcf.node.policy.model import (
    ALERT_CATEGORIES,
    ALERT_FIELDS,
    ALERT_FRAUD_TYPES,
    ALERT_SEVERITIES,
)
from rcf.protos.v1 import alerts_pb2
from rcf.trust.dictionary import DataDictionary
from rcf.trust.errors import RcfError
from rcf.trust.pki import MEMBER_ID_RE

ALERT_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NUMBER_RE = re.compile(r"^[A-Z0-9]{1,24}$")
CODE_RE = re.compile(r"^[A-Za-z0-9_]{1,48}$")
DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
NCP_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MAX_TEXT_CHARS = 1000  # modus_operandi, security_features
MAX_CAVEAT_CHARS = 200
MAX_VERSION = 10_000
# Unicode general categories free text may use: letters, marks, numbers,
# punctuation, symbols and the space separator; plus line feed. No controls,
# no format characters (bidirectional overrides could disguise text), no
# private-use or unassigned code points.
TEXT_CATEGORIES = frozenset({"L", "M", "N", "P", "S"})
DEFAULT_CAVEAT = (
    "Law-enforcement use only. Do not pass on beyond border and document-examination "
    "authorities without the raising state's consent."
)
DEFAULT_SEVERITY = "medium"

# Policy field name -> the Alert attributes it discloses.
FIELD_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "issuing_state": ("issuing_state",),
    "document_type": ("document_type",),
    "document_number": ("document_number", "number_range_first", "number_range_last"),
    "series": ("series",),
    "modus_operandi": ("modus_operandi",),
    "security_features": ("security_features",),
    "detection_place": ("detection_place",),
    "detection_date": ("detection_date",),
    "valid_until": ("valid_until",),
    "ncp": ("ncp_id",),
}
assert set(FIELD_ATTRIBUTES) == set(ALERT_FIELDS)
# Attributes an update may leave empty again (``clear``).
CLEARABLE = (
    "document_number",
    "number_range_first",
    "number_range_last",
    "series",
    "modus_operandi",
    "security_features",
    "detection_place",
    "detection_date",
    "valid_until",
    "ncp_id",
)
# What an update may not change: an alert about another document is another alert.
IMMUTABLE = ("category", "issuing_state", "document_type")


class AlertError(RcfError):
    """An alert is out of bounds or may not be applied; names the field, never its value."""

    default_reason = "invalid_alert"
    default_status = "INVALID_ARGUMENT"


@dataclass(frozen=True)
class Alert:
    """One version of an alert, whole (the raiser's copy) or redacted (a recipient's)."""

    alert_id: str
    version: int
    raised_by: str
    issued_at_ms: int
    category: str
    severity: str = DEFAULT_SEVERITY
    handling_caveat: str = DEFAULT_CAVEAT
    withdrawn: bool = False
    disclosed_fields: tuple[str, ...] = ALERT_FIELDS
    issuing_state: str = ""
    document_type: str = ""
    document_number: str = ""
    number_range_first: str = ""
    number_range_last: str = ""
    series: str = ""
    modus_operandi: str = ""
    security_features: str = ""
    detection_place: str = ""
    detection_date: str = ""
    valid_until: str = ""
    ncp_id: str = ""

    def __repr__(self) -> str:  # numbers identify people: keep them out of logs
        return f"Alert({self.alert_id} v{self.version} {self.raised_by} {self.category})"

    @property
    def kind(self) -> str:
        """'fraud' for a fraud type, 'status' for a document status."""
        return "fraud" if self.category in ALERT_FRAUD_TYPES else "status"

    def expired(self, today: dt.date) -> bool:
        return bool(self.valid_until) and dt.date.fromisoformat(self.valid_until) < today

    def active(self, today: dt.date) -> bool:
        return not self.withdrawn and not self.expired(today)

    def to_proto(self) -> alerts_pb2.Alert:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["disclosed_fields"] = list(self.disclosed_fields)
        return alerts_pb2.Alert(**values)

    @classmethod
    def from_proto(cls, msg: alerts_pb2.Alert) -> Alert:
        values = {f.name: getattr(msg, f.name) for f in fields(cls)}
        values["disclosed_fields"] = tuple(msg.disclosed_fields)
        values["version"] = int(msg.version)
        return cls(**values)


def new_alert_id() -> str:
    return str(uuid.uuid4())


def normalize_number(text: str) -> str:
    """A document number as alerts store it: upper case, no spaces, dashes or MRZ fillers."""
    return re.sub(r"[\s<\-]", "", text).upper()


def redact(alert: Alert, disclosed: tuple[str, ...]) -> Alert:
    """The copy of alert that carries only the policy fields in disclosed (sorted)."""
    keep = tuple(sorted(set(disclosed) & set(ALERT_FIELDS)))
    cleared: dict[str, Any] = {
        attr: "" for name, attrs in FIELD_ATTRIBUTES.items() if name not in keep for attr in attrs
    }
    return replace(alert, disclosed_fields=keep, **cleared)


def full(alert: Alert) -> Alert:
    return replace(alert, disclosed_fields=tuple(sorted(ALERT_FIELDS)))


# -- bounds ---------------------------------------------------------------------


def _bad(field: str, rule: str, reason: str = "invalid_alert") -> AlertError:
    return AlertError(f"The alert's {field} {rule}.", reason=reason)


def check_text(value: str, field: str, max_chars: int) -> None:
    """Free text: at most max_chars characters of the documented categories."""
    if len(value) > max_chars:
        raise _bad(field, f"is longer than {max_chars} characters", "text_too_long")
    for ch in value:
        if ch not in {"\n", " "} and unicodedata.category(ch)[0] not in TEXT_CATEGORIES:
            raise _bad(
                field,
                "holds a control, format or unassigned character (letters, digits, "
                "punctuation, symbols, spaces and line feeds only)",
                "bad_text",
            )


def check_date(value: str, field: str) -> dt.date | None:
    if not value:
        return None
    if not DATE_RE.match(value):
        raise _bad(field, "is not a date YYYY-MM-DD", "bad_date")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise _bad(field, "is not a date YYYY-MM-DD", "bad_date") from exc


def check_shape(alert: Alert, *, skew_ms: int = 300_000, now_ms: int | None = None) -> None:
    """Bounds every node checks on every alert, sent or received (no dictionary needed)."""
    if not ALERT_ID_RE.match(alert.alert_id):
        raise _bad("id", "is not a UUID in canonical lower-case form")
    if not 1 <= alert.version <= MAX_VERSION:
        raise _bad("version", f"is not between 1 and {MAX_VERSION}")
    if not MEMBER_ID_RE.fullmatch(alert.raised_by):
        raise _bad("raising member", "is not a member id")
    if alert.category not in ALERT_CATEGORIES:
        raise _bad(
            "category",
            f"is not a known fraud type or document status ({', '.join(ALERT_CATEGORIES)})",
            "unknown_fraud_type",
        )
    if alert.severity not in ALERT_SEVERITIES:
        raise _bad("severity", f"is not one of {', '.join(ALERT_SEVERITIES)}", "bad_severity")
    if now_ms is not None and alert.issued_at_ms > now_ms + skew_ms:
        raise _bad("issue time", "is in the future", "alert_from_future")
    if list(alert.disclosed_fields) != sorted(set(alert.disclosed_fields)) or not set(
        alert.disclosed_fields
    ) <= set(ALERT_FIELDS):
        raise _bad("field list", "is not a sorted list of known alert fields")
    for name, attrs in FIELD_ATTRIBUTES.items():
        if name not in alert.disclosed_fields and any(getattr(alert, a) for a in attrs):
            raise _bad(name.replace("_", " "), "is present but not listed as disclosed")
    for code_field in ("issuing_state", "document_type", "detection_place"):
        value = getattr(alert, code_field)
        if value and not CODE_RE.match(value):
            raise _bad(code_field.replace("_", " "), "is not a code")
    for number_field in ("document_number", "number_range_first", "number_range_last", "series"):
        value = getattr(alert, number_field)
        if value and not NUMBER_RE.match(value):
            raise _bad(
                number_field.replace("_", " "),
                "must be 1 to 24 characters A-Z and 0-9",
                "bad_document_number",
            )
    first, last = alert.number_range_first, alert.number_range_last
    if bool(first) != bool(last):
        raise _bad("number range", "needs both its first and its last number")
    if first and (len(first) != len(last) or first > last):
        raise _bad("number range", "must run from a lower to a higher number of the same length")
    check_text(alert.modus_operandi, "modus operandi", MAX_TEXT_CHARS)
    check_text(alert.security_features, "security features", MAX_TEXT_CHARS)
    check_text(alert.handling_caveat, "handling caveat", MAX_CAVEAT_CHARS)
    if not alert.handling_caveat:
        raise _bad("handling caveat", "is empty")
    check_date(alert.detection_date, "detection date")
    check_date(alert.valid_until, "valid-until date")
    if alert.ncp_id and not NCP_RE.match(alert.ncp_id):
        raise _bad("NCP", "is not an NCP id")


def check_new(
    alert: Alert,
    *,
    dictionary: DataDictionary,
    today: dt.date,
    ncp_ids: tuple[str, ...],
) -> None:
    """What the raiser checks before it signs a version: shape, dictionary codes, dates."""
    check_shape(alert)
    fraud = dictionary.dataset("document_fraud_detections")
    if fraud is None:
        raise AlertError("The data dictionary has no document_fraud_detections dataset.")

    def codes(dimension: str) -> tuple[str, ...]:
        dim = fraud.dimension(dimension)
        return dim.codes if dim is not None else ()

    if alert.issuing_state not in codes("issuing_state"):
        raise _bad(
            "issuing state",
            "is not an issuing-state code of the data dictionary (ISO 3166-1 alpha-3)",
            "unknown_issuing_state",
        )
    if alert.document_type not in codes("document_type"):
        raise _bad(
            "document type",
            f"is not one of {', '.join(codes('document_type'))}",
            "unknown_document_type",
        )
    if alert.detection_place and alert.detection_place not in codes("border_crossing_point"):
        raise _bad(
            "detection place",
            "is not a border crossing point of the data dictionary (UN/LOCODE)",
            "unknown_location",
        )
    if not (alert.document_number or alert.number_range_first or alert.series):
        raise _bad(
            "document",
            "needs a document number, a number range or a series",
            "no_document",
        )
    detected = check_date(alert.detection_date, "detection date")
    if detected is not None and detected > today:
        raise _bad("detection date", "is in the future", "bad_date")
    until = check_date(alert.valid_until, "valid-until date")
    if until is not None and until < today and not alert.withdrawn:
        raise _bad("valid-until date", "is in the past", "valid_until_past")
    if alert.ncp_id and alert.ncp_id not in ncp_ids:
        raise _bad("NCP", "is not one of the raising member's NCPs in the directory", "unknown_ncp")


def check_successor(previous: Alert, following: Alert) -> None:
    """An update keeps what identifies the document and moves the version on by one."""
    if following.alert_id != previous.alert_id or following.raised_by != previous.raised_by:
        raise AlertError("An update must keep the alert id and raiser.", reason="not_raiser")
    if following.version != previous.version + 1:
        raise _bad("version", "must follow the previous version by one")
    if previous.withdrawn:
        raise AlertError("The alert is withdrawn; raise a new one.", reason="alert_withdrawn")
    for name in IMMUTABLE:
        if getattr(previous, name) != getattr(following, name):
            raise AlertError(
                f"An update cannot change the alert's {name.replace('_', ' ')}; withdraw it "
                "and raise a new alert.",
                reason="immutable_field",
            )


# -- matching -------------------------------------------------------------------


def match(alert: Alert, number: str, issuing_state: str) -> str | None:
    """How a document (normalised number, issuing state) matches alert, or None.

    An issuing state the copy withholds matches any state; a series is a
    number prefix; a range holds numbers of its length between its ends.
    """
    if alert.issuing_state and issuing_state and alert.issuing_state != issuing_state:
        return None
    if alert.document_number and alert.document_number == number:
        return "document_number"
    first, last = alert.number_range_first, alert.number_range_last
    if first and len(number) == len(first) and first <= number <= last:
        return "number_range"
    if alert.series and number.startswith(alert.series):
        return "series"
    return None


# ICAO 9303 codes that differ from ISO 3166-1 alpha-3 for issuing states.
ICAO_TO_ISO = {"D": "DEU"}


def issuer_code(icao: str) -> str:
    return ICAO_TO_ISO.get(icao, icao)


def document_label(a: alerts_pb2.Alert) -> str:
    """The document an alert is about, in one line for people: state, type, number, series."""
    parts = [a.issuing_state or "(state withheld)", a.document_type]
    if a.document_number:
        parts.append(a.document_number)
    if a.number_range_first:
        parts.append(f"{a.number_range_first}-{a.number_range_last}")
    if a.series:
        parts.append(f"series {a.series}*")
    return " ".join(p for p in parts if p)
