"""The demo's alert step: TH raises a counterfeit-series alert; AU, ID, NZ and the RSO
receive it (as TH's policy allows) within a second, verified; AU checks a document
against it."""

from __future__ import annotations

import queue
import threading
import time

import grpc

from rcf.cli.operator_client import operator_channel
from rcf.cli.output import console, table
from rcf.devnet.local_network import Demo, LocalNetwork
from rcf.protos.v1 import alerts_pb2, alerts_pb2_grpc
from rcf.trust.errors import ConfigError

RAISER = "TH"
WAIT_S = 20.0


def _stub_call(net: LocalNetwork, member_id: str, method: str, request: object) -> object:
    with operator_channel(net.node_layout(member_id)) as (channel, md):
        stub = alerts_pb2_grpc.AlertOperatorStub(channel)
        return getattr(stub, method)(request, metadata=md, timeout=30)


def _watch(net: LocalNetwork, member_id: str, out: queue.Queue[tuple[str, object, float]],
           ready: threading.Event) -> None:  # fmt: skip
    with operator_channel(net.node_layout(member_id)) as (channel, md):
        call = alerts_pb2_grpc.AlertOperatorStub(channel).Watch(
            alerts_pb2.WatchAlertsRequest(), metadata=md, timeout=WAIT_S
        )
        ready.set()
        try:
            for event in call:
                if event.kind == "received":
                    out.put((member_id, event.alert, time.perf_counter()))
                    return
        except grpc.RpcError:
            return


def step_alerts(demo: Demo) -> None:
    net = demo.net
    receivers = [m for m in demo.ids if m != RAISER]
    if RAISER not in demo.ids or not receivers:
        return
    # Policies were applied after the nodes subscribed: have every node ask again now.
    for member_id in receivers:
        _stub_call(net, member_id, "Subscriptions", alerts_pb2.SubscriptionsRequest(reconnect=True))
    deadline = time.monotonic() + WAIT_S
    waiting = set(receivers)
    while waiting and time.monotonic() < deadline:
        for member_id in sorted(waiting):
            r = _stub_call(net, member_id, "Subscriptions", alerts_pb2.SubscriptionsRequest())
            subs = r.subscriptions  # type: ignore[attr-defined]
            if any(s.member_id == RAISER and s.state == "connected" for s in subs):
                waiting.discard(member_id)
        time.sleep(0.2)
    arrivals: queue.Queue[tuple[str, object, float]] = queue.Queue()
    for member_id in receivers:
        ready = threading.Event()
        threading.Thread(target=_watch, args=(net, member_id, arrivals, ready), daemon=True).start()
        ready.wait(5)
    time.sleep(0.3)
    draft = alerts_pb2.AlertDraft(
        category="counterfeit",
        issuing_state="THA",
        document_type="passport",
        series="AA12",
        number_range_first="AA1200000",
        number_range_last="AA1299999",
        severity="high",
        modus_operandi="Counterfeit series: offset-printed data page, missing UV fibres.",
        security_features="UV fluorescence; guilloche on page 2; laser perforation absent.",
        detection_place="THBKK",
        detection_date=time.strftime("%Y-%m-%d", time.gmtime()),
    )
    t0 = time.perf_counter()
    raised = _stub_call(net, RAISER, "Raise", alerts_pb2.RaiseAlertRequest(draft=draft))
    alert_id = raised.alert.alert_id  # type: ignore[attr-defined]
    console.print(
        f"TH raises alert {alert_id}: counterfeit THA passports, series AA12, high severity "
        "(rcf alert raise)"
    )
    got: dict[str, tuple[alerts_pb2.AlertRecord, float]] = {}
    while len(got) < len(receivers):
        try:
            member_id, rec, at = arrivals.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        assert isinstance(rec, alerts_pb2.AlertRecord)
        if rec.alert.alert_id == alert_id:
            got[member_id] = (rec, (at - t0) * 1000)
    rows = []
    for member_id in receivers:
        if member_id not in got:
            rows.append([member_id, "not received (TH's policy does not grant it)", "—", "—"])
            continue
        rec, ms = got[member_id]
        shown = [f for f in rec.alert.disclosed_fields]
        rows.append(
            [
                member_id,
                f"{ms:.0f} ms",
                "verified ✓ TH" if rec.verified else "FAILS",
                ", ".join(shown),
            ]
        )
    table(
        "the alert arrives over each node's subscription to TH (signed by TH, fields per TH's "
        "policy)",
        ["member", "after raise", "signature", "fields received"],
        rows,
    )
    if not got:
        raise ConfigError("No node received TH's alert; see the node logs.")
    checker = "AU" if "AU" in got else next(iter(got))
    check = _stub_call(
        net,
        checker,
        "Check",
        alerts_pb2.CheckDocumentRequest(document_number="AA1234567", issuing_state="THA"),
    )
    matches = check.matches  # type: ignore[attr-defined]
    if matches:
        m = matches[0]
        console.print(
            f"{checker} checks passport THA AA1234567 against its local alerts "
            f"(rcf alert check): HIT — alert {m.alert.alert.alert_id} raised by "
            f"{m.alert.alert.raised_by}, matched on {m.matched_on}"
        )
    else:
        console.print(f"{checker} checks passport THA AA1234567: no match (unexpected)")
