"""What an installed wheel needs without a checkout: the systemd units through the CLI, and
the hub's verifying commands without its private key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.cli_helpers import RCF, fails, ok

DEPLOY = Path(__file__).parent.parent / "deploy" / "systemd"


@pytest.mark.parametrize(
    ("group", "unit"), [("hub", "rcf-hub.service"), ("node", "rcf-node@.service")]
)
def test_service_unit_prints_the_shipped_unit_running_this_rcf(
    group: str, unit: str, tmp_path: Path
) -> None:
    shipped = (DEPLOY / unit).read_text()
    printed = ok(group, "service-unit", cwd=tmp_path)
    assert f"ExecStart={RCF} {group} serve" in printed
    assert "/opt/rcf-exchange/.venv/bin/rcf" not in printed.split("ExecStart=")[1].split("\n")[0]
    # Only the program differs from the shipped file.
    assert printed.replace(RCF, "/opt/rcf-exchange/.venv/bin/rcf") == shipped

    other = ok(group, "service-unit", "--rcf", "/usr/local/bin/rcf")
    assert f"ExecStart=/usr/local/bin/rcf {group} serve" in other


def test_service_unit_write_makes_a_unit_systemd_reads(tmp_path: Path) -> None:
    target = tmp_path / "rcf-hub.service"
    ok("hub", "service-unit", "--write", str(target))
    assert target.read_text() == ok("hub", "service-unit")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    # A folder gets the unit's own file name.
    ok("node", "service-unit", "--write", str(tmp_path))
    assert (tmp_path / "rcf-node@.service").read_text() == ok("node", "service-unit")

    err = fails("hub", "service-unit", "--write", str(tmp_path / "no" / "such" / "x.service"))
    assert "Cannot write" in err


def test_hub_verifying_commands_need_only_the_public_key(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    ok("hub", "init", "--hub-dir", str(hub), "--network", "pkg-test", "--local")
    ok("hub", "member", "add", "TH", "--name", "Thailand", "--hub-dir", str(hub))
    public = hub / "hub-signing.pub"
    assert stat.S_IMODE(public.stat().st_mode) == 0o600
    assert public.read_text().startswith("rcf-ed25519-public:")
    before = ok("hub", "directory", "--json", "--hub-dir", str(hub))

    # Take the private keys away (moving them: the suite may run as root, whom a 0000
    # mode does not stop).
    away = tmp_path / "away"
    away.mkdir()
    for name in ("hub-signing.key", "ca.key"):
        (hub / name).rename(away / name)

    assert ok("hub", "directory", "--json", "--hub-dir", str(hub)) == before
    assert "pkg-test" in ok("hub", "status", "--hub-dir", str(hub))
    assert "irregular_movements" in ok("hub", "dictionary", "show", "--hub-dir", str(hub))
    assert "TH" in ok("hub", "member", "list", "--hub-dir", str(hub))
    ok("hub", "ncp", "list", "--hub-dir", str(hub))
    # Signing still needs the private key, and says so in one sentence.
    assert "Cannot read" in fails(
        "hub", "member", "add", "AU", "--name", "Australia", "--hub-dir", str(hub)
    )
