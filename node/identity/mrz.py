"""ICAO Doc 9303 machine-readable zones: TD1 (3 x 30), TD2 (2 x 36) and TD3 (2 x 44).

``parse_mrz`` checks the layout and every check digit and returns an
``MrzDocument``. An error names the field and the rule it broke (``MrzError``
with ``field`` and ``rule``) and never the characters it found.

Check digits: weights 7, 3, 1 repeating; 0-9 count as themselves, A-Z as 10-35
and the filler ``<`` as 0; the sum modulo 10. An optional-data field of fillers
only may carry ``<`` as its check digit (ICAO 9303 part 4, TD3). A TD1 document
number longer than nine characters continues in the optional data, with ``<``
in the check digit place and the check digit after the number's end (part 5).

Dates are YYMMDD. A date of birth takes the century that puts it in the
past; unknown parts written as ``<`` give a partial date (``74<<<<`` is 1974).
An expiry date takes the century that puts it within 50 years of today.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

from rcf.node.identity.errors import InvalidIdentifier, MrzError
from rcf.node.identity.keys import DocumentRecord, PersonRecord
from rcf.node.identity.normalize import PartialDate, make_partial_date

_WEIGHTS = (7, 3, 1)
_CHARSET = re.compile(r"[A-Z0-9<]*")


class MrzFormat(StrEnum):
    TD1 = "TD1"
    TD2 = "TD2"
    TD3 = "TD3"


# (lines, characters per line)
LAYOUTS = {MrzFormat.TD1: (3, 30), MrzFormat.TD2: (2, 36), MrzFormat.TD3: (2, 44)}


@dataclass(frozen=True)
class MrzDocument:
    """What a machine-readable zone says, after every check digit has been verified."""

    format: MrzFormat
    document_code: str  # e.g. P, PA, I, ID, V
    issuing_state: str  # ICAO code, fillers removed (D for Germany)
    document_number: str
    nationality: str
    date_of_birth: PartialDate | None
    sex: str  # F, M or X (< in the zone)
    date_of_expiry: dt.date | None
    optional_data: str
    family_name: str
    given_names: str

    def __repr__(self) -> str:  # a document number and name must not reach a log
        return f"MrzDocument({self.format.value}, {self.document_code})"

    @property
    def name(self) -> str:
        """``FAMILY, Given names`` as the persons dataset writes names."""
        return f"{self.family_name}, {self.given_names}" if self.given_names else self.family_name

    def to_document_record(self, record_id: str = "") -> DocumentRecord:
        return DocumentRecord(record_id, self.issuing_state, self.document_number)

    def to_person_record(self, record_id: str = "") -> PersonRecord:
        return PersonRecord(
            record_id,
            (self.name,),
            self.date_of_birth.isoformat() if self.date_of_birth else None,
            self.nationality or None,
            ((self.issuing_state, self.document_number),),
        )


def _error(field: str, rule: str, sentence: str) -> MrzError:
    return MrzError(field, rule, f"MRZ {field.replace('_', ' ')}: {sentence}.")


def _value(ch: str, field: str) -> int:
    if "0" <= ch <= "9":
        return ord(ch) - 48
    if "A" <= ch <= "Z":
        return ord(ch) - 55
    if ch == "<":
        return 0
    raise _error(field, "bad_character", "holds a character outside A-Z, 0-9 and <")


def check_digit(text: str, field: str = "check_digit") -> int:
    """ICAO 9303 check digit of ``text`` (weights 7, 3, 1; sum mod 10)."""
    return sum(_value(ch, field) * _WEIGHTS[i % 3] for i, ch in enumerate(text)) % 10


def _verify(text: str, digit: str, field: str, *, filler_ok: bool = False) -> None:
    if filler_ok and digit == "<" and set(text) <= {"<"}:
        return
    if not digit.isdigit():
        raise _error(field, "bad_check_digit", "the check digit is not a digit")
    if check_digit(text, field) != int(digit):
        raise _error(field, "check_digit_mismatch", "the check digit does not match")


def _state(text: str, field: str) -> str:
    code = text.rstrip("<")
    if not code or not code.isalpha() or "<" in code:
        raise _error(field, "bad_state_code", "is not a state code of letters")
    return code


def _two_digits(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _birth(text: str, today: dt.date) -> PartialDate | None:
    if set(text) == {"<"}:
        return None
    yy, mm, dd = (_two_digits(text[i : i + 2]) for i in (0, 2, 4))
    if yy is None or (mm is None and dd is not None):
        raise _error("date_of_birth", "bad_date", "is not YYMMDD")
    # The century that puts the date in the past.
    year = 2000 + yy if 2000 + yy <= today.year else 1900 + yy
    try:
        return make_partial_date(year, mm, dd, today=today)
    except InvalidIdentifier:
        raise _error("date_of_birth", "bad_date", "is not a real date in the past") from None


def _expiry(text: str, today: dt.date) -> dt.date | None:
    if set(text) == {"<"}:
        return None
    if not text.isdigit():
        raise _error("date_of_expiry", "bad_date", "is not YYMMDD")
    yy, mm, dd = int(text[:2]), int(text[2:4]), int(text[4:])
    year = 2000 + yy if 2000 + yy <= today.year + 50 else 1900 + yy
    try:
        return dt.date(year, mm, dd)
    except ValueError:
        raise _error("date_of_expiry", "bad_date", "is not a real calendar date") from None


def _names(text: str) -> tuple[str, str]:
    family, _, given = text.partition("<<")
    family = " ".join(w for w in family.split("<") if w)
    given = " ".join(w for w in given.split("<") if w)
    if not family:
        raise _error("name", "name_empty", "has no primary identifier")
    if any(ch.isdigit() for ch in family + given):
        raise _error("name", "name_has_digits", "holds digits")
    return family, given


def _sex(ch: str) -> str:
    if ch not in "FMX<":
        raise _error("sex", "bad_sex", "is not F, M or <")
    return "X" if ch == "<" else ch


def _lines(text: str | list[str] | tuple[str, ...]) -> list[str]:
    raw = text.splitlines() if isinstance(text, str) else list(text)
    return [line.strip() for line in raw if line.strip()]


def parse_mrz(
    mrz: str | list[str] | tuple[str, ...], *, today: dt.date | None = None
) -> MrzDocument:
    """Parse and verify a TD1, TD2 or TD3 zone given as lines (or one newline-separated text)."""
    today = today or dt.datetime.now(dt.UTC).date()
    lines = _lines(mrz)
    shape = (len(lines), len(lines[0]) if lines else 0)
    fmt = next((f for f, layout in LAYOUTS.items() if layout == shape), None)
    if fmt is None or any(len(line) != shape[1] for line in lines):
        raise _error("layout", "bad_layout", "is not 3 lines of 30, 2 of 36 or 2 of 44 characters")
    for line in lines:
        if not _CHARSET.fullmatch(line):
            raise _error("layout", "bad_character", "holds a character outside A-Z, 0-9 and <")
    if fmt is MrzFormat.TD1:
        return _td1(lines, today)
    return _td2_td3(lines, fmt, today)


def _td2_td3(lines: list[str], fmt: MrzFormat, today: dt.date) -> MrzDocument:
    l1, l2 = lines
    end = len(l2)  # 36 or 44
    optional = l2[28 : end - 2] if fmt is MrzFormat.TD3 else l2[28 : end - 1]
    _verify(l2[0:9], l2[9], "document_number")
    _verify(l2[13:19], l2[19], "date_of_birth")
    _verify(l2[21:27], l2[27], "date_of_expiry")
    if fmt is MrzFormat.TD3:
        _verify(optional, l2[42], "optional_data", filler_ok=True)
        composite = l2[0:10] + l2[13:20] + l2[21:43]
    else:
        composite = l2[0:10] + l2[13:20] + l2[21:35]
    _verify(composite, l2[-1], "composite")
    number = l2[0:9].rstrip("<")
    if not number or "<" in number:
        raise _error("document_number", "bad_document_number", "is empty or has inner fillers")
    family, given = _names(l1[5:])
    return MrzDocument(
        format=fmt,
        document_code=l1[0:2].rstrip("<"),
        issuing_state=_state(l1[2:5], "issuing_state"),
        document_number=number,
        nationality=_state(l2[10:13], "nationality"),
        date_of_birth=_birth(l2[13:19], today),
        sex=_sex(l2[20]),
        date_of_expiry=_expiry(l2[21:27], today),
        optional_data=optional.rstrip("<"),
        family_name=family,
        given_names=given,
    )


def _td1(lines: list[str], today: dt.date) -> MrzDocument:
    l1, l2, l3 = lines
    optional1 = l1[15:30]
    if l1[14] == "<" and optional1[0] != "<":
        # Long number: the rest of it, then its check digit, in the optional data.
        rest = optional1.split("<", 1)[0]
        if len(rest) < 2:
            raise _error("document_number", "bad_document_number", "has a broken extension")
        number_text, digit = l1[5:14] + rest[:-1], rest[-1]
        optional1 = optional1[len(rest) :]
    else:
        number_text, digit = l1[5:14], l1[14]
    _verify(number_text, digit, "document_number")
    _verify(l2[0:6], l2[6], "date_of_birth")
    _verify(l2[8:14], l2[14], "date_of_expiry")
    _verify(l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29], l2[29], "composite")
    number = number_text.rstrip("<")
    if not number or "<" in number:
        raise _error("document_number", "bad_document_number", "is empty or has inner fillers")
    family, given = _names(l3)
    optional = (optional1.strip("<") + "<" + l2[18:29].rstrip("<")).strip("<")
    return MrzDocument(
        format=MrzFormat.TD1,
        document_code=l1[0:2].rstrip("<"),
        issuing_state=_state(l1[2:5], "issuing_state"),
        document_number=number,
        nationality=_state(l2[15:18], "nationality"),
        date_of_birth=_birth(l2[0:6], today),
        sex=_sex(l2[7]),
        date_of_expiry=_expiry(l2[8:14], today),
        optional_data=optional,
        family_name=family,
        given_names=given,
    )
