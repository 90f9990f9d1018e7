"""Synthetic data: ICAO 9303 check digits against the specimen, reproducibility, validity."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rcf.devnet.synthetic import check_digit, generate_member_data, generate_rows, mrz_td3
from rcf.node.data.importer import import_file
from rcf.node.data.store import DataStore
from rcf.trust.dictionary import default_dictionary
from rcf.trust.errors import ConfigError

VECTORS = Path(__file__).parent / "vectors" / "icao9303-specimens.json"


def test_check_digits_match_the_icao_specimen() -> None:
    spec = json.loads(VECTORS.read_text())
    line1, line2 = spec["td3_current"]
    digits = spec["td3_current_check_digits"]
    assert check_digit(line2[0:9]) == digits["document_number"] == int(line2[9])
    assert check_digit(line2[13:19]) == digits["date_of_birth"] == int(line2[19])
    assert check_digit(line2[21:27]) == digits["date_of_expiry"] == int(line2[27])
    assert check_digit(line2[28:42]) == digits["optional_data"] == int(line2[42])
    composite = line2[0:10] + line2[13:20] + line2[21:43]
    assert check_digit(composite) == digits["composite"] == int(line2[43])
    older = spec["td3_older_edition_line2"]
    assert check_digit(older[0:9]) == int(older[9])
    assert check_digit(older[0:10] + older[13:20] + older[21:43]) == int(older[43])
    # And the whole zone, rebuilt from its parts.
    assert mrz_td3(
        doc_type="P", issuing_state="UTO", family="Eriksson", given="Anna María",
        number="L898902C3", nationality="UTO", birth="740812", sex="F", expiry="120415",
        optional="ZE184226B",
    ) == (line1, line2)  # fmt: skip


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    a = generate_member_data("TH", tmp_path / "a", seed=5, rows=300)
    b = generate_member_data("TH", tmp_path / "b", seed=5, rows=300)
    c = generate_member_data("TH", tmp_path / "c", seed=6, rows=300)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    assert a["irregular_movements"].read_bytes() != c["irregular_movements"].read_bytes()


def test_generated_files_import_cleanly_for_every_corridor_state(tmp_path: Path) -> None:
    store = DataStore(tmp_path / "data.db", dictionary=default_dictionary())
    try:
        for member in ("TH", "MY", "ID", "AU", "BD", "MM", "LK", "NZ"):
            paths = generate_member_data(member, tmp_path / "gen", seed=1, rows=400)
            for dataset, path in paths.items():
                if dataset == "persons_mrz":
                    continue
                result = import_file(store, path, dataset=dataset)
                assert result.committed, (member, dataset, [e.reason for e in result.errors])
    finally:
        store.close()


def test_realism(tmp_path: Path) -> None:
    rows = list(generate_rows("TH", "irregular_movements", seed=2, rows=3000))
    sea = [r for r in rows if r["route"] == "sea"]
    assert sea and {r["nationality"] for r in sea} <= {"XXA", "MMR", "BGD"}
    assert sum(r["persons"] for r in sea) / len(sea) > 10  # boats, not single travellers
    assert {r["route"] for r in rows} == {"sea", "land", "air"}
    paths = generate_member_data("TH", tmp_path, seed=2, rows=800, datasets=["persons"])
    with open(paths["persons"], encoding="utf-8") as fh:
        people = list(csv.DictReader(fh))
    scripts = {p["nationality"]: p["name_original"] for p in people if p["name_original"]}
    assert any("\u1000" <= ch <= "\u109f" for ch in scripts.get("MMR", ""))  # Burmese script
    assert any(p["aliases"] for p in people)  # spelling variants
    with open(paths["persons_mrz"], encoding="utf-8") as fh:
        zones = list(csv.DictReader(fh))
    assert zones
    for z in zones:
        line2 = z["mrz_line2"]
        assert len(line2) == 44 and len(z["mrz_line1"]) == 44
        assert check_digit(line2[0:9]) == int(line2[9])
        assert check_digit(line2[0:10] + line2[13:20] + line2[21:43]) == int(line2[43])


def test_shared_people_across_members() -> None:
    def passports(member: str) -> set[str]:
        return {
            r["document_numbers"]
            for r in generate_rows(member, "persons", seed=9, rows=1500)
            if r["document_numbers"]
        }

    assert passports("TH") & passports("MY")


def test_non_state_member_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a state"):
        generate_member_data("RSO", tmp_path, seed=1, rows=1)
