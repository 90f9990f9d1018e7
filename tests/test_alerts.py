"""Document-fraud alerts end to end over real nodes (mutual TLS, SQLite, gRPC streams)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from rcf.node.alerts.model import Alert, redact
from rcf.node.alerts.service import PURPOSE, parse_envelope
from rcf.node.alerts.spec import ALERTS
from rcf.node.federation.server import NodeServer
from rcf.protos.v1 import alerts_pb2, alerts_pb2_grpc
from rcf.trust.clock import now_ms
from rcf.trust.signed import sign_document
from tests.cli_helpers import rcf
from tests.network import NetNode, Network, reason_of, set_node_config

ALL_FIELDS = (
    '["issuing_state", "document_type", "document_number", "series", "modus_operandi",'
    ' "security_features", "detection_place", "detection_date", "valid_until", "ncp"]'
)
ALL_CATEGORIES = (
    '["counterfeit", "forged", "pseudo", "fraudulently_obtained_genuine", "impostor",'
    ' "stolen_blank", "stolen", "lost", "revoked", "invalid"]'
)


def policy(member: str, *rules: str) -> str:
    head = f'[policy]\nmember = "{member}"\n\n[[rule]]\nid = "ping"\nrequesters = ["*"]\n'
    return head + 'query = "Ping"\n' + "".join(rules)


def alerts_rule(
    rule_id: str, requesters: str, categories: str, fields: str, extra: str = ""
) -> str:
    return (
        f'\n[[rule]]\nid = "{rule_id}"\nrequesters = {requesters}\nquery = "Alerts"\n'
        f"categories = {categories}\nfields = {fields}\n{extra}"
    )


TH_POLICY = policy(
    "TH",
    alerts_rule("sg", '["group:steering-group"]', ALL_CATEGORIES, ALL_FIELDS),
    alerts_rule(
        "nz-basic", '["NZ"]', '["counterfeit"]', '["issuing_state", "document_type", "series"]'
    ),
)
AU_POLICY = policy("AU", alerts_rule("all", '["*"]', ALL_CATEGORIES, ALL_FIELDS))


def wait_until(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def connected(node: NetNode, *peers: str) -> Callable[[], bool]:
    states = node.alert_subscriptions.states
    return lambda: all(p in states and states[p].state == "connected" for p in peers)


def held(node: NetNode, alert_id: str) -> Alert | None:
    found = [h for h in node.alerts.latest() if h.alert.alert_id == alert_id]
    return found[0].alert if found else None


def draft(**values: Any) -> alerts_pb2.AlertDraft:
    base: dict[str, Any] = {
        "category": "counterfeit",
        "issuing_state": "THA",
        "document_type": "passport",
        "document_number": "AA1234567",
        "series": "AA12",
        "severity": "high",
        "modus_operandi": "Laminate replaced; data page reprinted.",
        "detection_place": "THBKK",
        "detection_date": "2026-01-05",
    }
    base.update(values)
    return alerts_pb2.AlertDraft(**base)


def restart(net: Network, member_id: str) -> NetNode:
    """Stop member's node and start it again on the same port, as a deployed node would."""
    node = net.nodes[member_id]
    set_node_config(net.layout(member_id), listen=node.address)
    net.stop_node(member_id)
    return net.start_node(member_id)


@pytest.fixture
def alert_net(tmp_path: Path) -> Iterator[Network]:
    """AU and TH (steering group) and NZ, with alert policies at TH and AU."""
    network = Network(tmp_path, subscribe_alerts=True)
    try:
        network.start_hub()
        network.add_node("AU", groups=("steering-group",))
        network.add_node("TH", groups=("steering-group",))
        network.add_node("NZ")
        network.refresh_all()
        network.nodes["TH"].policy.apply(TH_POLICY, "TH.toml")
        network.nodes["AU"].policy.apply(AU_POLICY, "AU.toml")
        # NZ's default policy grants no alerts: its subscribers are refused, not connected.
        for member_id in ("AU", "TH", "NZ"):
            network.nodes[member_id].alert_subscriptions.reconnect()
        wait_until(connected(network.nodes["AU"], "TH"))
        wait_until(connected(network.nodes["NZ"], "TH", "AU"))
        wait_until(connected(network.nodes["TH"], "AU"))
        yield network
    finally:
        network.close()


def operator(node: NodeServer) -> tuple[alerts_pb2_grpc.AlertOperatorStub, Any]:
    channel = grpc.insecure_channel(node.operator_address)
    token = node.layout.operator_token.read_text().strip()
    return alerts_pb2_grpc.AlertOperatorStub(channel), (("x-rcf-operator-token", token),)


# -- distribution -------------------------------------------------------------------------


def test_raise_reaches_allowed_subscribers_verified_with_their_fields(alert_net: Network) -> None:
    th, au, nz = (alert_net.nodes[m] for m in ("TH", "AU", "NZ"))
    raised = th.alerts.raise_alert(draft())
    alert_id = raised.alert.alert_id
    wait_until(lambda: held(au, alert_id) and held(nz, alert_id))
    full = held(au, alert_id)
    assert full is not None and full.document_number == "AA1234567"
    assert full.modus_operandi == raised.alert.modus_operandi
    basic = held(nz, alert_id)
    assert basic is not None
    assert basic.disclosed_fields == ("document_type", "issuing_state", "series")
    assert basic.document_number == "" and basic.modus_operandi == "" and basic.series == "AA12"
    assert basic.handling_caveat and basic.severity == "high"
    # Each recipient re-verifies the raiser's signature on what it stored, later, itself.
    for node in (au, nz):
        stored = next(h for h in node.alerts.latest() if h.alert.alert_id == alert_id)
        assert node.alerts.verify(stored.envelope).raised_by == "TH"
        assert stored.via == "TH"


def test_subscriber_not_allowed_never_receives(alert_net: Network) -> None:
    th, au, nz = (alert_net.nodes[m] for m in ("TH", "AU", "NZ"))
    impostor = th.alerts.raise_alert(draft(category="impostor"))
    low = th.alerts.raise_alert(draft(category="stolen", severity="low"))
    wait_until(lambda: held(au, impostor.alert.alert_id) and held(au, low.alert.alert_id))
    # NZ's subscription has been told the log position past both (heartbeat) …
    wait_until(lambda: nz.alerts.store.cursor("TH") >= low.position)
    # … and holds neither: TH's policy gives NZ counterfeits only.
    assert held(nz, impostor.alert.alert_id) is None
    assert held(nz, low.alert.alert_id) is None
    assert nz.alerts.deliveries == 0


def test_min_severity_and_issuing_states_filter(tmp_path: Path) -> None:
    network = Network(tmp_path, subscribe_alerts=True)
    try:
        network.start_hub()
        network.add_node("TH")
        network.add_node("ID")
        network.refresh_all()
        network.nodes["TH"].policy.apply(
            policy(
                "TH",
                alerts_rule(
                    "id-high-own",
                    '["ID"]',
                    ALL_CATEGORIES,
                    ALL_FIELDS,
                    'issuing_states = ["THA"]\nmin_severity = "high"\n',
                ),
            ),
            "TH.toml",
        )
        th, id_ = network.nodes["TH"], network.nodes["ID"]
        id_.alert_subscriptions.reconnect()
        wait_until(connected(id_, "TH"))
        low = th.alerts.raise_alert(draft(severity="medium"))
        other_state = th.alerts.raise_alert(draft(issuing_state="MYS"))
        wanted = th.alerts.raise_alert(draft(severity="critical"))
        wait_until(lambda: held(id_, wanted.alert.alert_id))
        assert held(id_, low.alert.alert_id) is None
        assert held(id_, other_state.alert.alert_id) is None
        # Lowering the severity of an alert ID holds still reaches ID (it must learn of it).
        th.alerts.update_alert(wanted.alert.alert_id, alerts_pb2.AlertDraft(severity="low"))
        wait_until(lambda: (a := held(id_, wanted.alert.alert_id)) and a.version == 2)
    finally:
        network.close()


def test_update_and_withdraw_propagate(alert_net: Network) -> None:
    th, au, nz = (alert_net.nodes[m] for m in ("TH", "AU", "NZ"))
    raised = th.alerts.raise_alert(draft())
    alert_id = raised.alert.alert_id
    wait_until(lambda: held(au, alert_id) and held(nz, alert_id))
    assert au.alerts.check("AA1234567", "THA")[0]
    th.alerts.update_alert(
        alert_id,
        alerts_pb2.AlertDraft(severity="critical", document_number="AA7654321"),
        ("detection_place",),
    )
    wait_until(lambda: (a := held(au, alert_id)) is not None and a.version == 2)
    updated = held(au, alert_id)
    assert updated is not None
    assert updated.severity == "critical" and updated.document_number == "AA7654321"
    assert updated.detection_place == ""
    wait_until(lambda: (a := held(nz, alert_id)) is not None and a.version == 2)
    th.alerts.withdraw_alert(alert_id)
    wait_until(lambda: all((a := held(n, alert_id)) is not None and a.withdrawn for n in (au, nz)))
    assert au.alerts.check("AA7654321", "THA")[0] == []
    assert len(au.alerts.versions(alert_id)) == 3


def test_the_end_of_the_backlog_is_confirmed_at_once_after_a_delivery(
    alert_net: Network,
) -> None:
    th, au = alert_net.nodes["TH"], alert_net.nodes["AU"]
    raised = th.alerts.raise_alert(draft())
    # No heartbeat within the stream's lifetime: only the confirmation can end the wait.
    th.alerts.heartbeat_s = 3600

    def fill(request: alerts_pb2.AlertsRequest) -> None:
        request.after_position = raised.position - 1

    got: list[alerts_pb2.AlertsResponse] = []
    for answer in au.peers.stream(ALERTS, responder="TH", purpose=PURPOSE, fill=fill, timeout_s=20):
        got.append(answer.response)
        if len(got) == 2:
            break
    # The backlog's last entry was delivered; the confirmation follows it (§2 step 2).
    assert [(m.position, m.HasField("alert")) for m in got] == [
        (raised.position, True),
        (raised.position, False),
    ]


def test_subscriber_down_catches_up_with_exactly_what_it_missed(alert_net: Network) -> None:
    th = alert_net.nodes["TH"]
    first = th.alerts.raise_alert(draft())
    wait_until(lambda: held(alert_net.nodes["AU"], first.alert.alert_id))
    au_layout = alert_net.layout("AU")
    set_node_config(au_layout, listen=alert_net.nodes["AU"].address)
    alert_net.stop_node("AU")
    missed = [th.alerts.raise_alert(draft(document_number=f"AB00000{i}")) for i in range(3)]
    au = alert_net.start_node("AU")
    wait_until(lambda: all(held(au, m.alert.alert_id) for m in missed))
    time.sleep(0.3)  # anything more would have arrived with them
    assert au.alerts.deliveries == 3 and au.alerts.duplicates == 0
    assert {h.alert.alert_id for h in au.alerts.latest() if h.via == "TH"} == {
        first.alert.alert_id,
        *(m.alert.alert_id for m in missed),
    }


def test_raiser_restart_mid_stream_loses_nothing(alert_net: Network) -> None:
    raised = [alert_net.nodes["TH"].alerts.raise_alert(draft(document_number="AC0000001"))]
    wait_until(lambda: held(alert_net.nodes["AU"], raised[0].alert.alert_id))
    th = restart(alert_net, "TH")
    raised += [th.alerts.raise_alert(draft(document_number=f"AC00000{i}")) for i in (2, 3)]
    # Subscribers noticed the stream end, reconnected with backoff and resumed.
    subscribers = [alert_net.nodes["AU"], alert_net.nodes["NZ"]]
    wait_until(lambda: all(held(n, r.alert.alert_id) for n in subscribers for r in raised), 30)
    assert alert_net.nodes["AU"].alerts.duplicates == 0


# -- relays cannot alter or forge -----------------------------------------------------------


def _relay_into_log(node: NodeServer, envelopes: list[bytes]) -> None:
    """Put copies into node's alert log as a relaying node's operator could (node stopped)."""
    conn = sqlite3.connect(node.layout.state_db)
    with conn:
        for i, raw in enumerate(envelopes):
            conn.execute(
                "INSERT INTO alert_log (alert_id, version, envelope, at_ms) VALUES (?, ?, ?, ?)",
                (f"relayed-{i}", i + 1, raw, now_ms()),
            )
    conn.close()


def test_altered_or_forged_copies_from_a_relay_are_rejected_and_logged(
    alert_net: Network,
) -> None:
    th, au, nz = (alert_net.nodes[m] for m in ("TH", "AU", "NZ"))
    raised = th.alerts.raise_alert(draft())
    alert_id = raised.alert.alert_id
    wait_until(lambda: held(au, alert_id))
    genuine = next(h for h in au.alerts.latest() if h.alert.alert_id == alert_id).envelope
    # 1. The relay changes the document number inside TH's signed copy.
    altered = parse_envelope(genuine.SerializeToString())
    altered.payload = altered.payload.replace(b"AA1234567", b"ZZ1234567")
    # 2. The relay signs its own "update" of TH's alert; 3. it claims TH's alert id as its own.
    original = Alert.from_proto(_payload(genuine))
    au_key = alert_net.layout("AU").load_signing_key()
    forged_update = sign_document(
        replace(original, version=2, severity="low").to_proto(), [au_key]
    ).to_proto()
    hijack = sign_document(
        replace(redact(original, ()), raised_by="AU", version=2, withdrawn=True).to_proto(),
        [au_key],
    ).to_proto()
    wait_until(lambda: held(nz, alert_id))
    set_node_config(alert_net.layout("AU"), listen=au.address)
    alert_net.stop_node("AU")
    _relay_into_log(
        au,
        [e.SerializeToString() for e in (altered, forged_update, hijack, genuine)],
    )
    au = alert_net.start_node("AU")
    wait_until(lambda: len(nz.alerts.store.rejections()) >= 3)
    wait_until(lambda: held(nz, alert_id) is not None)
    reasons = [r[2] for r in nz.alerts.store.rejections()]
    assert reasons == ["bad_signature", "not_raiser", "not_raiser"]
    assert all(r[1] == "AU" for r in nz.alerts.store.rejections())
    # NZ holds TH's alert (the genuine copy AU relayed unchanged) and nothing forged.
    mine = held(nz, alert_id)
    assert mine is not None and mine.version == 1 and mine.raised_by == "TH"
    assert mine.severity == "high" and not mine.withdrawn
    rejected = [r for r in nz.audit.records() if r.event.query_type == "AlertReceive"]
    assert [r.event.reason for r in rejected] == reasons
    # AU's own operator cannot update TH's alert either.
    with pytest.raises(Exception) as info:
        au.alerts.update_alert(alert_id, alerts_pb2.AlertDraft(severity="low"))
    assert getattr(info.value, "reason", "") == "not_raiser"


def _payload(envelope: Any) -> alerts_pb2.Alert:
    msg = alerts_pb2.Alert()
    msg.ParseFromString(envelope.payload)
    return msg


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"category": "photocopied"}, "unknown_fraud_type"),
        ({"issuing_state": "XYZ"}, "unknown_issuing_state"),
        ({"modus_operandi": "x" * 1001}, "text_too_long"),
        ({"security_features": "bidi \u202e override"}, "bad_text"),
        ({"valid_until": "2020-01-01"}, "valid_until_past"),
        ({"detection_place": "ZZZZZ"}, "unknown_location"),
        ({"document_number": "", "series": ""}, "no_document"),
        ({"number_range_first": "AA100", "number_range_last": "AA1"}, "invalid_alert"),
    ],
)
def test_bad_alerts_are_refused_naming_the_field_not_the_value(
    alert_net: Network, changes: dict[str, str], reason: str
) -> None:
    stub, md = operator(alert_net.nodes["TH"])
    with pytest.raises(grpc.RpcError) as info:
        stub.Raise(alerts_pb2.RaiseAlertRequest(draft=draft(**changes)), metadata=md, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(info.value) == reason
    for value in changes.values():
        if len(value) > 3:
            assert value not in (info.value.details() or "")
    assert alert_net.nodes["TH"].alerts.store.log_head() == 0


def test_update_of_another_members_alert_is_refused(alert_net: Network) -> None:
    raised = alert_net.nodes["TH"].alerts.raise_alert(draft())
    au = alert_net.nodes["AU"]
    wait_until(lambda: held(au, raised.alert.alert_id))
    stub, md = operator(au)
    calls: list[Callable[[], object]] = [
        lambda: stub.Update(
            alerts_pb2.UpdateAlertRequest(
                alert_id=raised.alert.alert_id, changes=alerts_pb2.AlertDraft(severity="low")
            ),
            metadata=md,
            timeout=10,
        ),
        lambda: stub.Withdraw(
            alerts_pb2.WithdrawAlertRequest(alert_id=raised.alert.alert_id),
            metadata=md,
            timeout=10,
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(info.value) == "not_raiser"


def test_update_cannot_change_what_identifies_the_document(alert_net: Network) -> None:
    th = alert_net.nodes["TH"]
    raised = th.alerts.raise_alert(draft())
    with pytest.raises(Exception) as info:
        th.alerts.update_alert(raised.alert.alert_id, alerts_pb2.AlertDraft(issuing_state="MYS"))
    assert getattr(info.value, "reason", "") == "immutable_field"


# -- the CLI, as a user runs it ------------------------------------------------------------------

MRZ_TD3 = (
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10"
)


def test_cli_raise_check_show_and_malformed_mrz(alert_net: Network) -> None:
    th_dir = str(alert_net.layout("TH").root)
    au_dir = str(alert_net.layout("AU").root)
    au = alert_net.nodes["AU"]
    out = rcf(
        "alert", "raise", "--node-dir", th_dir, "--fraud-type", "counterfeit",
        "--issuer", "UTO", "--document-type", "passport", "--range", "L898902C0-L898902C9",
        "--severity", "critical", "--json",
    )  # fmt: skip
    assert out.returncode == 1 and "issuing state" in out.stderr  # UTO is ICAO's specimen state
    out = rcf(
        "alert", "raise", "--node-dir", th_dir, "--fraud-type", "counterfeit",
        "--issuer", "tha", "--document-type", "passport", "--range", "L898902C0-L898902C9",
        "--severity", "critical", "--place", "THBKK", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    wait_until(au.alerts.latest)
    hit = rcf("alert", "check", "--node-dir", au_dir, "--number", "L898902C3", "--issuer", "THA")
    assert hit.returncode == 1, hit.stderr
    assert "HIT" in hit.stdout and "raised by TH" in hit.stdout and "number_range" in hit.stdout
    miss = rcf("alert", "check", "--node-dir", au_dir, "--number", "X1", "--issuer", "THA")
    assert miss.returncode == 0 and "no alert matches" in miss.stdout
    mrz_miss = rcf("alert", "check", "--node-dir", au_dir, "--mrz", MRZ_TD3)
    assert mrz_miss.returncode == 0, mrz_miss.stderr  # issued by UTO, not THA
    bad = rcf("alert", "check", "--node-dir", au_dir, "--mrz", MRZ_TD3.replace("10", "11"))
    assert bad.returncode == 1 and "MRZ is malformed" in bad.stderr
    assert "L898902C3" not in bad.stderr and "Traceback" not in bad.stderr
    unknown = rcf(
        "alert", "raise", "--node-dir", th_dir, "--fraud-type", "photocopied", "--issuer", "THA",
        "--document-type", "passport", "--number", "A1",
    )  # fmt: skip
    assert unknown.returncode == 2 and "photocopied" in unknown.stderr
    listed = rcf("alert", "list", "--node-dir", au_dir, "--json")
    assert listed.returncode == 0 and '"verified": true' in listed.stdout
