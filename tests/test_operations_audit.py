"""Whatever an import or a purge commits is audited exactly once, even when the
process dies between the data commit and the audit record, or at any other point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rcf.node.data.dictionary import load_dictionary
from rcf.node.data.importer import import_file
from rcf.node.data.store import DataStore
from rcf.node.ops.assembly import read_only
from rcf.node.ops.config import NodeLayout
from tests.network import Network

RCF = str(Path(sys.executable).parent / "rcf")


def rcf(node_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RCF_NODE_DIR": str(node_dir), "COLUMNS": "200"}
    return subprocess.run(
        [RCF, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def audited_operations(layout: NodeLayout, kind: str) -> list[str]:
    """Query ids of the node's audit records of one kind, read as the CLI reads them."""
    with read_only(layout) as core:
        return [r.event.query_id for r in core.audit.records() if r.event.query_type == kind]


def committed_imports(layout: NodeLayout) -> list[str]:
    store = DataStore(layout.data_db, dictionary=load_dictionary(layout))
    try:
        rows = store.conn.execute("SELECT import_id FROM imports ORDER BY import_id").fetchall()
    finally:
        store.close()
    return [f"import-{r[0]}" for r in rows]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    network = Network(tmp_path)
    network.start_hub()
    network.enroll("TH")
    yield network
    network.close()


@pytest.fixture(scope="module")
def movements(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    r = subprocess.run(
        [RCF, "data", "generate", "--member", "TH", "--rows", "30000", "--seed", "3",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out / "TH-irregular_movements.csv"


def test_an_import_committed_without_its_audit_record_is_audited_at_start(
    net: Network, movements: Path
) -> None:
    layout = net.layout("TH")
    # Exactly the state a crash between the data commit and the audit record leaves.
    store = DataStore(layout.data_db, dictionary=load_dictionary(layout))
    try:
        assert import_file(store, movements, dataset="irregular_movements").committed
    finally:
        store.close()
    assert audited_operations(layout, "data_import") == []
    net.start_node("TH")
    assert audited_operations(layout, "data_import") == ["import-1"]
    net.stop_node("TH")
    net.start_node("TH")  # a second start audits nothing twice
    assert audited_operations(layout, "data_import") == ["import-1"]


@pytest.mark.parametrize("delay_s", [0.3, 0.8, 1.5, 3.0])
def test_an_import_killed_at_any_moment_is_audited_once_if_it_committed(
    net: Network, movements: Path, delay_s: float
) -> None:
    layout = net.layout("TH")
    env = {**os.environ, "RCF_NODE_DIR": str(layout.root)}
    proc = subprocess.Popen(
        [RCF, "data", "import", str(movements), "--dataset", "irregular_movements"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    committed = committed_imports(layout)
    assert committed in ([], ["import-1"])
    net.start_node("TH")
    assert audited_operations(layout, "data_import") == committed
    net.stop_node("TH")


def test_purges_are_audited_once_and_an_import_through_the_cli_once(
    net: Network, movements: Path
) -> None:
    layout = net.layout("TH")
    r = rcf(layout.root, "data", "import", str(movements), "--dataset", "irregular_movements")
    assert r.returncode == 0, r.stderr
    assert "audited offline" in r.stdout + r.stderr or audited_operations(layout, "data_import")
    r = rcf(layout.root, "data", "purge", "--older-than", "1y", "--yes")
    assert r.returncode == 0, r.stderr
    purges = audited_operations(layout, "data_purge")
    assert len(purges) == 1 and purges[0].startswith("purge-")
    assert audited_operations(layout, "data_import") == ["import-1"]
    net.start_node("TH")
    assert len(audited_operations(layout, "data_purge")) == 1
    assert audited_operations(layout, "data_import") == ["import-1"]
