"""Hub and node folders are 0700 and every file in them 0600, whatever the umask."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rcf.trust.files import loose_modes
from tests.cli_helpers import ok, rcf, serving


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask there is; every `rcf` started meanwhile inherits it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, str]:
    """Every path under root (root too) that is not private, with its mode."""
    found = {}
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if mode != wanted:
            found[str(path.relative_to(root.parent))] = f"{mode:04o}"
    return found


def test_every_file_is_private_after_each_step(tmp_path: Path, open_umask: None) -> None:
    hub, node = tmp_path / "hub", tmp_path / "TH"
    ok("hub", "init", "--hub-dir", str(hub), "--local", "--listen", "127.0.0.1:0",
       "--enroll-listen", "127.0.0.1:0")  # fmt: skip
    ok("hub", "member", "add", "TH", "--hub-dir", str(hub))
    assert modes(hub) == {}
    with serving("hub", "serve", "--hub-dir", str(hub), ready=hub / "hub-runtime.json"):
        assert modes(hub) == {}
        token = ok("hub", "token", "create", "TH", "--hub-dir", str(hub), "--local").strip()
        ok("node", "init", "--member", "TH", "--join-token", token, "--node-dir", str(node),
           "--local", "--listen", "127.0.0.1:0")  # fmt: skip
        assert modes(node) == {}

        data = tmp_path / "data"
        ok("data", "generate", "--member", "TH", "--rows", "50", "--out", str(data))
        persons = data / "TH-persons.csv"
        with open(persons, "a", encoding="utf-8") as fh:
            fh.write("P-bad,,Someone,,1990-02-30,M,MMR,,irregular_migrant,,2024-01-01\n")
        ok("data", "import", str(persons), "--dataset", "persons", "--skip-invalid",
           "--node-dir", str(node))  # fmt: skip
        rejects = data / "TH-persons.csv.rejects.csv"
        assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
        assert modes(node) == {}

        with serving("node", "serve", "--node-dir", str(node), ready=node / "node-runtime.json"):
            # state.db, data.db and their -wal/-shm files exist while the node serves.
            assert {"state.db-wal", "state.db-shm"} <= {p.name for p in node.iterdir()}
            assert modes(node) == {} and modes(hub) == {}
            status = json.loads(ok("node", "status", "--node-dir", str(node), "--json"))
            assert status["file_mode_warnings"] == []
            os.chmod(node / "data.db", 0o644)
            result = rcf("node", "status", "--node-dir", str(node))
            assert result.returncode == 0
            assert "warning: file" in result.stderr and "data.db is mode 0644" in result.stderr
            os.chmod(node / "data.db", 0o600)

        token = ok("hub", "token", "create", "TH", "--hub-dir", str(hub), "--local").strip()
        ok("node", "rotate-keys", "--join-token", token, "--node-dir", str(node))
        assert modes(node) == {} and modes(hub) == {}
        assert any(p.name.startswith("retired-") for p in node.iterdir())

    summary = json.loads(ok("hub", "status", "--hub-dir", str(hub), "--json"))
    assert summary["file_mode_warnings"] == [] and summary["members"] == {"active": 1}
    assert summary["nodes_enrolled"] == 1 and summary["running"] is None
    os.chmod(hub, 0o755)  # noqa: S103 - the loose mode under test
    result = rcf("hub", "status", "--hub-dir", str(hub))
    assert result.returncode == 0 and "directory serial" in result.stdout
    assert f"warning: folder {hub} is mode 0755; it should be 0700" in result.stderr
    assert modes(hub) == {str(hub.relative_to(tmp_path)): "0755"}


def test_loose_modes_finds_files_and_folders(tmp_path: Path) -> None:
    root = tmp_path / "n"
    (root / "sub").mkdir(parents=True, mode=0o700)
    os.chmod(root, 0o700)
    (root / "a").write_text("x")
    os.chmod(root / "a", 0o600)
    assert loose_modes(root) == []
    os.chmod(root / "a", 0o640)
    os.chmod(root / "sub", 0o711)  # noqa: S103 - the loose mode under test
    found = loose_modes(root)
    assert len(found) == 2 and "a is mode 0640" in found[0] and "sub is mode 0711" in found[1]
