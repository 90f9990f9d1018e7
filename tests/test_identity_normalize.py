"""Name and date normalisation, match keys, and the token index built with a real OPRF key."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcf.devnet.synthetic import generate_rows
from rcf.node.identity.errors import InvalidIdentifier
from rcf.node.identity.index import build_token_index
from rcf.node.identity.keys import (
    DocumentRecord,
    KeyKind,
    PersonRecord,
    Role,
    Strength,
    document_key,
    person_keys,
)
from rcf.node.identity.normalize import (
    PartialDate,
    Precision,
    normalize_name,
    parse_date_of_birth,
)
from rcf.trust import oprf

DOB = "1990-05-12"


def shared(
    asker: str,
    responder: str,
    *,
    asker_dob: str | None = DOB,
    responder_dob: str | None = DOB,
    nationality: str = "MMR",
) -> set[tuple[KeyKind, Strength]]:
    """(kind, strength) of the keys an asker's query shares with a responder's index."""
    query = person_keys(PersonRecord("q", (asker,), asker_dob, nationality), role=Role.QUERY)
    index = person_keys(PersonRecord("r", (responder,), responder_dob, nationality))
    by_data = {k.data: k for k in index}
    return {(by_data[k.data].kind, by_data[k.data].strength) for k in query if k.data in by_data}


def best(keys: set[tuple[KeyKind, Strength]]) -> Strength | None:
    order = [Strength.EXACT, Strength.STRONG, Strength.PHONETIC, Strength.WEAK]
    return next((s for s in order if any(k[1] is s for k in keys)), None)


# -- normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Nguyễn Văn An", ("nguyen", "van", "an")),
        ("\uff2d\uff35\uff2c\uff2c\uff25\uff32", ("muller",)),  # full-width MULLER: NFKC
        ("Müller", ("muller",)),
        ("O'Brien", ("obrien",)),
        ("Daw Khin Mya", ("khin", "mya")),
        ("U Thant", ("thant",)),
        ("Dr. Maung Aung", ("aung",)),
        ("Ahmad bin Ismail", ("ahmad", "ismail")),
        ("Siti binti Abdullah", ("siti", "abdullah")),
        ("Ravi a/l Kumar", ("ravi", "kumar")),
        ("Al-Husseini", ("alhusseini",)),
        ("El Husseini", ("alhusseini",)),
        ("Abdel Rahman", ("abdulrahman",)),
        ("Abdurrahman", ("abdulrahman",)),
        ("Md. Rahim", ("mohammad", "rahim")),
        ("U", ("u",)),  # a title alone is kept: it is all there is
        ("Ma", ("ma",)),
    ],
)
def test_normalize_name(text: str, tokens: tuple[str, ...]) -> None:
    assert normalize_name(text).tokens == tokens


def test_family_name_is_the_part_before_the_comma_and_titles_stay_there() -> None:
    name = normalize_name("MA, Daw Li")
    assert name.family == ("ma",)
    assert name.tokens == ("ma", "li")


def test_non_latin_scripts_are_transliterated_to_ascii() -> None:
    for text in ("محمد", "মোহাম্মদ", "முருகன்", "නිමල්", "สมชาย", "王伟", "ကျော်", "حسین"):
        name = normalize_name(text)
        assert name.tokens and all(t.isascii() and t.isalpha() for t in name.tokens)


def test_sinhala_with_zero_width_joiner_is_accepted() -> None:
    assert normalize_name("ප්‍රනාන්දු").tokens


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "name_empty"),
        ("   ", "name_empty"),
        ("---", "name_empty"),
        ("Agent 007", "name_has_digits"),
        ("John 😀 Smith", "name_bad_characters"),
        ("Ali\x00Hassan", "name_bad_characters"),
        ("A" * 201, "name_too_long"),
        (" ".join(["Ali"] * 13), "name_too_many_words"),
    ],
)
def test_empty_or_absurd_names_are_refused_without_the_value(text: str, rule: str) -> None:
    with pytest.raises(InvalidIdentifier) as err:
        normalize_name(text)
    assert err.value.rule == rule
    assert err.value.field == "name"
    assert err.value.status == "INVALID_ARGUMENT"
    for word in ("Agent", "John", "Smith", "Ali", "Hassan", "007", "AAAA"):
        assert word not in str(err.value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_text_normalises_or_raises_invalid_identifier(text: str) -> None:
    try:
        name = normalize_name(text)
    except InvalidIdentifier as exc:
        # A short fragment ('.', 'a') may occur in any sentence by chance; a value that
        # could identify someone is longer than that.
        assert len(text.strip()) < 4 or text not in str(exc)
        return
    assert 1 <= len(name.tokens) <= 12
    assert all(t.isascii() and t.isalpha() and t.islower() for t in name.tokens)


# -- dates of birth --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "date", "precision"),
    [
        ("1990", PartialDate(1990), Precision.YEAR),
        ("1990-05", PartialDate(1990, 5), Precision.MONTH),
        (" 1990-05-12 ", PartialDate(1990, 5, 12), Precision.DAY),
        ("2000-02-29", PartialDate(2000, 2, 29), Precision.DAY),
    ],
)
def test_partial_dates(text: str, date: PartialDate, precision: Precision) -> None:
    parsed = parse_date_of_birth(text)
    assert parsed == date
    assert parsed.precision is precision
    assert parsed.isoformat() == text.strip()


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "bad_date_format"),
        ("12/05/1990", "bad_date_format"),
        ("19900512", "bad_date_format"),
        ("1990-13", "bad_date"),
        ("1990-02-30", "bad_date"),
        ("1899", "date_out_of_range"),
        ("0000", "date_out_of_range"),
        ("9999-12-31", "date_out_of_range"),
        (str(dt.date.today().year + 1), "date_out_of_range"),
    ],
)
def test_absurd_dates_are_refused_without_the_value(text: str, rule: str) -> None:
    with pytest.raises(InvalidIdentifier) as err:
        parse_date_of_birth(text)
    assert err.value.rule == rule
    assert err.value.field == "date_of_birth"
    if text:
        assert text not in str(err.value)


# -- match keys: what must match and what must not -------------------------------------------


@pytest.mark.parametrize("variant", ["Muhammad", "Mohamad", "Mohamed", "MOHAMMAD"])
def test_mohammed_spellings_match_phonetically(variant: str) -> None:
    assert best(shared("Mohammed", variant)) is Strength.PHONETIC


def test_mohammed_and_mahmoud_share_no_key() -> None:
    assert shared("Mohammed", "Mahmoud") == set()
    assert shared("Mohammed Hassan", "Mahmoud Hassan") == set()
    # With the family name marked they share the family-name key: a possible hit, never a hit.
    assert best(shared("HASSAN, Mohammed", "HASSAN, Mahmoud")) is Strength.WEAK


@pytest.mark.parametrize(
    "order", ["Aung San Suu Kyi", "Suu Kyi Aung San", "Kyi Suu San Aung", "aung san suu kyi"]
)
def test_aung_san_suu_kyi_in_any_order(order: str) -> None:
    assert best(shared("Aung San Suu Kyi", order)) is Strength.STRONG


def test_name_run_together_matches_the_spaced_one() -> None:
    assert best(shared("AungSanSuuKyi", "Aung San Suu Kyi")) is Strength.STRONG


@pytest.mark.parametrize(("burmese", "latin"), [("ကျော်မင်း", "Kyaw Min"), ("ခင်မိုး", "Khin Moe")])
def test_burmese_script_matches_its_latin_transliteration(burmese: str, latin: str) -> None:
    assert best(shared(burmese, latin)) is Strength.PHONETIC
    assert best(shared(latin, burmese)) is Strength.PHONETIC


def test_different_people_do_not_match() -> None:
    assert shared("Aung San Suu Kyi", "Min Aung Hlaing") == set()
    # Same name, another day of the same year: only the weak key (a possible hit).
    assert shared("Mohammed", "Mohammed", responder_dob="1990-05-13") == {
        (KeyKind.WEAK, Strength.WEAK)
    }
    assert shared("Mohammed", "Mohammed", responder_dob="1991") == set()


def test_single_names_are_supported() -> None:
    assert best(shared("Thant", "Thant")) is Strength.STRONG
    assert best(shared("U Thant", "Thant")) is Strength.STRONG


def test_partial_dates_match_in_both_directions_but_only_weakly() -> None:
    assert best(shared("Kyaw Min", "Kyaw Min", responder_dob="1990")) is Strength.WEAK
    assert best(shared("Kyaw Min", "Kyaw Min", asker_dob="1990")) is Strength.WEAK
    assert best(shared("Kyaw Min", "Kyaw Min", asker_dob="1990-05")) is Strength.WEAK
    assert best(shared("Kyaw Min", "Kyaw Min", asker_dob="1990", responder_dob="1990")) is (
        Strength.WEAK
    )
    # Two full dates that differ never meet at the month or year.
    kinds = shared("Kyaw Min", "Kyaw Min", responder_dob="1990-05-13")
    assert all(k is KeyKind.WEAK for k, _ in kinds)


def test_weak_key_needs_the_same_nationality_and_year() -> None:
    assert best(shared("HASSAN, Ali", "HASSAN, Omar")) is Strength.WEAK
    query = person_keys(PersonRecord("q", ("HASSAN, Ali",), DOB, "IRQ"), role=Role.QUERY)
    index = person_keys(PersonRecord("r", ("HASSAN, Omar",), DOB, "SYR"))
    assert not {k.data for k in query} & {k.data for k in index}


def test_document_key_is_exact_and_normalised() -> None:
    a = document_key("MMR", "MA 1234567")
    assert a == document_key("mmr", "ma1234567") == document_key("MMR", "MA1234567<<")
    assert a.strength is Strength.EXACT
    assert a != document_key("THA", "MA1234567")
    assert document_key("D<<", "C01X00T47").data == document_key("D", "C01X00T47").data


@pytest.mark.parametrize(("state", "number"), [("MMR", ""), ("MMR", "AB#12"), ("12", "A1")])
def test_bad_document_identifiers_are_refused(state: str, number: str) -> None:
    with pytest.raises(InvalidIdentifier) as err:
        document_key(state, number)
    if number:
        assert number not in str(err.value)


def test_keys_are_domain_separated() -> None:
    keys = person_keys(PersonRecord("p", ("Kyaw Min",), DOB, "MMR", (("MMR", "MA1234567"),)))
    datas = [k.data for k in keys]
    assert len(set(datas)) == len(datas)
    assert all(d.startswith(b"rcf-identity-key-v1") for d in datas)
    assert {k.kind for k in keys} == set(KeyKind)
    assert "Kyaw" not in repr(keys) and "1990" not in repr(keys)


def test_person_from_row_uses_aliases_and_original_script() -> None:
    row = {
        "record_id": "TH-P-1",
        "name_original": "ကျော်မင်း",
        "name_latin": "Kyaw Min",
        "aliases": "Kyau Min;Kyaw Minn",
        "date_of_birth": "1990",
        "nationality": "MMR",
        "document_numbers": "MMR:MA1234567",
    }
    record = PersonRecord.from_row(row)
    assert record.names == ("Kyaw Min", "Kyau Min", "Kyaw Minn", "ကျော်မင်း")
    assert record.documents == (("MMR", "MA1234567"),)
    assert "Kyaw" not in repr(record)


def test_a_bad_alias_does_not_cost_the_record_but_no_usable_name_does() -> None:
    ok = PersonRecord("p", ("Kyaw Min", "K4W M1N"), DOB, "MMR")
    assert person_keys(ok)
    with pytest.raises(InvalidIdentifier):
        person_keys(PersonRecord("p", ("123",), DOB, "MMR"))


# -- the token index ---------------------------------------------------------------------


def test_index_tokens_equal_the_askers_finalized_tokens() -> None:
    key = oprf.OprfKey.generate()
    responder = PersonRecord("TH-P-1", ("ကျော်မင်း", "Kyaw Min"), DOB, "MMR", (("MMR", "MA1"),))
    batch = build_token_index([responder, DocumentRecord("TH-D-1", "THA", "AA1234567")], key)
    assert batch.key_id == key.key_id and not batch.skipped
    by_token = {row.token: row for row in batch.rows}
    # The asker: keys of its own record, blinded, evaluated by the responder, finalized.
    asker_keys = person_keys(PersonRecord("q", ("Kyau Min",), DOB, "MMR"), role=Role.QUERY)
    inputs = [k.data for k in asker_keys]
    blinded = oprf.blind_batch(inputs)
    evaluated = oprf.blind_evaluate_batch(key, [b.blinded_element for b in blinded])
    tokens = oprf.finalize_batch(inputs, blinded, evaluated)
    hits = [by_token[t] for t in tokens if t in by_token]
    assert hits and {h.record_id for h in hits} == {"TH-P-1"}
    assert Strength.PHONETIC.value in {h.strength for h in hits}
    doc = oprf.evaluate(key, document_key("THA", "AA1234567").data)
    assert by_token[doc].record_id == "TH-D-1"
    assert by_token[doc].kind == KeyKind.DOCUMENT.value
    # A rotated key gives none of the old tokens.
    rotated = build_token_index([responder], oprf.OprfKey.generate())
    assert not {r.token for r in rotated.rows} & set(by_token)


def test_index_skips_unusable_records_by_id_and_rule_only() -> None:
    key = oprf.OprfKey.generate()
    batch = build_token_index(
        [
            PersonRecord("bad-1", ("Kyaw Min",), "1990-13-01", "MMR"),
            DocumentRecord("bad-2", "THA", "AA-#1"),
            PersonRecord("good", ("Kyaw Min",), DOB, "MMR"),
        ],
        key,
    )
    assert [(s.record_id, s.field, s.rule) for s in batch.skipped] == [
        ("bad-1", "date_of_birth", "bad_date"),
        ("bad-2", "document_number", "bad_document_number"),
    ]
    assert {r.record_id for r in batch.rows} == {"good"}


def test_index_over_worker_processes_equals_in_process() -> None:
    rows = generate_rows("TH", "persons", seed=3, rows=600)
    records = [PersonRecord.from_row({k: str(v) for k, v in r.items()}) for r in rows]
    key = oprf.OprfKey.generate()
    pooled = build_token_index(records, key, workers=2)
    single = build_token_index(records, key, workers=1)
    assert pooled.rows == single.rows
    assert not pooled.skipped
    assert {r.record_id for r in pooled.rows} == {r.record_id for r in records}
