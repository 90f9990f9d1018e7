"""Running the network as an agency would: addresses, fixed ports, serving as a
service, backups, confirmations, exit codes, help, tables and folder hints."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import tarfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from rcf.cli import output as cli_output
from rcf.cli.errors import EXIT_CODES
from rcf.cli.main import rcf as rcf_group
from rcf.node.federation.directory_cache import DirectoryCache
from rcf.node.ops.config import NodeLayout
from rcf.trust.join_token import JoinToken
from tests.cli_helpers import RCF, fails, ok, rcf
from tests.network import Network

ROOT = Path(__file__).parent.parent


# -- public addresses and fixed ports (items 1, 2) ------------------------------------


def test_tokens_and_node_toml_carry_public_addresses_not_listen_ones(tmp_path: Path) -> None:
    hub = str(tmp_path / "hub")
    assert "Give --public-address" in fails("hub", "init", "--hub-dir", hub)
    assert "wildcard address" in fails(
        "hub",
        "init",
        "--hub-dir",
        hub,
        "--public-address",
        "0.0.0.0",  # noqa: S104
    )
    ok("hub", "init", "--hub-dir", hub, "--public-address", "hub.rso.example")
    hub_toml = (tmp_path / "hub" / "hub.toml").read_text()
    assert 'listen = "0.0.0.0:7443"' in hub_toml and 'enroll_listen = "0.0.0.0:7444"' in hub_toml
    assert 'public_address = "hub.rso.example:7443"' in hub_toml
    ok("hub", "member", "add", "th", "--hub-dir", hub)  # member ids: any case
    ok("hub", "member", "add", "AU", "--hub-dir", hub)
    # No running hub needed: tokens come from hub.toml's public addresses.
    token = JoinToken.decode(ok("hub", "token", "create", "th", "--hub-dir", hub))
    assert token.member_id == "TH"
    assert (token.hub_address, token.enroll_address) == (
        "hub.rso.example:7443",
        "hub.rso.example:7444",
    )
    # --hub-address alone moves the enrolment address with it (same host, enrolment port).
    moved = JoinToken.decode(
        ok("hub", "token", "create", "AU", "--hub-dir", hub, "--hub-address", "10.1.2.3:9443")
    )
    assert (moved.hub_address, moved.enroll_address) == ("10.1.2.3:9443", "10.1.2.3:7444")
    err = fails("hub", "token", "create", "AU", "--hub-dir", hub, "--hub-address", "0.0.0.0:7443")
    assert "0.0.0.0:7443 is a wildcard address" in err and "--local" in err
    err = fails("hub", "token", "create", "AU", "--hub-dir", hub, "--hub-address", "localhost:1")
    assert "loopback address" in err

    # A node: a public address is required, the port is fixed (7445), wildcard refused.
    node = str(tmp_path / "TH")
    init = ("node", "init", "--node-dir", node, "--member", "th", "--offline")
    assert "Give --public-address" in fails(*init)
    assert "loopback address" in fails(*init, "--public-address", "127.0.0.1")
    ok(*init, "--public-address", "th-node.example.org")
    ok(
        "hub", "enroll", "--hub-dir", hub, "--request", f"{node}/enroll-request.json",
        "--out", str(tmp_path / "resp.json"),
    )  # fmt: skip
    ok("node", "enroll", "--node-dir", node, "--response", str(tmp_path / "resp.json"))
    node_toml = (tmp_path / "TH" / "node.toml").read_text()
    assert 'listen = "0.0.0.0:7445"' in node_toml
    assert 'public_address = "th-node.example.org:7445"' in node_toml
    assert 'hub_address = "hub.rso.example:7443"' in node_toml
    # Without a public address a wildcard listen address is refused at start, in one sentence.
    (tmp_path / "TH" / "node.toml").write_text(
        node_toml.replace('public_address = "th-node.example.org:7445"', 'public_address = ""')
    )
    assert "set public_address" in fails("node", "serve", "--node-dir", node)


def test_a_join_token_with_a_loopback_hub_is_refused_without_local(tmp_path: Path) -> None:
    hub = str(tmp_path / "hub")
    ok("hub", "init", "--hub-dir", hub, "--local")
    ok("hub", "member", "add", "TH", "--hub-dir", hub)
    token = ok(
        "hub", "token", "create", "TH", "--hub-dir", hub, "--local",
        "--hub-address", "127.0.0.1:7443",
    ).strip()  # fmt: skip
    err = fails(
        "node", "init", "--node-dir", str(tmp_path / "TH"), "--member", "TH",
        "--join-token", token, "--public-address", "th.example.org",
    )  # fmt: skip
    assert "hub address in this join token" in err and "loopback" in err
    assert not (tmp_path / "TH").exists()


def test_node_refresh_with_the_hub_down_exits_3(tmp_path: Path) -> None:
    net = Network(tmp_path)
    try:
        net.start_hub()
        net.add_node("TH")
        net.stop_hub()
        result = rcf("node", "refresh", "--node-dir", str(tmp_path / "TH"))
        assert result.returncode == 3, result.stderr
        assert "Traceback" not in result.stderr
        # A node that is not running is unavailable too.
        net.stop_node("TH")
        result = rcf("node", "status", "--node-dir", str(tmp_path / "TH"))
        assert result.returncode == 3 and "not running" in result.stderr
    finally:
        net.close()


# -- serving as a service (item 5) ----------------------------------------------------


def test_unit_files_are_valid_and_hardened(tmp_path: Path) -> None:
    for name, command in (("rcf-hub.service", "hub serve"), ("rcf-node@.service", "node serve")):
        text = (ROOT / "deploy" / "systemd" / name).read_text()
        for setting in (
            "User=rcf",
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "StateDirectoryMode=0700",
            "UMask=0077",
            "CapabilityBoundingSet=\n",
            f"ExecStart=/opt/rcf-exchange/.venv/bin/rcf {command}\n",
        ):
            assert setting in text, (name, setting)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    for name in ("rcf-hub.service", "rcf-node@.service"):
        unit = (ROOT / "deploy" / "systemd" / name).read_text()
        target = tmp_path / name.replace("@", "@th")
        target.write_text(unit.replace("/opt/rcf-exchange/.venv/bin/rcf", RCF))
        result = subprocess.run(
            [analyze, "verify", "--man=no", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def _busy_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_serve_logs_ready_and_stopped_and_refuses_a_busy_port(tmp_path: Path) -> None:
    hub = str(tmp_path / "hub")
    ok("hub", "init", "--hub-dir", hub, "--local", "--listen", "127.0.0.1:0",
       "--enroll-listen", "127.0.0.1:0")  # fmt: skip
    with _busy_port() as busy:
        port = busy.getsockname()[1]
        err = fails("hub", "serve", "--hub-dir", hub, "--listen", f"127.0.0.1:{port}")
        assert f"port {port} is already in use" in err
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    err = fails("hub", "serve", "--hub-dir", hub, "--listen", "192.0.2.77:7443")
    assert "192.0.2.77 is not an address of this host" in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert "is not HOST:PORT" in fails("hub", "serve", "--hub-dir", hub, "--listen", "nonsense")

    proc = subprocess.Popen(
        [RCF, "hub", "serve", "--hub-dir", hub],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        ready = proc.stderr.readline()
        assert ready.startswith("hub ready: mutual TLS on 127.0.0.1:"), ready
        assert "enrolment on 127.0.0.1:" in ready
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rest.strip() == "hub stopped (SIGTERM)"
    assert not (tmp_path / "hub" / "hub-runtime.json").exists()


def test_node_serve_refuses_a_busy_port_in_one_sentence(tmp_path: Path) -> None:
    net = Network(tmp_path)
    try:
        net.start_hub()
        net.enroll("TH")
        with _busy_port() as busy:
            port = busy.getsockname()[1]
            err = fails("node", "serve", "--node-dir", str(tmp_path / "TH"), "--listen",
                        f"127.0.0.1:{port}")  # fmt: skip
            assert f"port {port} is already in use" in err and "federation" in err
    finally:
        net.close()


# -- backup and restore (item 6) ------------------------------------------------------


def _audit_count(node: Path) -> int:
    conn = sqlite3.connect(node / "state.db")
    try:
        return int(conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0])
    finally:
        conn.close()


def _serial(node: Path) -> int:
    return int(json.loads(ok("node", "status", "--node-dir", str(node), "--json"))[
        "directory_serial"])  # fmt: skip


def test_backup_online_and_restore_without_rolling_back(tmp_path: Path) -> None:
    net = Network(tmp_path / "net")
    th = tmp_path / "net" / "TH"
    backup = tmp_path / "backups" / "th.tar.gz"
    try:
        net.start_hub()
        net.add_node("AU")
        th_node = net.add_node("TH")
        net.refresh_all()
        for _ in range(3):
            net.client("AU").ping(th_node)
        # Online: the node is serving while the backup is taken.
        out = ok("node", "backup", str(backup), "--node-dir", str(th))
        assert "backup written" in out and "node TH" in out
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600
        with tarfile.open(backup) as tar:
            names = set(tar.getnames())
            assert {
                "state.db",
                "signing.key",
                "tls.key",
                "tls.pem",
                "ca.pem",
                "node.toml",
                "operator.token",
                "directory.signed",
                "backup.json",
            } <= names
            assert not names & {"serve.lock", "node-runtime.json"}
            assert all(m.mode == 0o600 for m in tar.getmembers())
            backed_up = tar.extractfile("state.db")
            assert backed_up is not None
            (tmp_path / "copy.db").write_bytes(backed_up.read())
        conn = sqlite3.connect(tmp_path / "copy.db")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        at_backup = conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
        conn.close()
        assert at_backup >= 3
        assert "exists" in fails("node", "backup", str(backup), "--node-dir", str(th))

        # Refused onto a running node.
        err = fails("node", "restore", str(backup), "--node-dir", str(th), "--yes")
        assert "already running" in err and "Stop it" in err

        # After the backup: more records, and a suspension the node has seen.
        net.client("AU").ping(th_node)
        ok("hub", "member", "suspend", "au", "--hub-dir", str(tmp_path / "net" / "hub"))
        th_node.refresh_directory()
        newer = th_node.directory.peek().serial
        net.stop_node("TH")
    finally:
        net.close()
    assert _audit_count(th) > at_backup
    # Without a terminal, replacing a node needs --yes.
    assert "Give --yes" in fails("node", "restore", str(backup), "--node-dir", str(th))
    assert "restored node TH" in ok("node", "restore", str(backup), "--node-dir", str(th), "--yes")
    assert _audit_count(th) == at_backup
    assert "intact" in ok("audit", "verify", "--node-dir", str(th))
    # The newer directory (AU suspended) stayed: the restore rolled nothing back.
    layout = NodeLayout(th)
    cache = DirectoryCache(
        layout.directory_cache, hub_public_key=layout.load_config().hub_public_key
    )
    assert cache.peek().serial == newer
    member = cache.peek().member("AU")
    assert member is not None and member.status.label == "suspended"

    # Onto a fresh folder (a new host): everything comes back, private.
    fresh = tmp_path / "new-host" / "TH"
    ok("node", "restore", str(backup), "--node-dir", str(fresh))
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert stat.S_IMODE((fresh / "signing.key").stat().st_mode) == 0o600
    assert (fresh / "signing.key").read_bytes() == (th / "signing.key").read_bytes()
    assert "intact" in ok("audit", "verify", "--node-dir", str(fresh))
    # Not a backup, or someone else's node: one sentence.
    (tmp_path / "junk.tar.gz").write_bytes(b"junk")
    assert "not an rcf node backup" in fails(
        "node", "restore", str(tmp_path / "junk.tar.gz"), "--node-dir", str(fresh)
    )


# -- confirmations (item 8) -----------------------------------------------------------


def test_revoke_asks_first(tmp_path: Path) -> None:
    hub = str(tmp_path / "hub")
    ok("hub", "init", "--hub-dir", hub, "--local")
    ok("hub", "member", "add", "TH", "--hub-dir", hub)
    err = fails("hub", "member", "revoke", "th", "--hub-dir", hub)
    assert "Give --yes" in err
    [member] = json.loads(ok("hub", "member", "list", "--hub-dir", hub, "--json"))
    assert member["status"] == "active"
    result = subprocess.run(
        [RCF, "hub", "member", "revoke", "TH", "--hub-dir", hub],
        input="n\n", capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0  # not a terminal: still refused, nothing changed
    assert "revoked" in ok("hub", "member", "revoke", "th", "--hub-dir", hub, "--yes")
    [member] = json.loads(ok("hub", "member", "list", "--hub-dir", hub, "--json"))
    assert member["status"] == "revoked"
    assert "No member XX" in fails("hub", "member", "revoke", "XX", "--hub-dir", hub)


# -- tables, folders, help, exit codes (items 9, 10, 12) ------------------------------


def test_tables_fold_never_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    long_id = "TH-ea3f0c2e-1111-4222-8333-444455556666"
    when = "2026-11-03 12:34:56.789"
    buffer = io.StringIO()
    narrow = Console(file=buffer, width=24, force_terminal=True, color_system=None)
    monkeypatch.setattr(cli_output, "console", narrow)
    cli_output.table("ids", ["id"], [[long_id], [when]])
    text = buffer.getvalue()
    assert "…" not in text
    cells = [m.group(1).strip() for m in re.finditer(r"│(.*)│", text)]
    assert "".join(cells).replace(" ", "") == (long_id + when).replace(" ", "")

    # Piped, any COLUMNS: the whole id on one line, copyable.
    hub = str(tmp_path / "hub")
    ok("hub", "init", "--hub-dir", hub, "--local")
    ok("hub", "member", "add", "TH", "--hub-dir", hub)
    ok("hub", "ncp", "add", "TH", "--hub-dir", hub, "--agency", "Royal Thai Police " * 3,
       "--role", "duty desk", "--name", "AHTD")  # fmt: skip
    [ncp] = json.loads(ok("hub", "ncp", "list", "--hub-dir", hub, "--json"))
    piped = subprocess.run(
        [RCF, "hub", "ncp", "list", "--hub-dir", hub],
        capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "40"},
    )  # fmt: skip
    assert ncp["ncp_id"] in piped.stdout and "…" not in piped.stdout


def test_a_missing_node_folder_names_node_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RCF_NODE_DIR", "RCF_HUB_DIR")}
    result = subprocess.run(
        [RCF, "node", "status"], cwd=tmp_path, env=env, capture_output=True, text=True,
        check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: There is no node folder at rcf-node: give --node-dir DIR or set RCF_NODE_DIR "
        "to the folder 'rcf node init' created."
    )
    result = subprocess.run(
        [RCF, "hub", "member", "list"], cwd=tmp_path, env=env, capture_output=True, text=True,
        check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert "give --hub-dir DIR or set RCF_HUB_DIR" in result.stderr


def _commands(
    group: click.Group, path: tuple[str, ...]
) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = [(path, group)]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


def test_every_command_and_option_has_help() -> None:
    runner = CliRunner()
    commands = _commands(rcf_group, ())
    assert len(commands) > 40
    for path, command in commands:
        assert (command.help or "").strip(), f"rcf {' '.join(path)} has no help text"
        for param in command.params:
            if isinstance(param, click.Option):
                assert (param.help or "").strip(), f"rcf {' '.join(path)} {param.opts[0]}: no help"
        result = runner.invoke(rcf_group, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, path


def test_exit_codes_are_the_documented_table() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Exit codes") :]
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", section, flags=re.M))
    assert {int(k): v for k, v in rows.items()} == EXIT_CODES
    assert rcf("hub", "nosuch").returncode == 2
