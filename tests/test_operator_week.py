"""An operator's and auditor's first week (issue 26), through the CLI as a subprocess
against real hub and node folders."""

from __future__ import annotations

import json
from pathlib import Path

from rcf.trust.join_token import JoinToken
from tests.cli_helpers import ok, rcf
from tests.network import Network


def test_ncps_warned_about_at_the_hub_and_listed_at_a_node(tmp_path: Path) -> None:
    net = Network(tmp_path)
    try:
        net.start_hub()
        net.add_node("AU")
        net.add_node("TH")
        hub = str(net.hub_layout.root)
        status = rcf("hub", "status", "--hub-dir", hub)
        assert status.returncode == 0
        assert "no National Contact Point for AU, TH" in status.stderr
        ok("hub", "ncp", "add", "TH", "--hub-dir", hub, "--agency", "Royal Thai Police",
           "--role", "duty desk", "--name", "AHTD", "--language", "th")  # fmt: skip
        status = rcf("hub", "status", "--hub-dir", hub)
        assert "no National Contact Point for AU:" in status.stderr
        assert json.loads(ok("hub", "status", "--hub-dir", hub, "--json"))[
            "members_without_ncp"
        ] == ["AU"]
        net.refresh_all()
    finally:
        net.close()
    # The hub is down now: the node answers from its cached, signed directory.
    au = str(tmp_path / "AU")
    listed = json.loads(ok("ncp", "list", "--node-dir", au, "--json"))
    assert [(r["member_id"], r["agency"], r["languages"]) for r in listed["ncps"]] == [
        ("TH", "Royal Thai Police", ["th"])
    ]
    assert "Royal Thai Police" in ok("ncp", "list", "--node-dir", au, "--member", "TH")
    none = rcf("ncp", "list", "--node-dir", au, "--member", "AU")
    assert none.returncode == 0 and "no NCP for AU" in none.stderr
    unknown = rcf("ncp", "list", "--node-dir", au, "--member", "XX")
    assert unknown.returncode == 1 and "XX is not a member" in unknown.stderr


def test_every_error_exits_in_its_class(tmp_path: Path) -> None:
    """Each failure an operator meets, against the README's table: 1 for what will not
    change by waiting, 2 for usage, 3 for what may work later; one sentence, no gRPC text."""
    net = Network(tmp_path)
    try:
        net.start_hub()
        net.add_node("AU")
        net.add_node("TH")
        net.refresh_all()
        au = str(tmp_path / "AU")
        net.registry.add_member("NZ", name="NZ")
        assert net.hub is not None
        token = JoinToken(
            secret=net.registry.create_join_token("NZ"),
            member_id="NZ",
            hub_address=net.hub.address,
            enroll_address=net.hub.enroll_address,
            ca_pem=net.hub_layout.ca_cert.read_bytes(),
            hub_public_key=net.hub_layout.load_signing_key().public_key,
        )
        used = tmp_path / "used.token"
        used.write_text(token.encode())
        init = ["node", "init", "--member", "NZ", "--join-token-file", str(used), "--local",
                "--public-address", "127.0.0.1:1"]  # fmt: skip
        ok(*init, "--node-dir", str(tmp_path / "NZ"))
        net.stop_node("TH")
        cases: list[tuple[list[str], int, str]] = [
            (["nosuch"], 2, "No such command"),
            (["ping", "TH", "--no-such-option", "--node-dir", au], 2, "No such option"),
            (["query", "aggregate", "--dataset", "irregular_movements", "--from", "2025-13",
              "--members", "TH", "--node-dir", au], 2, "not a month of the form YYYY-MM"),
            (["query", "aggregate", "--dataset", "irregular_movements", "--from", "2025-06",
              "--to", "2025-01", "--members", "TH", "--node-dir", au], 2, "is after --to"),
            (["report", "situation", "--period", "2025-Q5", "--out", str(tmp_path / "r.html"),
              "--node-dir", au], 2, "is not a quarter"),
            ([*init, "--node-dir", str(tmp_path / "NZ2")], 1, "already been used"),
            (["node", "init", "--member", "XX", "--join-token-file", str(used), "--local",
              "--public-address", "127.0.0.1:1", "--node-dir", str(tmp_path / "XX")], 1,
             "not XX"),
            (["ping", "XX", "--node-dir", au], 1, "XX is not a member"),
            (["ncp", "list", "--member", "XX", "--node-dir", au], 1, "XX is not a member"),
            (["ping", "TH", "--node-dir", au], 3, "TH is unreachable"),
            (["node", "status", "--node-dir", str(tmp_path / "TH")], 3, "not running"),
        ]  # fmt: skip
        for args, code, words in cases:
            result = rcf(*args)
            out = result.stderr + result.stdout
            assert (result.returncode, words in out) == (code, True), (args, out)
            assert "Traceback" not in out and "ipv4:" not in out and "UNKNOWN:" not in out
    finally:
        net.close()
