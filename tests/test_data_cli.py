"""`rcf data …` as a user runs it: a subprocess against an enrolled node folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rcf.node.data.store import DataStore
from rcf.trust.dictionary import default_dictionary
from tests.network import enrolled_folder

RCF = str(Path(sys.executable).parent / "rcf")
HEADER = (
    "record_id,event_date,reporting_state,location,route,direction,nationality,sex,age_band,"
    "outcome,persons"
)


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return enrolled_folder(tmp_path_factory.mktemp("net"), "TH")


def rcf(node_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RCF_NODE_DIR": str(node_dir), "COLUMNS": "200"}
    return subprocess.run(
        [RCF, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def snapshot(node_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    store = DataStore(node_dir / "data.db", dictionary=default_dictionary())
    try:
        tables = [*store.dictionary.datasets, "imports"]
        return {t: store.conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}  # noqa: S608
    finally:
        store.close()


def test_generate_import_stats_purge(node_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    r = rcf(node_dir, "data", "generate", "--member", "TH", "--rows", "500", "--seed", "4",
            "--out", str(out), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    files = json.loads(r.stdout)["TH"]
    # Names and dates of birth: 0600 files in a 0700 folder, whatever the umask.
    assert out.stat().st_mode & 0o777 == 0o700
    assert {Path(f).stat().st_mode & 0o777 for f in files.values()} == {0o600}
    shown = rcf(node_dir, "data", "generate", "--member", "TH", "--rows", "5", "--out",
                str(tmp_path / "gen2"))  # fmt: skip
    assert "persons_mrz" not in shown.stdout and "MRZ lines" in shown.stdout
    for dataset in ("irregular_movements", "persons", "documents"):
        r = rcf(node_dir, "data", "import", files[dataset], "--dataset", dataset)
        assert r.returncode == 0, r.stderr
        assert "500 inserted" in r.stdout
    r = rcf(node_dir, "data", "import", files["persons"], "--dataset", "persons", "--json")
    assert json.loads(r.stdout)["unchanged"] == 500
    stats = json.loads(rcf(node_dir, "data", "stats", "--json").stdout)
    assert stats["datasets"]["persons"]["records"] == 500
    assert stats["dictionary_version"] == "1.0"
    # Destructive: a dry run counts, no answer (no terminal, no --yes) changes nothing.
    r = rcf(node_dir, "data", "purge", "--older-than", "2y", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    would = json.loads(r.stdout)["would_delete"]
    assert would["irregular_movements"] > 0 and set(would) >= {"persons", "documents"}
    r = rcf(node_dir, "data", "purge", "--older-than", "2y", "--dry-run")
    assert "would be deleted" in r.stdout
    assert f"{would['irregular_movements']:,}" in r.stdout
    r = rcf(node_dir, "data", "purge", "--older-than", "2y")
    assert r.returncode == 1 and "Give --yes to confirm" in r.stderr
    assert "Traceback" not in r.stderr
    assert json.loads(rcf(node_dir, "data", "stats", "--json").stdout) == stats
    r = rcf(node_dir, "data", "purge", "--older-than", "2y", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    purged = json.loads(r.stdout)
    assert purged["deleted"] == would
    audit = json.loads(rcf(node_dir, "audit", "show", "--json").stdout)
    assert any(a["query_type"] == "data_purge" for a in audit)
    # Every committed import is in the signed audit log, once, under its import id.
    imports = [a for a in audit if a["query_type"] == "data_import"]
    assert [a["query_id"] for a in imports] == [f"import-{n}" for n in (1, 2, 3, 4)]
    assert len({a["request_sha256"] for a in imports}) == 4
    assert imports[-1]["reason"].startswith("inserted=0 updated=0 unchanged=500")
    assert rcf(node_dir, "audit", "verify").returncode == 0
    bad = rcf(node_dir, "data", "purge", "--older-than", "soon")
    assert bad.returncode == 2 and "not an age like" in bad.stderr  # usage


def test_bad_rows_one_clear_message(node_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        HEADER + "\nB-1,2024-02-30,THA,TH-85,sea,arrival,MMR,M,18-59,intercepted,1\n"
        "B-2,2024-02-01,THA,TH-85,sea,arrival,QQQ,M,18-59,intercepted,1\n"
    )
    r = rcf(node_dir, "data", "import", str(path), "--dataset", "irregular_movements")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "2 invalid rows; nothing was imported" in r.stderr
    assert "line 2: event_date is not a real calendar date" in r.stderr
    r = rcf(node_dir, "data", "import", str(path), "--dataset", "irregular_movements",
            "--skip-invalid")  # fmt: skip
    assert r.returncode == 0 and "rejected" in r.stdout
    assert (tmp_path / "bad.csv.rejects.csv").exists()
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    r = rcf(node_dir, "data", "import", str(empty), "--dataset", "irregular_movements")
    assert r.returncode == 1 and r.stderr.startswith("error: empty.csv is empty")
    assert "Traceback" not in r.stderr


def test_kill_9_mid_import_leaves_the_store_as_before(node_dir: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    small.write_text(HEADER + "\nK-0,2024-01-01,THA,TH-85,sea,arrival,MMR,M,18-59,rescued,4\n")
    assert (
        rcf(node_dir, "data", "import", str(small), "--dataset", "irregular_movements").returncode
        == 0
    )
    before = snapshot(node_dir)
    big = tmp_path / "big.csv"
    with open(big, "w") as fh:
        fh.write(HEADER + "\n")
        for i in range(400_000):
            day = f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d}"
            fh.write(f"K-{i},{day},THA,TH-85,sea,arrival,MMR,M,18-59,rescued,{i % 90 + 1}\n")
    env = {**os.environ, "RCF_NODE_DIR": str(node_dir)}
    proc = subprocess.Popen(
        [RCF, "data", "import", str(big), "--dataset", "irregular_movements"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wal = node_dir / "data.db-wal"
    deadline = time.monotonic() + 60
    # The merge into the dataset table spills pages into the WAL: kill it there.
    while time.monotonic() < deadline and proc.poll() is None:
        if wal.exists() and wal.stat().st_size > 2_000_000:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the import finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert snapshot(node_dir) == before
    # The store still works afterwards.
    assert (
        rcf(node_dir, "data", "import", str(small), "--dataset", "irregular_movements").returncode
        == 0
    )


def test_the_audit_record_counts_every_rejected_row(node_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "many-bad.csv"
    rows = [f"C-{i},2024-02-01,THA,TH-85,sea,arrival,QQQ,M,18-59,intercepted,1" for i in range(25)]
    path.write_text("\n".join([HEADER, "C-ok,2024-02-01,THA,TH-85,sea,arrival,MMR,M,18-59,"
                               "intercepted,1", *rows]) + "\n")  # fmt: skip
    r = rcf(node_dir, "data", "import", str(path), "--dataset", "irregular_movements",
            "--skip-invalid")  # fmt: skip
    assert r.returncode == 0, r.stderr
    audit = json.loads(rcf(node_dir, "audit", "show", "--json").stdout)
    last = [a for a in audit if a["query_type"] == "data_import"][-1]
    assert last["reason"].endswith("rejected=25"), last["reason"]
