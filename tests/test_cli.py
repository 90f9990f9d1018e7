"""The rcf command end to end, as a subprocess, as a user runs it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli_helpers import fails, ok, rcf, serving

# Many servers on one machine: loopback, free ports, --local (see docs/deploy.md for hosts).
LOCAL_HUB = ("--local", "--listen", "127.0.0.1:0", "--enroll-listen", "127.0.0.1:0")
LOCAL_NODE = ("--local", "--listen", "127.0.0.1:0")


def test_version_and_help() -> None:
    assert ok("--version").startswith("rcf, version ")
    assert "hub" in ok("--help")


def test_hub_admin_and_node_operator_flow(tmp_path: Path) -> None:
    hub = str(tmp_path / "hub")
    ok("hub", "init", "--hub-dir", hub, "--network", "test", *LOCAL_HUB)
    ok(
        "hub",
        "member",
        "add",
        "TH",
        "--hub-dir",
        hub,
        "--name",
        "Thailand",
        "--group",
        "steering-group",
    )
    ok("hub", "member", "add", "AU", "--hub-dir", hub, "--name", "Australia")
    ok("hub", "member", "add", "NZ", "--hub-dir", hub, "--name", "New Zealand")
    out = ok(
        "hub",
        "ncp",
        "add",
        "TH",
        "--hub-dir",
        hub,
        "--agency",
        "Royal Thai Police",
        "--role",
        "duty desk",
        "--name",
        "AHTD",
        "--language",
        "th",
        "--language",
        "en",
    )
    ncp_id = out.split()[1]
    ok("hub", "ncp", "update", ncp_id, "--hub-dir", hub, "--phone", "+66 2 000")
    [ncp] = json.loads(ok("hub", "ncp", "list", "--hub-dir", hub, "--json"))
    assert ncp["phone"] == "+66 2 000" and ncp["languages"] == ["th", "en"]

    with serving("hub", "serve", "--hub-dir", hub, ready=tmp_path / "hub" / "hub-runtime.json"):
        # Join token over the wire for TH and AU.
        for member in ("TH", "AU"):
            token = ok("hub", "token", "create", member, "--hub-dir", hub, "--local").strip()
            ok(
                "node",
                "init",
                "--node-dir",
                str(tmp_path / member),
                "--member",
                member,
                "--join-token",
                token,
                *LOCAL_NODE,
            )
        # The token is one-time.
        fails(
            "node",
            "init",
            "--node-dir",
            str(tmp_path / "TH2"),
            "--member",
            "TH",
            "--join-token",
            token.replace("AU", "AU"),
            *LOCAL_NODE,
        )
        # Offline file exchange for NZ.
        nz = str(tmp_path / "NZ")
        ok("node", "init", "--node-dir", nz, "--member", "NZ", "--offline", *LOCAL_NODE)
        fails("node", "serve", "--node-dir", nz)  # not enrolled yet
        ok(
            "hub",
            "enroll",
            "--hub-dir",
            hub,
            "--request",
            f"{nz}/enroll-request.json",
            "--out",
            str(tmp_path / "nz-response.json"),
            "--local",
        )
        ok("node", "enroll", "--node-dir", nz, "--response", str(tmp_path / "nz-response.json"))

        with (
            serving(
                "node",
                "serve",
                "--node-dir",
                str(tmp_path / "TH"),
                ready=tmp_path / "TH" / "node-runtime.json",
            ),
            serving(
                "node",
                "serve",
                "--node-dir",
                str(tmp_path / "AU"),
                ready=tmp_path / "AU" / "node-runtime.json",
            ),
            serving("node", "serve", "--node-dir", nz, ready=tmp_path / "NZ" / "node-runtime.json"),
        ):
            for member in ("TH", "AU", "NZ"):
                ok("node", "refresh", "--node-dir", str(tmp_path / member))
            results = json.loads(
                ok("ping", "--node-dir", str(tmp_path / "AU"), "TH", "NZ", "--count", "2", "--json")
            )
            assert [r["member_id"] for r in results] == ["TH", "TH", "NZ", "NZ"]
            assert all(r["ok"] and r["signer"] == r["member_id"] for r in results)
            status = json.loads(ok("node", "status", "--node-dir", str(tmp_path / "AU"), "--json"))
            assert status["member_id"] == "AU" and status["directory_serial"] > 0

            members = json.loads(ok("hub", "member", "list", "--hub-dir", hub, "--json"))
            assert {m["member_id"]: bool(m["endpoint"]) for m in members} == {
                "AU": True,
                "NZ": True,
                "TH": True,
            }

            ok("hub", "member", "suspend", "AU", "--hub-dir", hub)
            ok("node", "refresh", "--node-dir", str(tmp_path / "TH"))
            refused = rcf("ping", "--node-dir", str(tmp_path / "AU"), "TH", "--json")
            assert refused.returncode == 1
            assert "suspended" in json.loads(refused.stdout)[0]["error"]
            ok("hub", "member", "reinstate", "AU", "--hub-dir", hub)
            ok("node", "refresh", "--node-dir", str(tmp_path / "TH"))
            ok("ping", "--node-dir", str(tmp_path / "AU"), "TH")

        # Nodes stopped, hub still up: TH rotates its keys with a fresh token.
        token = ok("hub", "token", "create", "TH", "--hub-dir", hub, "--local").strip()
        out = ok("node", "rotate-keys", "--node-dir", str(tmp_path / "TH"), "--join-token", token)
        assert out.startswith("new signing key ed25519:")

        # Servers stopped: the logs are complete and verify (under the old key, still listed).
        th_log = json.loads(ok("audit", "show", "--node-dir", str(tmp_path / "TH"), "--json"))
        pings = [r for r in th_log if r["query_type"] == "Ping"]
        assert [r["decision"] for r in pings] == ["answered", "answered", "refused", "answered"]
        assert [r["reason"] for r in pings] == ["ok", "ok", "member_suspended", "ok"]
        assert {r["requester"] for r in pings} == {"AU"}
        au_log = json.loads(ok("audit", "show", "--node-dir", str(tmp_path / "AU"), "--json"))
        sent = [r for r in au_log if r["query_type"] == "Ping" and r["side"] == "requester"]
        assert [r["responder"] for r in sent] == ["TH", "TH", "NZ", "NZ", "TH", "TH"]
        # Both sides of each query (the refused one too) agree on its id and digest.
        by_id = {r["query_id"]: r for r in sent}
        for r in pings:
            assert by_id[r["query_id"]]["request_sha256"] == r["request_sha256"]
            assert by_id[r["query_id"]]["response_sha256"] == r["response_sha256"]
        assert "intact" in ok("audit", "verify", "--node-dir", str(tmp_path / "TH"))


def test_audit_verify_detects_tampering(tmp_path: Path) -> None:
    import sqlite3

    from tests.network import Network

    net = Network(tmp_path)
    try:
        net.start_hub()
        net.add_node("AU")
        th_node = net.add_node("TH")
        net.refresh_all()
        for _ in range(3):
            net.client("AU").ping(th_node)
    finally:
        net.close()
    th = tmp_path / "TH"
    assert "intact" in ok("audit", "verify", "--node-dir", str(th))
    verdict = json.loads(ok("audit", "verify", "--node-dir", str(th), "--json"))
    assert verdict["intact"] and verdict["records"] >= 3
    conn = sqlite3.connect(th / "state.db")
    conn.execute("DROP TRIGGER audit_no_update")  # an attacker with file access
    conn.execute("UPDATE audit SET requester = 'XX' WHERE seq = 2")
    conn.commit()
    conn.close()
    assert "altered" in fails("audit", "verify", "--node-dir", str(th))


@pytest.mark.timeout(300)  # the whole demo; minutes on a loaded machine
def test_demo_runs_end_to_end_and_cleans_up(tmp_path: Path) -> None:
    # Without --dir: a temporary folder, removed at the end, except for what the demo
    # tells the user to open, which is kept in the current folder.
    result = rcf("demo", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "FAILED" not in result.stdout
    assert "demo complete: network stopped" in result.stdout
    assert "hash chain and signatures verified" in result.stdout
    found = re.search(r"rcf demo in (\S+)", result.stdout)
    assert found, result.stdout[:500]
    assert not Path(found.group(1)).exists()
    kept = tmp_path / "rcf-demo-output"
    assert sorted(p.name for p in kept.iterdir()) == [
        "regional-movements-2025.png",
        "situation-2025-Q3.html",
    ]
    assert (kept / "regional-movements-2025.png").read_bytes().startswith(b"\x89PNG")
    last_lines = result.stdout.rstrip().splitlines()[-3:]
    assert any(str(kept / "situation-2025-Q3.html") in line for line in last_lines), last_lines


def test_bad_input_is_one_sentence_and_non_zero(tmp_path: Path) -> None:
    hub = str(tmp_path / "hub")
    assert "no hub folder" in fails("hub", "member", "list", "--hub-dir", hub)
    ok("hub", "init", "--hub-dir", hub, "--local")
    assert "already holds a hub" in fails("hub", "init", "--hub-dir", hub, "--local")
    assert "at least 1h" in fails(
        "hub", "init", "--hub-dir", str(tmp_path / "h2"), "--directory-ttl", "5s"
    )
    assert "not a duration" in fails(
        "hub", "init", "--hub-dir", str(tmp_path / "h3"), "--directory-ttl", "soon"
    )
    assert "not a member id" in fails("hub", "member", "add", "T_H", "--hub-dir", hub)
    assert "No member XX" in fails("hub", "member", "suspend", "XX", "--hub-dir", hub)
    assert "not running" in fails("hub", "token", "create", "TH", "--hub-dir", hub, "--local")
    node = str(tmp_path / "node")
    assert "not an rcf join token" in fails(
        "node", "init", "--node-dir", node, "--member", "TH", "--join-token", "hello"
    )
    assert "damaged" in fails(
        "node", "init", "--node-dir", node, "--member", "TH", "--join-token", "rcfjoin1.AAAA"
    )
    assert "either --join-token" in fails("node", "init", "--node-dir", node, "--member", "TH")
    assert "no node folder" in fails("node", "serve", "--node-dir", node)
    assert "no node folder" in fails("ping", "--node-dir", node, "TH")
    bogus = tmp_path / "bogus.json"
    bogus.write_text("{not json")
    assert "not valid JSON" in fails(
        "hub",
        "enroll",
        "--hub-dir",
        hub,
        "--request",
        str(bogus),
        "--out",
        str(tmp_path / "o.json"),
        "--hub-address",
        "x:1",
    )
    assert "'nosuch' is not one of" in fails("bench", "nosuch")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert "not empty" in fails("demo", "--dir", str(tmp_path / "full"))


def test_hub_dictionary_export_edit_publish(tmp_path: Path) -> None:
    hub = str(tmp_path / "hub")
    ok("hub", "init", "--hub-dir", hub, "--local")
    shown = json.loads(ok("hub", "dictionary", "show", "--hub-dir", hub, "--json"))
    assert shown["version"] == "1.0"
    exported = tmp_path / "d.json"
    ok("hub", "dictionary", "export", "--hub-dir", hub, "--out", str(exported))
    d = json.loads(exported.read_text())
    d["version"] = "1.1"
    movements = next(ds for ds in d["datasets"] if ds["name"] == "irregular_movements")
    outcome = next(dim for dim in movements["dimensions"] if dim["name"] == "outcome")
    outcome["codes"].append("relocated")
    exported.write_text(json.dumps(d))
    assert "1.1 published" in ok("hub", "dictionary", "publish", "--hub-dir", hub, str(exported))
    directory = json.loads(ok("hub", "directory", "--hub-dir", hub, "--json"))
    assert directory["dictionary_version"] == "1.1"
    d["version"] = "1.2"
    outcome["codes"].remove("dead")
    exported.write_text(json.dumps(d))
    assert "removes code 'dead'" in fails(
        "hub", "dictionary", "publish", "--hub-dir", hub, str(exported)
    )
    assert (
        json.loads(ok("hub", "dictionary", "show", "--hub-dir", hub, "--json"))["version"] == "1.1"
    )


def test_enrolment_against_an_unreachable_hub_can_be_retried(tmp_path: Path) -> None:
    hub = str(tmp_path / "hub")
    ok("hub", "init", "--hub-dir", hub, "--local")
    ok("hub", "member", "add", "TH", "--hub-dir", hub)
    token = ok(
        "hub", "token", "create", "TH", "--hub-dir", hub,
        "--hub-address", "127.0.0.1:9", "--enroll-address", "127.0.0.1:9", "--local",
    ).strip()  # fmt: skip
    node = tmp_path / "TH"
    init = ("node", "init", "--node-dir", str(node), "--member", "TH", *LOCAL_NODE)
    result = rcf(*init, "--join-token", token)
    assert result.returncode == 3 and "hub is unreachable" in result.stderr  # exit code table
    # Nothing half-made is left behind: the same command can simply be run again.
    assert not (node / "node.toml").exists()
    assert not (node / "signing.key").exists() and not (node / "tls.key").exists()
    assert "for TH, not AU" in fails(
        "node", "init", "--node-dir", str(tmp_path / "AU"), "--member", "AU", "--join-token", token,
        *LOCAL_NODE,
    )  # fmt: skip
