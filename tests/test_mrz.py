"""ICAO 9303 MRZ parsing: the specimens, every check digit, and clear errors without values."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from rcf.devnet.synthetic import generate_member_data
from rcf.node.identity.errors import MrzError
from rcf.node.identity.keys import document_key, person_keys
from rcf.node.identity.mrz import MrzFormat, check_digit, parse_mrz
from rcf.node.identity.normalize import PartialDate

SPECIMENS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "icao9303-specimens.json").read_text()
)
TODAY = dt.date(2025, 6, 1)
TD3 = SPECIMENS["td3_current"]
# ICAO Doc 9303 part 5 (TD1) and part 6 (TD2) specimens of the same fictitious holder.
TD1 = [
    "I<UTOD231458907<<<<<<<<<<<<<<<",
    "7408122F1204159UTO<<<<<<<<<<<6",
    "ERIKSSON<<ANNA<MARIA<<<<<<<<<<",
]
TD2 = ["I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<", "D231458907UTO7408122F1204159<<<<<<<6"]


def test_td3_specimen_check_digits() -> None:
    line2 = TD3[1]
    digits = SPECIMENS["td3_current_check_digits"]
    assert check_digit(line2[0:9]) == digits["document_number"] == int(line2[9])
    assert check_digit(line2[13:19]) == digits["date_of_birth"]
    assert check_digit(line2[21:27]) == digits["date_of_expiry"]
    assert check_digit(line2[28:42]) == digits["optional_data"]
    assert check_digit(line2[0:10] + line2[13:20] + line2[21:43]) == digits["composite"]


def test_td3_specimen_parses() -> None:
    doc = parse_mrz(TD3, today=TODAY)
    assert doc.format is MrzFormat.TD3
    assert (doc.document_code, doc.issuing_state, doc.nationality) == ("P", "UTO", "UTO")
    assert doc.document_number == "L898902C3"
    assert doc.date_of_birth == PartialDate(1974, 8, 12)
    assert doc.date_of_expiry == dt.date(2012, 4, 15)
    assert (doc.sex, doc.optional_data) == ("F", "ZE184226B")
    assert doc.name == "ERIKSSON, ANNA MARIA"
    assert "ERIKSSON" not in repr(doc) and "L898902C3" not in repr(doc)


def test_td3_older_edition_specimen_parses() -> None:
    doc = parse_mrz([TD3[0], SPECIMENS["td3_older_edition_line2"]], today=TODAY)
    assert doc.document_number == "L898902C"
    assert doc.date_of_birth == PartialDate(1969, 8, 6)


@pytest.mark.parametrize("lines", [TD1, TD2, "\n".join(TD2) + "\n"], ids=["TD1", "TD2", "text"])
def test_td1_and_td2_specimens_parse(lines: list[str] | str) -> None:
    doc = parse_mrz(lines, today=TODAY)
    assert doc.format in (MrzFormat.TD1, MrzFormat.TD2)
    assert (doc.document_code, doc.issuing_state, doc.document_number) == ("I", "UTO", "D23145890")
    assert doc.date_of_birth == PartialDate(1974, 8, 12)
    assert doc.name == "ERIKSSON, ANNA MARIA"


def test_td1_long_document_number_continues_in_optional_data() -> None:
    number = "D23145890AB"  # eleven characters
    digit = str(check_digit(number))
    line1 = f"I<UTO{number[:9]}<{number[9:]}{digit}".ljust(30, "<")
    body = "7408122F1204159UTO"
    line2 = body + "<" * 11
    composite = line1[5:30] + line2[0:7] + line2[8:15] + line2[18:29]
    line2 += str(check_digit(composite))
    doc = parse_mrz([line1, line2, TD1[2]], today=TODAY)
    assert doc.document_number == number


def test_mrz_gives_the_same_document_key_as_the_record() -> None:
    doc = parse_mrz(TD3, today=TODAY)
    assert document_key(doc.issuing_state, doc.document_number) == document_key("UTO", "L898902C3")
    assert person_keys(doc.to_person_record("x"))


def _flip(line: str, index: int) -> str:
    ch = line[index]
    new = str((int(ch) + 1) % 10) if ch.isdigit() else ("B" if ch != "B" else "C")
    return line[:index] + new + line[index + 1 :]


@pytest.mark.parametrize(
    ("index", "field"),
    [
        (9, "document_number"),
        (19, "date_of_birth"),
        (27, "date_of_expiry"),
        (42, "optional_data"),
        (43, "composite"),
    ],
)
def test_wrong_check_digit_names_the_field_not_the_value(index: int, field: str) -> None:
    with pytest.raises(MrzError) as err:
        parse_mrz([TD3[0], _flip(TD3[1], index)], today=TODAY)
    assert err.value.field == field
    assert err.value.rule == "check_digit_mismatch"
    message = str(err.value)
    assert "check digit does not match" in message
    for secret in ("L898902C3", "740812", "ERIKSSON", "120415"):
        assert secret not in message


def test_changed_data_is_caught_by_its_check_digit() -> None:
    with pytest.raises(MrzError) as err:
        parse_mrz([TD3[0], _flip(TD3[1], 2)], today=TODAY)  # a number character
    assert err.value.field == "document_number"


@pytest.mark.parametrize(
    ("lines", "rule"),
    [
        ([], "bad_layout"),
        ([TD3[0]], "bad_layout"),
        ([TD3[0], TD3[1][:-1]], "bad_layout"),
        ([TD3[0].lower(), TD3[1]], "bad_character"),
        ([TD3[0], TD3[1].replace("<", " ")], "bad_character"),
        (["P<UTO" + "<" * 39, TD3[1]], "name_empty"),
    ],
)
def test_malformed_zones_are_refused(lines: list[str], rule: str) -> None:
    with pytest.raises(MrzError) as err:
        parse_mrz(lines, today=TODAY)
    assert err.value.rule == rule
    assert err.value.status == "INVALID_ARGUMENT"


def test_unknown_birth_day_gives_a_partial_date() -> None:
    birth = "7408<<"
    line2 = TD3[1][:13] + birth + str(check_digit(birth)) + TD3[1][20:43]
    line2 += str(check_digit(line2[0:10] + line2[13:20] + line2[21:43]))
    doc = parse_mrz([TD3[0], line2], today=TODAY)
    assert doc.date_of_birth == PartialDate(1974, 8)


def test_every_synthetic_mrz_parses_and_matches_its_record(tmp_path: Path) -> None:
    paths = generate_member_data("TH", tmp_path, seed=11, rows=300, datasets=["persons"])
    with open(paths["persons_mrz"], encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows
    for row in rows:
        doc = parse_mrz([row["mrz_line1"], row["mrz_line2"]])
        issuer, _, number = row["document"].partition(":")
        assert (doc.issuing_state, doc.document_number) == (issuer, number)
