"""`rcf policy …` as an admin runs it: the CLI in a subprocess against a node folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.network import Network, reason_of

RCF = str(Path(sys.executable).parent / "rcf")
EXAMPLES = Path(__file__).resolve().parent.parent / "policies"


def rcf(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [RCF, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


PING_SG = """\
[policy]
member = "TH"

[[rule]]
id = "ping-sg"
requesters = ["group:steering-group"]
query = "Ping"

[[rule]]
id = "sg-movements"
requesters = ["group:steering-group"]
query = "Aggregate"
datasets = ["irregular_movements"]
group_by = ["nationality", "route"]
min_cell_size = 5
noise = "geometric"
epsilon = 0.5
budget = { epsilon = 5.0, per = "month" }
"""


def test_validate_reports_every_error_with_file_line_and_hint(tmp_path: Path) -> None:
    bad = write(
        tmp_path / "bad.toml",
        '[[rule]]\nid = "a"\nrequesters = ["*"]\nquery = "Aggregate"\n'
        'datasets = ["irregular_movements"]\nmin_cell_size = 0\ngroup_by = ["routes"]\n'
        "epsilon = inf\ncolour = 1\n",
    )
    r = rcf("policy", "validate", bad, "--node-dir", tmp_path / "none", ok=False)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if ": error: " in x]
    assert lines == [
        f"{bad}:6: error: 'min_cell_size' must be at least 1, not 0.",
        f"{bad}:7: error: rule 'a': dataset 'irregular_movements' has no dimension 'routes'.",
        f"{bad}:8: error: 'epsilon' must be a finite number of at least 0.000001, not inf.",
        f"{bad}:9: error: unknown key 'colour' in rule 'a'.",
    ]
    assert r.stderr.count("    hint: ") >= 4
    assert r.stdout.strip() == f"{bad}: INVALID: 4 errors, 0 warnings"
    syntax = write(tmp_path / "syntax.toml", '[[rule]]\nid = "a\n')
    r = rcf("policy", "validate", syntax, "--node-dir", tmp_path / "none", ok=False)
    assert f"{syntax}:2: error: not valid TOML" in r.stderr
    missing = rcf("policy", "validate", tmp_path / "nope.toml", ok=False)
    assert missing.returncode == 1 and missing.stderr.startswith("error: Cannot read")


def test_a_bad_query_type_hides_no_later_error(tmp_path: Path) -> None:
    bad = write(
        tmp_path / "bad.toml",
        '[[rule]]\nid = "a"\nrequesters = ["*"]\nquery = "Agregate"\n'
        'datasets = ["irregular_movements", "movementz"]\ngroup_by = ["routes"]\n'
        '[[rule]]\nid = "b"\nrequesters = ["*"]\nquery = "Ping"\n',
    )
    r = rcf("policy", "validate", bad, "--node-dir", tmp_path / "none", ok=False)
    lines = [x for x in r.stderr.splitlines() if ": error: " in x]
    assert lines == [
        f"{bad}:4: error: 'Agregate' is not a query type.",
        f"{bad}:5: error: rule 'a': dataset 'movementz' is not in the data dictionary "
        "(version 1.0).",
        f"{bad}:6: error: rule 'a': dataset 'irregular_movements' has no dimension 'routes'.",
    ]
    assert r.stdout.strip() == f"{bad}: INVALID: 3 errors, 0 warnings"
    one = write(tmp_path / "one.toml", '[[rule]]\nid = "a"\nrequesters = ["*"]\nquery = "Pong"\n')
    r = rcf("policy", "validate", one, "--node-dir", tmp_path / "none", ok=False)
    assert r.stdout.strip() == f"{one}: INVALID: 1 error, 0 warnings"


def test_validate_empty_file_warns_loudly_and_json(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.toml", "# nothing\n")
    r = rcf("policy", "validate", empty, "--node-dir", tmp_path / "none")
    assert "DENIES EVERY QUERY" in r.stderr
    assert "valid: 0 errors, 1 warning" in r.stdout
    data = json.loads(rcf("policy", "validate", empty, "--json").stdout)
    assert data["valid"] is True and data["rules"] == 0
    assert data["issues"][0]["severity"] == "warning"


@pytest.fixture
def th_net(tmp_path: Path) -> Network:
    net = Network(tmp_path / "net")
    net.start_hub()
    net.add_node("AU", groups=("steering-group",))
    net.add_node("TH", groups=("steering-group",))
    net.add_node("NZ")
    net.refresh_all()
    return net


def test_admin_cycle_on_a_running_node(th_net: Network, tmp_path: Path) -> None:
    net = th_net
    try:
        th_dir = net.layout("TH").root
        th = net.nodes["TH"]
        au, nz = net.client("AU"), net.client("NZ")
        nz.ping(th)

        # validate against the node's directory: unknown members are errors.
        stranger = write(
            tmp_path / "stranger.toml", PING_SG.replace("group:steering-group", "XX", 1)
        )
        r = rcf("policy", "validate", stranger, "--node-dir", th_dir, ok=False)
        assert f"{stranger}:6: error: rule 'ping-sg': member 'XX' is not in the network" in r.stderr

        new = write(tmp_path / "th.toml", PING_SG)
        diff = json.loads(rcf("policy", "diff", new, "--node-dir", th_dir, "--json").stdout)
        assert {(c["rule_id"], c["change"]) for c in diff["rules"]} == {
            ("ping", "removed"), ("ping-sg", "added"), ("sg-movements", "added"),
        }  # fmt: skip
        whom = {(a["member"], a["query"], a["dataset"]): a for a in diff["access"]}
        assert whom[("NZ", "Ping", "")]["after"] == "denied"
        assert whom[("AU", "Aggregate", "irregular_movements")]["before"] == "denied"
        assert ("AU", "Ping", "") in whom  # changes rule, same access: still listed
        human = rcf("policy", "diff", new, "--node-dir", th_dir).stdout
        assert "what changes for whom" in human

        r = rcf("policy", "apply", new, "--node-dir", th_dir)
        assert "policy version 2 is active (hot-reloaded)" in r.stdout
        with pytest.raises(grpc.RpcError) as refused:
            nz.ping(th)
        assert reason_of(refused.value) == "not_permitted"
        au.ping(th)

        # Piped: within 100 columns (or COLUMNS), and only the changed term, before and after.
        stricter = write(
            tmp_path / "th-k10.toml", PING_SG.replace("min_cell_size = 5", "min_cell_size = 10")
        )
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        piped = subprocess.run(
            [RCF, "policy", "diff", str(stricter), "--node-dir", str(th_dir)],
            capture_output=True, text=True, timeout=60, check=False, env=env,
        )  # fmt: skip
        assert piped.returncode == 0, piped.stderr
        lines = piped.stdout.splitlines()
        assert lines and max(map(len, lines)) <= 100
        assert "min cell 5" in piped.stdout and "min cell 10" in piped.stdout
        assert "geometric noise" not in piped.stdout  # unchanged terms are not repeated
        narrow = subprocess.run(
            [RCF, "policy", "diff", str(stricter), "--node-dir", str(th_dir)],
            capture_output=True, text=True, timeout=60, check=False, env={**env, "COLUMNS": "90"},
        )  # fmt: skip
        assert max(map(len, narrow.stdout.splitlines())) <= 90  # no word here is longer

        shown = json.loads(rcf("policy", "show", "--node-dir", th_dir, "--json").stdout)
        assert shown["version"] == 2 and shown["active"] is True
        assert [r["id"] for r in shown["rules"]] == ["ping-sg", "sg-movements"]
        assert rcf("policy", "show", "--node-dir", th_dir, "--source").stdout == PING_SG
        assert "sg-movements" in rcf("policy", "show", "--node-dir", th_dir).stdout

        explain = json.loads(
            rcf(
                "policy", "explain", "--node-dir", th_dir, "--requester", "AU", "--query",
                "Aggregate", "--dataset", "irregular_movements", "--group-by", "nationality,sex",
                "--json",
            ).stdout
        )  # fmt: skip
        assert (explain["allowed"], explain["reason"], explain["rule"]) == (
            False, "dimension_not_allowed", "sg-movements",
        )  # fmt: skip
        assert "['sex'] not in" in explain["explanation"]
        assert explain["requester_told"] == "not_permitted"
        ok = rcf(
            "policy", "explain", "--node-dir", th_dir, "--requester", "AU", "--query",
            "Aggregate", "--dataset", "irregular_movements", "--group-by", "route",
        ).stdout  # fmt: skip
        assert "ALLOWED under active policy version 2" in ok
        assert "budget: 0 of 5 epsilon used" in ok
        nz_ping = rcf("policy", "explain", "--node-dir", th_dir, "--requester", "NZ",
                      "--query", "Ping").stdout  # fmt: skip
        assert "REFUSED (not_authorized)" in nz_ping and "does not name NZ" in nz_ping
        assert "the requester is told only: reason code 'not_permitted'" in nz_ping

        history = json.loads(rcf("policy", "history", "--node-dir", th_dir, "--json").stdout)
        assert [(h["version"], h["action"], h["signature"], h["active"]) for h in history] == [
            (1, "seed", "verified", False), (2, "apply", "verified", True),
        ]  # fmt: skip

        r = rcf("policy", "rollback", "1", "--node-dir", th_dir)
        assert "policy version 3 is active (restores version 1; hot-reloaded)" in r.stdout
        nz.ping(th)
        assert rcf("policy", "rollback", "9", "--node-dir", th_dir, ok=False).stderr.startswith(
            "error: There is no policy version 9"
        )

        # With the node stopped, apply acts on the folder; the node starts with it.
        net.stop_node("TH")
        r = rcf("policy", "apply", new, "--node-dir", th_dir)
        assert "policy version 4 is active (node not running" in r.stdout
        th = net.start_node("TH")
        net.refresh_all()
        assert th.policy.gate is not None and th.policy.gate.policy.version == 4
        au.ping(th)
    finally:
        net.close()
