"""A node's alerts: raising its own, serving them to subscribers, taking in others'.

The raiser appends each signed version to its alert log and wakes every
waiting subscription stream at once (no polling). A stream sends each log
entry the raiser's *current* policy lets the subscriber have, as the copy
signed for the field set the deciding rule names, then waits; a heartbeat
every ``heartbeat_s`` carries the position reached, so a subscriber's cursor
moves past entries it may not have and a dead connection is noticed.

Received copies are verified against the directory (a key of the raising
member, valid when the version was issued), checked against their bounds and
stored idempotently on (alert id, version); anything else is rejected,
logged and audited, and never applied.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from google.protobuf.message import DecodeError

from rcf.node.alerts.model import (
    CLEARABLE,
    DEFAULT_CAVEAT,
    DEFAULT_SEVERITY,
    Alert,
    AlertError,
    check_new,
    check_shape,
    check_successor,
    issuer_code,
    match,
    new_alert_id,
    normalize_number,
    redact,
)
from rcf.node.alerts.store import AlertStore, LogEntry
from rcf.node.audit.chain import AuditLog, local_event
from rcf.node.federation.directory_cache import DirectoryCache
from rcf.node.federation.protocol import Authorized
from rcf.node.policy.admin import PolicyGate
from rcf.node.policy.model import ALERT_FIELDS, ALERTS, QueryDescription
from rcf.protos.v1 import alerts_pb2, envelope_pb2
from rcf.trust.clock import now_ms
from rcf.trust.dictionary import DataDictionary
from rcf.trust.directory import Member, SigningKeyInfo
from rcf.trust.dsse import Envelope
from rcf.trust.errors import RcfError, VerificationError
from rcf.trust.keys import SigningKey
from rcf.trust.signed import open_document, sign_document

log = structlog.get_logger("rcf.alerts")

PURPOSE = "alert-distribution"
DEFAULT_HEARTBEAT_S = 15.0
BACKLOG_PAGE = 200
EVENTS_KEPT = 1000
DRAFT_FIELDS = (
    "category",
    "severity",
    "handling_caveat",
    "issuing_state",
    "document_type",
    *CLEARABLE,
)
_NUMBERS = ("document_number", "number_range_first", "number_range_last", "series")


@dataclass(frozen=True)
class Held:
    """One alert version this node holds, with where it came from."""

    alert: Alert
    envelope: envelope_pb2.Envelope = field(repr=False)  # its payload holds the numbers
    via: str = ""  # "" for this node's own alerts
    received_at_ms: int = 0
    position: int = 0  # own alerts: position in the alert log
    versions: int = 1


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_envelope(raw: bytes) -> envelope_pb2.Envelope:
    msg = envelope_pb2.Envelope()
    msg.ParseFromString(raw)
    return msg


def _unverified(envelope: envelope_pb2.Envelope) -> Alert:
    """The alert in an envelope this node wrote itself (its own log, or stored after checks)."""
    msg = alerts_pb2.Alert()
    msg.ParseFromString(envelope.payload)
    return Alert.from_proto(msg)


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class AlertService:
    def __init__(
        self,
        *,
        member_id: str,
        signing_key: SigningKey,
        store: AlertStore,
        audit: AuditLog,
        directory: DirectoryCache,
        gate: Callable[[], PolicyGate | None],
        dictionary: Callable[[], DataDictionary],
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    ) -> None:
        self.member_id = member_id
        self._key = signing_key
        self.store = store
        self._audit = audit
        self._directory = directory
        self._gate = gate
        self._dictionary = dictionary
        self.heartbeat_s = heartbeat_s
        self._cond = threading.Condition()
        self._closed = False
        self._head = store.log_head()
        self._write_lock = threading.Lock()  # own versions: one at a time
        self._ingest_lock = threading.Lock()  # received versions: check then write
        self._copies: dict[tuple[str, int, tuple[str, ...]], envelope_pb2.Envelope] = {}
        self._parsed: dict[tuple[str, int], Alert] = {}
        self._latest: dict[str, Held] = {}
        self._cursors: dict[str, int] = store.cursors()
        self._events: collections.deque[tuple[int, alerts_pb2.AlertEvent]] = collections.deque(
            maxlen=EVENTS_KEPT
        )
        self._event_seq = 0
        self.deliveries = 0  # alert messages received since start (duplicates included)
        self.duplicates = 0
        self._load()

    def _load(self) -> None:
        for entry in self.store.log_after(0, limit=1 << 62):
            self._remember_own(entry)
        for row in self.store.held():
            envelope = parse_envelope(row.envelope)
            alert = _unverified(envelope)
            previous = self._latest.get(alert.alert_id)
            versions = previous.versions + 1 if previous else 1
            self._latest[alert.alert_id] = Held(
                alert, envelope, row.via, row.received_at_ms, versions=versions
            )

    def _remember_own(self, entry: LogEntry) -> Held:
        envelope = parse_envelope(entry.envelope)
        alert = _unverified(envelope)
        self._parsed[(alert.alert_id, alert.version)] = alert
        held = Held(alert, envelope, "", alert.issued_at_ms, entry.position, alert.version)
        if alert.raised_by == self.member_id:  # a relayed copy in the log is not ours
            self._latest[alert.alert_id] = held
        return held

    def close(self) -> None:
        """Wake and end every waiting stream and watcher."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- raising (this node's own alerts) ----------------------------------------------

    def raise_alert(self, draft: alerts_pb2.AlertDraft) -> Held:
        """Check, sign, log and announce version 1 of a new alert."""
        values = _draft_values(draft)
        alert = Alert(
            alert_id=new_alert_id(),
            version=1,
            raised_by=self.member_id,
            issued_at_ms=now_ms(),
            category=values.pop("category", ""),
            severity=values.pop("severity", DEFAULT_SEVERITY),
            handling_caveat=values.pop("handling_caveat", DEFAULT_CAVEAT),
            disclosed_fields=tuple(sorted(ALERT_FIELDS)),
            **values,
        )
        with self._write_lock:
            self._check_new(alert)
            return self._append(alert, "AlertRaise")

    def update_alert(
        self, alert_id: str, changes: alerts_pb2.AlertDraft, clear: tuple[str, ...] = ()
    ) -> Held:
        """A new version with changes applied; only for alerts this node raised."""
        values = _draft_values(changes)
        for name in clear:
            if name not in CLEARABLE:
                raise AlertError(
                    f"'{name}' cannot be cleared; clearable: {', '.join(CLEARABLE)}.",
                    reason="invalid_field",
                )
            values[name] = ""
        with self._write_lock:
            previous = self._own_latest(alert_id)
            following = replace(
                previous, version=previous.version + 1, issued_at_ms=now_ms(), **values
            )
            check_successor(previous, following)
            self._check_new(following)
            return self._append(following, "AlertUpdate")

    def withdraw_alert(self, alert_id: str) -> Held:
        with self._write_lock:
            previous = self._own_latest(alert_id)
            following = replace(
                previous, version=previous.version + 1, issued_at_ms=now_ms(), withdrawn=True
            )
            check_successor(previous, following)
            check_shape(following)
            return self._append(following, "AlertWithdraw")

    def _own_latest(self, alert_id: str) -> Alert:
        held = self._latest.get(alert_id)
        if held is None:
            raise AlertError(
                "This node holds no alert with that id.", reason="unknown_alert", status="NOT_FOUND"
            )
        if held.alert.raised_by != self.member_id:
            raise AlertError(
                f"Only the raising member ({held.alert.raised_by}) can update or withdraw "
                "this alert.",
                reason="not_raiser",
                status="PERMISSION_DENIED",
            )
        return held.alert

    def _check_new(self, alert: Alert) -> None:
        member = self._directory.peek().member(self.member_id)
        ncps = tuple(n.ncp_id for n in member.ncps) if member else ()
        check_new(alert, dictionary=self._dictionary(), today=_today(), ncp_ids=ncps)

    def _append(self, alert: Alert, action: str) -> Held:
        envelope = sign_document(alert.to_proto(), [self._key]).to_proto()
        raw = envelope.SerializeToString()
        positions: list[int] = []

        def write(conn: object) -> None:
            positions.append(
                AlertStore.append_sql(conn, alert.alert_id, alert.version, raw, now_ms())  # type: ignore[arg-type]
            )

        self._audit.append(
            local_event(
                self.member_id,
                action=action,
                purpose=PURPOSE,
                decision="applied",
                reason="ok",
                subject_sha256=_sha256(envelope.payload),
            ),
            with_write=write,
        )
        held = self._remember_own(LogEntry(positions[0], alert.alert_id, alert.version, raw))
        self._presign(alert)
        with self._cond:
            self._head = max(self._head, positions[0])
            self._cond.notify_all()
        self._emit("raised", held)
        log.info("alert_raised", alert_id=alert.alert_id, version=alert.version, action=action)
        return held

    def _presign(self, alert: Alert) -> None:
        """Sign the copies the current policy's alert rules will ask for, before they are asked."""
        gate = self._gate()
        if gate is None:
            return
        for rule in gate.policy.rules:
            if rule.query == ALERTS:
                self.copy_for(alert, rule.fields)

    def copy_for(self, alert: Alert, fields: tuple[str, ...]) -> envelope_pb2.Envelope:
        """The raiser-signed copy of alert with only fields (signed once, then reused)."""
        disclosed = tuple(sorted(set(fields) & set(ALERT_FIELDS)))
        key = (alert.alert_id, alert.version, disclosed)
        copy = self._copies.get(key)
        if copy is None:
            copy = sign_document(redact(alert, disclosed).to_proto(), [self._key]).to_proto()
            self._copies[key] = copy
        return copy

    # -- serving (the Alerts stream) -----------------------------------------------------

    def stream(
        self, authorized: Authorized[alerts_pb2.AlertsRequest]
    ) -> Iterator[alerts_pb2.AlertsResponse]:
        """Every log entry after the subscriber's cursor that policy gives it, then live ones."""
        subscriber = authorized.requester.member_id
        cursor = int(authorized.request.after_position)
        told = -1  # the position last sent to the subscriber
        confirmed = False  # the backlog's end is confirmed once, even after a delivery
        while True:
            member = self._directory.current().member(subscriber)
            if member is None or not member.active:
                return  # suspended or revoked meanwhile: the stream ends
            entries = self.store.log_after(cursor, BACKLOG_PAGE)
            for entry in entries:
                cursor = entry.position
                copy = self._copy_for_member(member, authorized.purpose, entry)
                if copy is not None:
                    told = cursor
                    yield alerts_pb2.AlertsResponse(position=cursor, alert=copy)
            if len(entries) == BACKLOG_PAGE:
                continue
            if not confirmed or told != cursor:
                # The backlog is sent (PROTOCOL-alerts.md §2 step 2), or live entries not
                # for this subscriber moved the cursor: say so now, not at the heartbeat.
                confirmed, told = True, cursor
                yield alerts_pb2.AlertsResponse(position=cursor)
            woke = self._wait_past(cursor)
            if self._closed:
                return
            if not woke:
                yield alerts_pb2.AlertsResponse(position=cursor)

    def _wait_past(self, position: int) -> bool:
        """Wait until the log grows past position or the service closes; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._closed or self._head > position, timeout=self.heartbeat_s
            )

    def _copy_for_member(
        self, member: Member, purpose: str, entry: LogEntry
    ) -> envelope_pb2.Envelope | None:
        alert = self._parsed.get((entry.alert_id, entry.version))
        if alert is None:
            alert = _unverified(parse_envelope(entry.envelope))
            self._parsed[(entry.alert_id, entry.version)] = alert
        fields = self._fields_for(member, purpose, alert)
        if fields is None:
            return None
        if alert.raised_by != self.member_id:
            # Relayed: forwarded exactly as its raiser signed it (a relay cannot redact).
            return parse_envelope(entry.envelope)
        return self.copy_for(alert, fields)

    def _fields_for(self, member: Member, purpose: str, alert: Alert) -> tuple[str, ...] | None:
        """The fields the current policy gives member for alert, or None if not at all.

        A member that was given an earlier version of the alert also gets every later
        one (with that earlier grant's fields if the later one alone is not granted),
        so an update or withdrawal reaches everyone who holds the alert.
        """
        gate = self._gate()
        if gate is None:
            return None
        candidates = [alert] + [
            self._parsed[(alert.alert_id, v)]
            for v in range(alert.version - 1, 0, -1)
            if (alert.alert_id, v) in self._parsed
        ]
        for candidate in candidates:
            decision = gate.decide(
                member,
                QueryDescription(
                    ALERTS,
                    purpose=purpose,
                    alert_category=candidate.category,
                    alert_issuing_state=candidate.issuing_state,
                    alert_severity=candidate.severity,
                ),
            )
            if decision.allowed and decision.constraints is not None:
                return decision.constraints.alert_fields
        return None

    # -- receiving ------------------------------------------------------------------

    def ingest(self, envelope: envelope_pb2.Envelope, *, via: str, position: int) -> str:
        """Verify and store one delivered copy; returns stored, duplicate, own or rejected:REASON.

        The cursor for via moves to position whatever the outcome, so a bad copy is
        refused once and never blocks what follows it.
        """
        self.deliveries += 1
        try:
            alert = self.verify(envelope)
        except RcfError as exc:
            self._reject(via, position, exc.reason, envelope)
            return f"rejected:{exc.reason}"
        if alert.raised_by == self.member_id:
            self.advance(via, position)
            return "own"
        with self._ingest_lock:
            held = self._latest.get(alert.alert_id)
            if held is not None and held.alert.raised_by != alert.raised_by:
                outcome = "not_raiser"
            elif self.store.held_version(alert.alert_id, alert.version):
                outcome = "duplicate"
            else:
                outcome = "stored"
            if outcome == "not_raiser":
                self._reject(via, position, outcome, envelope, alert_id=alert.alert_id)
                return f"rejected:{outcome}"
            if outcome == "duplicate":
                self.duplicates += 1
                self.advance(via, position)
                return outcome
            received = now_ms()
            raw = envelope.SerializeToString()

            def write(conn: object) -> None:
                conn.execute(  # type: ignore[attr-defined]
                    "INSERT INTO alerts_held VALUES (?, ?, ?, ?, ?, ?)",
                    (alert.alert_id, alert.version, alert.raised_by, via, raw, received),
                )
                AlertStore.advance_sql(conn, via, position)  # type: ignore[arg-type]

            self.store.state.run(write)
            self._cursors[via] = max(self._cursors.get(via, 0), position)
            versions = held.versions + 1 if held is not None else 1
            new = Held(alert, envelope, via, received, versions=versions)
            if held is None or alert.version >= held.alert.version:
                self._latest[alert.alert_id] = new
        self._emit("received", new)
        log.info("alert_received", alert_id=alert.alert_id, version=alert.version, via=via)
        return outcome

    def advance(self, via: str, position: int) -> None:
        """Persist that via's log is held up to position (heartbeats, skipped copies)."""
        if position <= self._cursors.get(via, 0):
            return
        self.store.state.run(lambda conn: AlertStore.advance_sql(conn, via, position))
        self._cursors[via] = position

    def verify(self, envelope: envelope_pb2.Envelope, *, at_ms: int | None = None) -> Alert:
        """The alert in a raiser-signed copy, or AlertError: signed by a key the
        directory lists for the alert's raising member, valid when it was issued."""
        directory = self._directory.current()
        owners: dict[str, tuple[Member, SigningKeyInfo]] = {}

        def resolve(key_id: str) -> bytes:
            found = directory.signing_key(key_id)
            if found is None:
                raise VerificationError(
                    f"The alert is signed by key {key_id}, which the directory does not list.",
                    reason="unknown_key",
                )
            owners[key_id] = found
            return found[1].public_key

        try:
            opened = open_document(
                Envelope.from_proto(envelope),
                alerts_pb2.Alert,
                what="alert",
                resolve_key=resolve,
                error=AlertError,
                bad_signature_reason="bad_signature",
            )
        except DecodeError as exc:
            raise AlertError("The alert is malformed.", reason="malformed") from exc
        alert = Alert.from_proto(opened.message)
        check_shape(alert, now_ms=at_ms if at_ms is not None else now_ms())
        signers = {owners[k][0].member_id for k in opened.key_ids}
        if signers != {alert.raised_by}:
            raise AlertError(
                "The alert version is signed by another member than the one that raised it.",
                reason="not_raiser",
                status="PERMISSION_DENIED",
            )
        if not all(owners[k][1].valid_at(alert.issued_at_ms) for k in opened.key_ids):
            raise AlertError(
                "The alert is signed with a key that was not valid when it was issued.",
                reason="key_not_valid",
            )
        return alert

    def verifies(self, envelope: envelope_pb2.Envelope) -> bool:
        try:
            self.verify(envelope)
        except RcfError:
            return False
        return True

    def _reject(
        self,
        via: str,
        position: int,
        reason: str,
        envelope: envelope_pb2.Envelope,
        *,
        alert_id: str = "",
    ) -> None:
        at = now_ms()

        def write(conn: object) -> None:
            conn.execute(  # type: ignore[attr-defined]
                "INSERT INTO alert_rejections (at_ms, via, reason, alert_id) VALUES (?, ?, ?, ?)",
                (at, via, reason, alert_id),
            )
            AlertStore.advance_sql(conn, via, position)  # type: ignore[arg-type]

        self._audit.append(
            local_event(
                self.member_id,
                action="AlertReceive",
                purpose=PURPOSE,
                decision="rejected",
                reason=reason,
                subject_sha256=_sha256(envelope.payload),
            ),
            with_write=write,
        )
        self._cursors[via] = max(self._cursors.get(via, 0), position)
        log.warning("alert_rejected", via=via, reason=reason, alert_id=alert_id)
        self._emit_event(alerts_pb2.AlertEvent(kind="rejected", via=via, reason=reason, at_ms=at))

    # -- reading --------------------------------------------------------------------

    def latest(self) -> list[Held]:
        return sorted(self._latest.values(), key=lambda h: (h.received_at_ms, h.alert.alert_id))

    def versions(self, alert_id: str) -> list[Held]:
        held = self._latest.get(alert_id)
        if held is None:
            raise AlertError(
                "This node holds no alert with that id.", reason="unknown_alert", status="NOT_FOUND"
            )
        if held.via == "":
            entries = self.store.own_versions(alert_id)
            return [
                Held(
                    alert=(own := _unverified(env := parse_envelope(e.envelope))),
                    envelope=env,
                    via="",
                    received_at_ms=own.issued_at_ms,
                    position=e.position,
                    versions=len(entries),
                )
                for e in entries
            ]
        rows = self.store.held(alert_id)
        return [
            Held(
                alert=_unverified(env := parse_envelope(r.envelope)),
                envelope=env,
                via=r.via,
                received_at_ms=r.received_at_ms,
                versions=len(rows),
            )
            for r in rows
        ]

    def check(self, number: str, issuing_state: str) -> tuple[list[tuple[Held, str]], int]:
        """Active alerts (own and received) that match the document; and how many were checked."""
        number = normalize_number(number)
        state = issuer_code(issuing_state.upper())
        today = _today()
        active = [h for h in self._latest.values() if h.alert.active(today)]
        hits = []
        for held in active:
            how = match(held.alert, number, state)
            if how is not None:
                hits.append((held, how))
        return hits, len(active)

    # -- watching -------------------------------------------------------------------

    def _emit(self, kind: str, held: Held) -> None:
        self._emit_event(
            alerts_pb2.AlertEvent(kind=kind, alert=record(held, self), via=held.via, at_ms=now_ms())
        )

    def _emit_event(self, event: alerts_pb2.AlertEvent) -> None:
        with self._cond:
            self._event_seq += 1
            self._events.append((self._event_seq, event))
            self._cond.notify_all()

    def event_seq(self) -> int:
        with self._cond:
            return self._event_seq

    def wait_events(self, after: int, timeout_s: float) -> tuple[int, list[alerts_pb2.AlertEvent]]:
        """Events after seq after (waiting up to timeout_s for one); the new seq."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._event_seq > after, timeout_s)
            events = [e for seq, e in self._events if seq > after]
            return self._event_seq, events

    @property
    def closed(self) -> bool:
        return self._closed


def record(held: Held, service: AlertService | None = None) -> alerts_pb2.AlertRecord:
    """The operator API's view of one held version."""
    today = _today()
    return alerts_pb2.AlertRecord(
        alert=held.alert.to_proto(),
        via=held.via,
        received_at_ms=held.received_at_ms,
        versions_held=held.versions,
        verified=service.verifies(held.envelope) if service is not None else False,
        expired=held.alert.expired(today),
        position=held.position,
        envelope=held.envelope,
    )


def _draft_values(draft: alerts_pb2.AlertDraft) -> dict[str, Any]:
    """The non-empty fields of a draft, codes and numbers in their stored form."""
    values: dict[str, Any] = {}
    for name in DRAFT_FIELDS:
        value = str(getattr(draft, name))
        if not value:
            continue
        if name in _NUMBERS:
            value = normalize_number(value)
        elif name == "issuing_state":
            value = value.strip().upper()
        elif name in ("category", "severity", "document_type"):
            value = value.strip().lower()
        elif name == "detection_place":
            value = value.strip().upper()
        values[name] = value
    return values


__all__ = ["PURPOSE", "AlertService", "Held", "record"]
