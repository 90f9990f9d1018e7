"""`rcf bench import`: import throughput against bare SQLite, and peak memory on 10M rows.

Figures (one run, same machine, so the ratio is what compares):

- ``import_rows_per_s``: ``node.importer.import_file`` on a CSV of N
  ``irregular_movements`` rows (N = 1,000,000) into a fresh store: streaming
  decode, CSV parse, per-row validation against the dictionary, staging,
  duplicate check, upsert, one transaction.
- ``bare_rows_per_s``: the same rows, already as Python tuples, through one
  ``sqlite3`` ``executemany`` INSERT into the same table and indexes (same DDL,
  same pragmas), one transaction: the bound no importer can beat.
- ``import_ratio``: the first over the second; goal >= 0.4.
- ``peak_rss_mb_10m``: peak resident memory of a child process importing a
  10,000,000-row file (``ru_maxrss`` of the waited child); bound < 500 MB.

The rows are realistic (``node.synthetic``): 50,000 generated rows repeated
with fresh record ids, so generating 10M rows costs seconds, not minutes.
``quick=True`` (or env RCF_BENCH_IMPORT_ROWS / RCF_BENCH_IMPORT_BIG_ROWS)
scales the row counts down for a smoke run; such figures are not the result.
"""

from __future__ import annotations

import csv
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rcf.benchmarks.common import BenchResult
from rcf.devnet.synthetic import generate_rows
from rcf.node.data.importer import import_file
from rcf.node.data.store import CACHE_KIB, DataStore, table_ddl
from rcf.trust.dictionary import default_dictionary

DATASET = "irregular_movements"
ROWS = 1_000_000
BIG_ROWS = 10_000_000
TEMPLATE_ROWS = 50_000

BOUNDS: dict[str, str] = {
    "import_rows_per_s": "rcf data import, CSV → validated store",
    "bare_rows_per_s": "bound: bare sqlite3 executemany, same table",
    "import_ratio": "goal >= 0.4",
    "peak_rss_mb_10m": "bound < 500 MB",
}


def _templates() -> list[tuple[Any, ...]]:
    columns = default_dictionary().datasets[DATASET].columns
    return [
        tuple(row[c] for c in columns)
        for row in generate_rows("TH", DATASET, seed=2024, rows=TEMPLATE_ROWS)
    ]


def _rows(templates: list[tuple[Any, ...]], n: int) -> Iterator[tuple[Any, ...]]:
    k = len(templates)
    for i in range(n):
        yield (f"TH-IM-{i:08d}", *templates[i % k][1:])


def write_csv(path: Path, n: int, templates: list[tuple[Any, ...]]) -> None:
    columns = default_dictionary().datasets[DATASET].columns
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(_rows(templates, n))


def bare_insert(db_path: Path, n: int, templates: list[tuple[Any, ...]]) -> float:
    """Seconds for one executemany of n rows into the store's table, as the store sets it up."""
    dataset = default_dictionary().datasets[DATASET]
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA cache_size={CACHE_KIB}")  # as the store sets it
    for stmt in table_ddl(dataset):
        conn.execute(stmt)
    marks = ", ".join("?" for _ in range(len(dataset.columns) + 1))
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        f"INSERT INTO {DATASET} VALUES ({marks})",  # noqa: S608
        ((*row, 1) for row in _rows(templates, n)),
    )
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def timed_import(db_path: Path, csv_path: Path) -> tuple[float, int]:
    store = DataStore(db_path, dictionary=default_dictionary())
    try:
        start = time.perf_counter()
        result = import_file(store, csv_path, dataset=DATASET)
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    if not result.committed:
        raise RuntimeError(f"benchmark import refused: {[e.reason for e in result.errors]}")
    return elapsed, result.inserted


def child_peak_rss_mb(db_path: Path, csv_path: Path) -> float:
    """Import csv_path in a child process; its peak RSS in MB."""
    code = (
        "import sys; from pathlib import Path;"
        "from benchmarks.bench_import import timed_import;"
        "timed_import(Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        [sys.executable, "-c", code, str(db_path), str(csv_path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:
        # ru_maxrss of children is a maximum over all of them; an earlier child
        # was bigger, so this one's peak is below it. Report the bound we know.
        return before / 1024
    return after / 1024  # Linux reports KB


def run(*, quick: bool = False) -> BenchResult:
    """Measure and return the four figures; quick scales rows down (a smoke run)."""
    rows = int(os.environ.get("RCF_BENCH_IMPORT_ROWS", 20_000 if quick else ROWS))
    big = int(os.environ.get("RCF_BENCH_IMPORT_BIG_ROWS", 50_000 if quick else BIG_ROWS))
    result = BenchResult("import")
    templates = _templates()
    with tempfile.TemporaryDirectory(prefix="rcf-bench-import-") as tmp:
        root = Path(tmp)
        csv_path = root / "im.csv"
        write_csv(csv_path, rows, templates)
        bare_s = bare_insert(root / "bare.db", rows, templates)
        import_s, inserted = timed_import(root / "data.db", csv_path)
        if inserted != rows:
            raise RuntimeError(f"benchmark imported {inserted} of {rows} rows")
        csv_path.unlink()
        big_path = root / "big.csv"
        write_csv(big_path, big, templates)
        peak = child_peak_rss_mb(root / "big.db", big_path)
    import_rate, bare_rate = rows / import_s, rows / bare_s
    result.add("import_rows_per_s", import_rate, BOUNDS["import_rows_per_s"])
    result.add("bare_rows_per_s", bare_rate, BOUNDS["bare_rows_per_s"])
    result.add("import_ratio", import_rate / bare_rate, BOUNDS["import_ratio"])
    result.add("peak_rss_mb_10m", peak, BOUNDS["peak_rss_mb_10m"] + f" ({big:,} rows)")
    return result
