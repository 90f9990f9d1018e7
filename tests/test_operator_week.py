"""An operator's and auditor's first week (issue 26), through the CLI as a subprocess
against real hub and node folders."""

from __future__ import annotations

import json
from pathlib import Path

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
