"""`rcf alert …`: raise, update, withdraw, list, show, check and watch document-fraud alerts.

Every command asks the running node over the operator API: the node signs,
distributes, verifies and audits; the CLI never opens the signing key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import grpc
from google.protobuf.json_format import MessageToDict

from rcf.cli.errors import guarded
from rcf.cli.operator_client import operator_channel
from rcf.cli.options import node_dir_option
from rcf.cli.output import console, emit_json, json_option, table, utc_time
from rcf.node.alerts.model import CLEARABLE, document_label
from rcf.node.ops.config import NodeLayout
from rcf.node.policy.model import ALERT_CATEGORIES, ALERT_SEVERITIES
from rcf.protos.v1 import alerts_pb2, alerts_pb2_grpc

TIMEOUT_S = 30

Metadata = tuple[tuple[str, str | bytes], ...]


@contextmanager
def _stub(node_dir: Path) -> Iterator[tuple[alerts_pb2_grpc.AlertOperatorStub, Metadata]]:
    with operator_channel(NodeLayout(node_dir)) as (channel, md):
        yield alerts_pb2_grpc.AlertOperatorStub(channel), md


def _draft_options(required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The alert's fields as options; on raise the identifying ones are required."""

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option(
                "--fraud-type",
                "--status",
                "category",
                type=click.Choice(ALERT_CATEGORIES),
                required=required,
                help="Fraud type, or document status (stolen, lost, revoked, invalid).",
            ),
            click.option("--issuer", "issuing_state", required=required, help="Issuing state."),
            click.option(
                "--document-type", required=required, help="passport, identity_card, visa, …"
            ),
            click.option("--number", "document_number", default="", help="Document number."),
            click.option(
                "--range", "number_range", default="", help="Number range FIRST-LAST (inclusive)."
            ),
            click.option("--series", default="", help="Series: a document-number prefix."),
            click.option("--modus-operandi", default="", help="Free text, ≤ 1000 characters."),
            click.option("--security-features", default="", help="Free text, ≤ 1000 characters."),
            click.option("--place", "detection_place", default="", help="Border crossing point."),
            click.option("--detected", "detection_date", default="", help="YYYY-MM-DD."),
            click.option(
                "--severity",
                type=click.Choice(ALERT_SEVERITIES),
                default=None,
                help="Default: medium.",
            ),
            click.option("--valid-until", default="", help="YYYY-MM-DD (inclusive)."),
            click.option("--caveat", "handling_caveat", default="", help="Handling caveat."),
            click.option("--ncp", "ncp_id", default="", help="One of this member's NCP ids."),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def _draft(values: dict[str, Any]) -> alerts_pb2.AlertDraft:
    number_range = values.pop("number_range", "") or ""
    first, sep, last = number_range.partition("-")
    if number_range and not sep:
        raise click.BadParameter("write --range FIRST-LAST", param_hint="--range")
    draft = alerts_pb2.AlertDraft(number_range_first=first, number_range_last=last)
    for key, value in values.items():
        if value:
            setattr(draft, key, value)
    return draft


def _view(rec: alerts_pb2.AlertRecord) -> dict[str, Any]:
    a = rec.alert
    view: dict[str, Any] = MessageToDict(a, preserving_proto_field_name=True)
    view.update(
        via=rec.via or "(own)",
        verified=rec.verified,
        expired=rec.expired,
        received_at=utc_time(rec.received_at_ms) if rec.received_at_ms else "",
        versions_held=rec.versions_held,
    )
    if rec.position:
        view["log_position"] = rec.position
    return view


def _status(rec: alerts_pb2.AlertRecord) -> str:
    if rec.alert.withdrawn:
        return "withdrawn"
    return "expired" if rec.expired else "active"


def _print_record(rec: alerts_pb2.AlertRecord, as_json: bool, what: str) -> None:
    if as_json:
        emit_json(_view(rec))
        return
    a = rec.alert
    console.print(
        f"{what}: alert {a.alert_id} version {a.version} ({a.category}, {a.severity}); "
        f"signed by {a.raised_by}{' ✓' if rec.verified else ' (signature does not verify)'}",
        highlight=False,
        markup=False,
    )


@click.group("alert")
def alert() -> None:
    """Document-fraud alerts: raise your own, check documents against everyone's."""


@alert.command("raise")
@node_dir_option
@_draft_options(required=True)
@json_option
@guarded
def alert_raise(node_dir: Path, as_json: bool, **values: Any) -> None:
    """Raise a new alert: signed by this node and sent to every member its policy allows."""
    with _stub(node_dir) as (stub, md):
        rec = stub.Raise(
            alerts_pb2.RaiseAlertRequest(draft=_draft(values)), metadata=md, timeout=TIMEOUT_S
        )
    _print_record(rec, as_json, "raised")


@alert.command("update")
@node_dir_option
@click.argument("alert_id")
@_draft_options(required=False)
@click.option(
    "--clear", multiple=True, type=click.Choice(CLEARABLE), help="Empty this field (repeatable)."
)
@json_option
@guarded
def alert_update(
    node_dir: Path, alert_id: str, clear: tuple[str, ...], as_json: bool, **values: Any
) -> None:
    """A new version of an alert this node raised (category, issuer and type are fixed)."""
    with _stub(node_dir) as (stub, md):
        rec = stub.Update(
            alerts_pb2.UpdateAlertRequest(alert_id=alert_id, changes=_draft(values), clear=clear),
            metadata=md,
            timeout=TIMEOUT_S,
        )
    _print_record(rec, as_json, "updated")


@alert.command("withdraw")
@node_dir_option
@click.argument("alert_id")
@json_option
@guarded
def alert_withdraw(node_dir: Path, alert_id: str, as_json: bool) -> None:
    """Withdraw an alert this node raised (a signed last version that says so)."""
    with _stub(node_dir) as (stub, md):
        rec = stub.Withdraw(
            alerts_pb2.WithdrawAlertRequest(alert_id=alert_id), metadata=md, timeout=TIMEOUT_S
        )
    _print_record(rec, as_json, "withdrawn")


@alert.command("list")
@node_dir_option
@click.option("--own", is_flag=True, help="Only alerts this node raised.")
@click.option("--received", is_flag=True, help="Only alerts received from others.")
@click.option("--all", "include_inactive", is_flag=True, help="Withdrawn and expired ones too.")
@json_option
@guarded
def alert_list(
    node_dir: Path, own: bool, received: bool, include_inactive: bool, as_json: bool
) -> None:
    """The newest version of every alert this node holds."""
    with _stub(node_dir) as (stub, md):
        r = stub.List(
            alerts_pb2.ListAlertsRequest(
                own_only=own, received_only=received, include_inactive=include_inactive
            ),
            metadata=md,
            timeout=TIMEOUT_S,
        )
    if as_json:
        emit_json([_view(rec) for rec in r.alerts])
        return
    table(
        f"{len(r.alerts)} alerts",
        ["alert id", "v", "raised by", "category", "severity", "document", "status", "signature"],
        [
            [
                rec.alert.alert_id,
                rec.alert.version,
                rec.alert.raised_by,
                rec.alert.category,
                rec.alert.severity,
                document_label(rec.alert),
                _status(rec),
                "verified" if rec.verified else "FAILS",
            ]
            for rec in r.alerts
        ],
    )


@alert.command("show")
@node_dir_option
@click.argument("alert_id")
@json_option
@guarded
def alert_show(node_dir: Path, alert_id: str, as_json: bool) -> None:
    """Every version of one alert held here, each re-verified now."""
    with _stub(node_dir) as (stub, md):
        r = stub.Show(alerts_pb2.ShowAlertRequest(alert_id=alert_id), metadata=md, timeout=30)
    views = [_view(rec) for rec in r.versions]
    if as_json:
        emit_json(views)
        return
    for view in views:
        table(
            f"alert {alert_id} version {view.get('version', 1)}",
            ["field", "value"],
            [[k, v] for k, v in view.items() if k not in ("alert_id", "version")],
        )


@alert.command("check")
@node_dir_option
@click.option("--mrz", default="", help="The machine-readable zone; lines separated by \\n.")
@click.option("--number", default="", help="Document number.")
@click.option("--issuer", default="", help="Issuing state (ISO 3166-1 alpha-3).")
@json_option
@guarded
def alert_check(node_dir: Path, mrz: str, number: str, issuer: str, as_json: bool) -> None:
    """Check a document against every active alert this node holds (local, instant).

    Exit status 1 when an alert matches.
    """
    with _stub(node_dir) as (stub, md):
        r = stub.Check(
            alerts_pb2.CheckDocumentRequest(mrz=mrz, document_number=number, issuing_state=issuer),
            metadata=md,
            timeout=TIMEOUT_S,
        )
    if as_json:
        emit_json(
            {
                "hit": bool(r.matches),
                "alerts_checked": r.alerts_checked,
                "matches": [{"matched_on": m.matched_on, **_view(m.alert)} for m in r.matches],
            }
        )
    elif not r.matches:
        console.print(f"no alert matches ({r.alerts_checked} active alerts checked)")
    else:
        for m in r.matches:
            a = m.alert.alert
            console.print(
                f"HIT: alert {a.alert_id} v{a.version} raised by {a.raised_by} "
                f"({a.category}, {a.severity}), matched on {m.matched_on}; "
                f"signature {'verified' if m.alert.verified else 'FAILS'}",
                highlight=False,
                markup=False,
            )
            console.print(f"  handling: {a.handling_caveat}", highlight=False, markup=False)
    if r.matches:
        raise SystemExit(1)


@alert.command("watch")
@node_dir_option
@json_option
@guarded
def alert_watch(node_dir: Path, as_json: bool) -> None:
    """Print alerts as they are raised here or arrive from peers, until Ctrl-C."""
    with _stub(node_dir) as (stub, md):
        try:
            for event in stub.Watch(alerts_pb2.WatchAlertsRequest(), metadata=md):
                if as_json:
                    emit_json(
                        {"kind": event.kind, "via": event.via, "reason": event.reason,
                         **(_view(event.alert) if event.HasField("alert") else {})}
                    )  # fmt: skip
                elif event.kind == "rejected":
                    console.print(
                        f"{utc_time(event.at_ms)} REJECTED a copy from {event.via}: {event.reason}"
                    )
                else:
                    a = event.alert.alert
                    console.print(
                        f"{utc_time(event.at_ms)} {event.kind}: {a.alert_id} v{a.version} "
                        f"from {a.raised_by} ({a.category}, {a.severity}) {document_label(a)}"
                        + (" WITHDRAWN" if a.withdrawn else ""),
                        highlight=False,
                        markup=False,
                    )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise
        except KeyboardInterrupt:
            raise SystemExit(130) from None


@alert.command("peers")
@node_dir_option
@click.option("--reconnect", is_flag=True, help="Retry every waiting subscription now.")
@json_option
@guarded
def alert_peers(node_dir: Path, reconnect: bool, as_json: bool) -> None:
    """This node's alert subscriptions: each peer, its cursor and its state."""
    with _stub(node_dir) as (stub, md):
        r = stub.Subscriptions(
            alerts_pb2.SubscriptionsRequest(reconnect=reconnect), metadata=md, timeout=TIMEOUT_S
        )
    if as_json:
        emit_json(MessageToDict(r, preserving_proto_field_name=True))
        return
    table(
        f"alert subscriptions (own log at position {r.own_log_position})",
        ["peer", "cursor", "state", "last error"],
        [[s.member_id, s.position, s.state, s.last_error] for s in r.subscriptions],
    )


def register(root: click.Group) -> None:
    root.add_command(alert)
