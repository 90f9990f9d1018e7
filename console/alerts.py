"""Alert drafts from the console's form and alert rows for its pages (plain functions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rcf.node.alerts.model import document_label
from rcf.node.policy.model import ALERT_CATEGORIES, ALERT_SEVERITIES
from rcf.protos.v1 import alerts_pb2
from rcf.trust.errors import ConfigError

FIELDS = (
    "category", "severity", "issuing_state", "document_type", "document_number", "series",
    "modus_operandi", "detection_place", "detection_date", "valid_until", "handling_caveat",
)  # fmt: skip
CATEGORIES = ALERT_CATEGORIES
SEVERITIES = ALERT_SEVERITIES


def draft_from(form: Mapping[str, str]) -> alerts_pb2.AlertDraft:
    """The draft an officer filled in; the node validates the fields in full."""
    values = {k: (form.get(k) or "").strip() for k in FIELDS}
    if values["category"] not in CATEGORIES:
        raise ConfigError("Choose the fraud type or document status.")
    if values["severity"] and values["severity"] not in SEVERITIES:
        raise ConfigError("Choose a severity.")
    if not (values["issuing_state"] and values["document_type"]):
        raise ConfigError("Give the issuing state and the document type.")
    if not (values["document_number"] or values["series"]):
        raise ConfigError("Give the document number or the series it belongs to.")
    for key in ("issuing_state", "document_number", "series"):
        values[key] = values[key].upper()
    return alerts_pb2.AlertDraft(**{k: v for k, v in values.items() if v})


def row(rec: alerts_pb2.AlertRecord, *, own_member: str) -> dict[str, Any]:
    """What the alerts table shows of one alert (also sent to the live feed as JSON)."""
    a = rec.alert
    status = "withdrawn" if a.withdrawn else ("expired" if rec.expired else "active")
    return {
        "alert_id": a.alert_id,
        "raised_by": a.raised_by,
        "category": a.category.replace("_", " "),
        "severity": a.severity,
        "document": document_label(a),
        "modus_operandi": a.modus_operandi,
        "caveat": a.handling_caveat,
        "signature": "verified" if rec.verified else "NOT verified",
        "status": status,
        "own": a.raised_by == own_member and status == "active",
    }
