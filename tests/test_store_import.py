"""The node store and the importer against real SQLite files: every bad input, idempotency."""

from __future__ import annotations

import codecs
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rcf.node.data.importer import DataImportError, import_file, rejects_path_for
from rcf.node.data.store import MIGRATIONS, DataStore
from rcf.trust.dictionary import default_dictionary

HEADER = (
    "record_id,event_date,reporting_state,location,route,direction,nationality,sex,age_band,"
    "outcome,persons"
)
GOOD = [
    "TH-1,2024-03-01,THA,TH-85,sea,arrival,XXA,M,18-59,intercepted,61",
    "TH-2,2024-03-02,THA,THRNG,sea,transit,MMR,F,12-17,rescued,3",
    "TH-3,2023-12-24,THA,TH-63,land,arrival,MMR,M,18-59,returned,2",
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DataStore]:
    s = DataStore(tmp_path / "data.db", dictionary=default_dictionary())
    yield s
    s.close()


def write(tmp_path: Path, lines: list[str], name: str = "im.csv", *, end: str = "\n") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + end, encoding="utf-8")
    return path


def snapshot(store: DataStore) -> dict[str, list[tuple[object, ...]]]:
    tables = [*store.dictionary.datasets, "imports", "purges"]
    return {t: store.conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}  # noqa: S608


def seeded(store: DataStore, tmp_path: Path) -> dict[str, list[tuple[object, ...]]]:
    result = import_file(
        store, write(tmp_path, [HEADER, *GOOD], "seed.csv"), dataset="irregular_movements"
    )
    assert result.committed and result.inserted == 3
    return snapshot(store)


def refused(store: DataStore, path: Path, dataset: str = "irregular_movements") -> list[str]:
    """Import path expecting every row problem to be reported and nothing written."""
    before = snapshot(store)
    result = import_file(store, path, dataset=dataset)
    assert not result.committed
    assert snapshot(store) == before
    return [e.reason for e in result.errors]


def test_schema_migrations_and_indexes(store: DataStore) -> None:
    assert store.schema_version() == len(MIGRATIONS)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {r[1] for r in store.conn.execute("SELECT * FROM sqlite_master WHERE type = 'index'")}
    assert "ix_irregular_movements_event_date" in indexes
    assert "ix_documents_document_number_issuing_state" in indexes
    # Reopening applies nothing twice.
    again = DataStore(store.path, dictionary=default_dictionary())
    assert again.conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(
        MIGRATIONS
    )
    again.close()


def test_import_is_idempotent_and_updates_changed_rows(store: DataStore, tmp_path: Path) -> None:
    first = seeded(store, tmp_path)
    again = import_file(store, tmp_path / "seed.csv", dataset="irregular_movements")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    assert snapshot(store)["irregular_movements"] == first["irregular_movements"]
    changed = [
        GOOD[0].replace(",61", ",62"),
        GOOD[1],
        "TH-4,2024-01-05,THA,TH-85,sea,arrival,BGD,M,0-4,rescued,1",
    ]
    result = import_file(store, write(tmp_path, [HEADER, *changed]), dataset="irregular_movements")
    assert (result.inserted, result.updated, result.unchanged) == (1, 1, 1)
    row = store.conn.execute(
        "SELECT persons FROM irregular_movements WHERE record_id = 'TH-1'"
    ).fetchone()
    assert row == (62,)
    assert store.count("irregular_movements") == 4


def test_jsonl_import(store: DataStore, tmp_path: Path) -> None:
    keys = HEADER.split(",")
    lines = [json.dumps(dict(zip(keys, g.split(","), strict=True))) for g in GOOD]
    lines[0] = lines[0].replace('"61"', "61")  # numbers may be JSON numbers
    result = import_file(store, write(tmp_path, lines, "im.jsonl"), dataset="irregular_movements")
    assert result.committed and result.inserted == 3


def test_utf8_bom_is_accepted(store: DataStore, tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(codecs.BOM_UTF8 + ("\n".join([HEADER, *GOOD]) + "\n").encode())
    result = import_file(store, path, dataset="irregular_movements")
    assert result.committed and result.bom and result.inserted == 3


def test_utf16_is_refused(store: DataStore, tmp_path: Path) -> None:
    seeded(store, tmp_path)
    path = tmp_path / "u16.csv"
    path.write_bytes(("\n".join([HEADER, *GOOD]) + "\n").encode("utf-16"))
    before = snapshot(store)
    with pytest.raises(DataImportError, match="UTF-16 encoded; save it as UTF-8"):
        import_file(store, path, dataset="irregular_movements")
    assert snapshot(store) == before


def test_wrong_encoding_names_the_line(store: DataStore, tmp_path: Path) -> None:
    before = seeded(store, tmp_path)
    path = tmp_path / "latin1.csv"
    rows = [HEADER, *(g.replace("TH-", "TX-") for g in GOOD)]
    rows.append("TX-9,2024-03-01,THA,TH-85,sea,arrival,MMR,M,18-59,intercepted,1")
    body = ("\n".join(rows) + "\n").encode()
    path.write_bytes(body.replace(b"TX-9", "TX-é".encode("latin-1")))
    with pytest.raises(DataImportError, match=r"line 5 is not UTF-8 \(byte 0xe9"):
        import_file(store, path, dataset="irregular_movements")
    assert snapshot(store) == before


def test_missing_column(store: DataStore, tmp_path: Path) -> None:
    header = HEADER.replace(",outcome", "")
    rows = [",".join(g.split(",")[:9] + g.split(",")[10:]) for g in GOOD]
    with pytest.raises(DataImportError, match="misses column outcome"):
        import_file(store, write(tmp_path, [header, *rows]), dataset="irregular_movements")
    assert store.count("irregular_movements") == 0


def test_extra_column(store: DataStore, tmp_path: Path) -> None:
    # 'vessel' is no dictionary field, so it is named by position (it could be a value).
    with pytest.raises(DataImportError, match="has column 12 not in irregular_movements"):
        import_file(
            store,
            write(tmp_path, [HEADER + ",vessel", *(g + ",boat" for g in GOOD)]),
            dataset="irregular_movements",
        )


def test_unknown_codes(store: DataStore, tmp_path: Path) -> None:
    seeded(store, tmp_path)
    bad = [GOOD[0].replace("XXA", "RHG"), GOOD[1].replace(",sea,", ",boat,"), GOOD[2]]
    reasons = refused(store, write(tmp_path, [HEADER, *bad]))
    assert reasons == [
        "line 2: nationality is not a known code",
        "line 3: route is not a known code",
    ]


def test_impossible_dates(store: DataStore, tmp_path: Path) -> None:
    seeded(store, tmp_path)
    bad = [
        GOOD[0].replace("2024-03-01", "2023-02-29"),
        GOOD[1].replace("2024-03-02", "2024-13-01"),
        GOOD[2].replace("2023-12-24", "2999-01-01"),
        GOOD[2].replace("TH-3,2023-12-24", "TH-5,24/12/2023"),
    ]
    reasons = refused(store, write(tmp_path, [HEADER, *bad]))
    assert reasons == [
        "line 2: event_date is not a real calendar date",
        "line 3: event_date is not a real calendar date",
        "line 4: event_date is before 1900 or in the future",
        "line 5: event_date is not a date of the form YYYY-MM-DD",
    ]


def test_duplicate_ids_in_one_file(store: DataStore, tmp_path: Path) -> None:
    seeded(store, tmp_path)
    dup = GOOD[0].replace(",61", ",5")
    reasons = refused(store, write(tmp_path, [HEADER, *GOOD, dup]))
    assert reasons == ["line 5: record_id repeats the one on line 2"]


def test_truncated_last_line_csv(store: DataStore, tmp_path: Path) -> None:
    seeded(store, tmp_path)
    cut = [HEADER, *(g.replace("TH-", "TZ-", 1) for g in GOOD)]
    cut[-1] = cut[-1][:25]
    reasons = refused(store, write(tmp_path, cut, end=""))
    assert reasons == ["line 4: has 4 fields, the header has 11; is the file truncated?"]
    # An unterminated quote runs to the end of the file.
    quoted = [HEADER, GOOD[0], 'TH-9,"2024-01-01,THA']
    assert refused(store, write(tmp_path, quoted, end=""))[0].endswith("is the file truncated?")


def test_truncated_last_line_jsonl(store: DataStore, tmp_path: Path) -> None:
    keys = HEADER.split(",")
    lines = [json.dumps(dict(zip(keys, g.split(","), strict=True))) for g in GOOD]
    lines[-1] = lines[-1][:40]
    reasons = refused(store, write(tmp_path, lines, "im.jsonl", end=""))
    assert reasons == ["line 3: is not valid JSON; is the file truncated?"]


def test_empty_file(store: DataStore, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataImportError, match="empty; there is nothing to import"):
        import_file(store, path, dataset="irregular_movements")
    with pytest.raises(DataImportError, match="header but no records"):
        import_file(store, write(tmp_path, [HEADER]), dataset="irregular_movements")


def test_file_of_a_different_dataset(store: DataStore, tmp_path: Path) -> None:
    docs = ["record_id,issuing_state,document_type,document_number,status,date_reported",
            "D-1,THA,passport,AA1234567,stolen,2024-01-02"]  # fmt: skip
    with pytest.raises(
        DataImportError, match="looks like a documents file; use --dataset documents"
    ):
        import_file(store, write(tmp_path, docs), dataset="irregular_movements")


def test_skip_invalid_writes_rejects(store: DataStore, tmp_path: Path) -> None:
    rows = [*GOOD, GOOD[0], GOOD[1].replace("TH-2", "TH-7").replace("MMR", "ZZZ")]
    path = write(tmp_path, [HEADER, *rows])
    result = import_file(store, path, dataset="irregular_movements", skip_invalid=True)
    assert result.committed and (result.inserted, result.rejected) == (3, 2)
    assert result.rejects_path == rejects_path_for(path)
    text = result.rejects_path.read_text().splitlines()
    assert text[0].startswith("line,reason,record_id")
    assert text[1].startswith("5,line 5: record_id repeats the one on line 2,TH-1")
    assert text[2].startswith("6,line 6: nationality is not a known code,TH-7")
    assert stat.S_IMODE(result.rejects_path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if "rejects" in p.name) == [
        "im.csv.rejects.csv"
    ]


def test_identity_rows_validated(store: DataStore, tmp_path: Path) -> None:
    header = ("record_id,name_original,name_latin,aliases,date_of_birth,sex,nationality,"
              "document_numbers,category,local_reference,recorded_on")  # fmt: skip
    good = "P-1,ထွန်းမင်း,Htun Min,Tun Min,1990,M,MMR,MMR:MA1234567,irregular_migrant,R/1,2024-01-01"
    bad = "P-2,,Someone,,1990-02-30,M,MMR,MA1234567,irregular_migrant,,2024-01-01"
    reasons = refused(store, write(tmp_path, [header, good, bad]), dataset="persons")
    assert reasons == ["line 3: date_of_birth is not a real calendar date"]
    result = import_file(store, write(tmp_path, [header, good]), dataset="persons")
    assert result.committed
    docs_bad = bad.replace("1990-02-30", "1990-02")
    reasons = refused(store, write(tmp_path, [header, docs_bad]), dataset="persons")
    assert reasons == ["line 2: document_numbers must be ISSUER:NUMBER pairs (e.g. MMR:MA1234567)"]


def test_purge(store: DataStore, tmp_path: Path) -> None:
    seeded(store, tmp_path)
    deleted = store.purge(cutoff="2024-01-01")
    assert deleted["irregular_movements"] == 1
    assert store.count("irregular_movements") == 2


def test_rejected_rows_stream_to_the_rejects_file(store: DataStore, tmp_path: Path) -> None:
    import tracemalloc

    n = 60_000
    path = tmp_path / "many.csv"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(HEADER + "\n")
        for i in range(n):
            if i % 1000 == 0:  # a valid row, and later a repeat of its record id
                fh.write(f"V-{i},2024-03-01,THA,TH-85,sea,arrival,MMR,M,18-59,rescued,1\n")
            elif i % 1000 == 1:
                fh.write(f"V-{i - 1},2024-03-01,THA,TH-85,sea,arrival,MMR,M,18-59,rescued,2\n")
            else:
                fh.write(f"B-{i},2024-03-01,THA,TH-85,sea,arrival,QQQ{i},M,18-59,rescued,1\n")
    tracemalloc.start()
    try:
        result = import_file(store, path, dataset="irregular_movements", skip_invalid=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.committed and result.inserted == 60
    assert result.rejected == n - 60  # every one counted, none capped
    assert len(result.errors) == 20 and [e.line for e in result.errors] == list(range(3, 23))
    # Keeping 59,940 rejected rows in memory took ~80 MB; streamed, a small constant.
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert result.rejects_path is not None
    with open(result.rejects_path, encoding="utf-8") as fh:
        lines = [int(line.split(",", 1)[0]) for line in list(fh)[1:]]
    assert len(lines) == n - 60 and lines == sorted(lines)  # both runs merged by line
    assert 3 in lines and 1003 in lines  # a repeated record id and a bad code, in order


def test_refused_import_keeps_counts_not_rows(store: DataStore, tmp_path: Path) -> None:
    rows = [GOOD[0].replace("TH-1", f"TQ-{i}").replace("XXA", "ZZZ") for i in range(30)]
    result = import_file(store, write(tmp_path, [HEADER, *rows]), dataset="irregular_movements")
    assert not result.committed and result.rejected == 30 and len(result.errors) == 20
    assert not list(tmp_path.glob("*.rejects.csv*"))  # no file without --skip-invalid
