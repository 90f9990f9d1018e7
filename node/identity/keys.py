"""Match keys: the byte strings that go into the OPRF, each with the strength of what it proves.

Kinds and strengths (what a shared key may answer, once turned into tokens):

- ``document``: issuing state + document number, exact → ``hit``;
- ``name_dob``: the full normalised name (words sorted, or run together in
  written order) + full date of birth → strong → ``hit``;
- ``phonetic_dob``: the phonetic code of each word (sorted) or of the run-together
  name + full date of birth → phonetic → ``hit``;
- ``weak``: phonetic family name (or the whole name when there is none) + birth
  year + nationality → weak → only ever ``possible hit``.

Partial dates of birth: a name key with a date known only to the year or month
is weak, whoever holds it. Keys carry the date at a precision Q and a tag
saying whether the indexed record knows its date exactly to Q (``=``) or more
finely (``+``). The responder indexes each record at its own precision (``=``)
and at every coarser one (``+``); the asker asks at its own precision (``=``
and ``+``) and at every coarser one (``=``). So 1990-05-12 at one side finds
1990 at the other in both directions, while two full dates that differ never
meet at the year: a shared key needs at least one side to know no more than Q.

Each key is ``DOMAIN || kind || fields``, every part length-prefixed, so no two
different (kind, fields) give the same bytes. Phonetic codes: Metaphone
(``jellyfish``); see ``PHONETIC_CHOICE``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

import jellyfish

from rcf.node.identity.errors import InvalidIdentifier
from rcf.node.identity.normalize import (
    NormalizedName,
    PartialDate,
    Precision,
    normalize_name,
    parse_date_of_birth,
)

DOMAIN = b"rcf-identity-key-v1"
MAX_DOCUMENT_CHARS = 20
PHONETIC_CHOICE = """Metaphone (jellyfish), measured by benchmarks/transliteration_eval.py
on the Latin spellings of node.names: share of pairs of spellings of one name that
agree / share of pairs of different names that collide: Metaphone 70.6% / 0.7%,
NYSIIS 62.0% / 0.6%, Soundex 82.5% / 1.0%, Match Rating 56.7% / 0.3%. Soundex
agrees more often but gives Mohammed and Mahmoud the same code (M530); Metaphone
keeps them apart (MHMT / MMT) and collides less."""

_DOC_STRIP = re.compile(r"[\s<\-/.]")
_DOC_NUMBER = re.compile(r"[A-Z0-9]{1,20}")
_STATE = re.compile(r"[A-Z]{1,3}")


class Strength(StrEnum):
    EXACT = "exact"
    STRONG = "strong"
    PHONETIC = "phonetic"
    WEAK = "weak"


class KeyKind(StrEnum):
    DOCUMENT = "document"
    NAME_DOB = "name_dob"
    PHONETIC_DOB = "phonetic_dob"
    WEAK = "weak"


class Role(StrEnum):
    """Which side computes the keys: the responder's index or the asker's query."""

    INDEX = "index"
    QUERY = "query"


@dataclass(frozen=True)
class MatchKey:
    """One key: its kind, its strength and the domain-separated bytes for the OPRF."""

    kind: KeyKind
    strength: Strength
    data: bytes

    def __repr__(self) -> str:  # the bytes hold a name or number in clear
        return f"MatchKey({self.kind.value}, {self.strength.value})"


@dataclass(frozen=True)
class DocumentRecord:
    """A travel document: issuing state (ICAO code) and number."""

    record_id: str
    issuing_state: str
    document_number: str

    def __repr__(self) -> str:
        return f"DocumentRecord({self.record_id})"

    @classmethod
    def from_row(cls, row: Mapping[str, str | None]) -> DocumentRecord:
        """From a ``documents`` dataset row."""
        return cls(
            row.get("record_id") or "",
            row.get("issuing_state") or "",
            row.get("document_number") or "",
        )


@dataclass(frozen=True)
class PersonRecord:
    """A person: names (primary first, any script), date of birth, nationality, documents."""

    record_id: str
    names: tuple[str, ...]
    date_of_birth: str | None = None
    nationality: str | None = None
    documents: tuple[tuple[str, str], ...] = ()  # (issuing state, number)

    def __repr__(self) -> str:
        return f"PersonRecord({self.record_id})"

    @classmethod
    def from_row(cls, row: Mapping[str, str | None]) -> PersonRecord:
        """From a ``persons`` dataset row: name_latin, aliases (';'), name_original, documents."""
        names = [row.get("name_latin") or ""]
        names += [a for a in (row.get("aliases") or "").split(";") if a.strip()]
        if (row.get("name_original") or "").strip():
            names.append(row["name_original"] or "")
        docs: list[tuple[str, str]] = []
        for ref in (row.get("document_numbers") or "").split(";"):
            issuer, sep, number = ref.strip().partition(":")
            if sep:
                docs.append((issuer, number))
        return cls(
            row.get("record_id") or "",
            tuple(n for n in names if n.strip()),
            (row.get("date_of_birth") or "").strip() or None,
            (row.get("nationality") or "").strip() or None,
            tuple(docs),
        )


def _encode(kind: KeyKind, *fields: str) -> bytes:
    out = bytearray(DOMAIN)
    for part in (kind.value, *fields):
        raw = part.encode("utf-8")
        out += len(raw).to_bytes(2, "big") + raw
    return bytes(out)


def normalize_document_number(number: str) -> str:
    """Upper case without spaces, fillers and separators; A-Z and 0-9 only, at most 20."""
    if not isinstance(number, str):
        raise InvalidIdentifier("document_number", "bad_document_number", "Not text.")
    value = _DOC_STRIP.sub("", number.upper())
    if not _DOC_NUMBER.fullmatch(value):
        raise InvalidIdentifier(
            "document_number",
            "bad_document_number",
            f"The document number must be 1 to {MAX_DOCUMENT_CHARS} letters A-Z and digits.",
        )
    return value


def normalize_state(code: str) -> str:
    """An ICAO issuing-state or nationality code (``D<<`` for Germany becomes ``D``)."""
    value = code.strip().upper().rstrip("<") if isinstance(code, str) else ""
    if not _STATE.fullmatch(value):
        raise InvalidIdentifier(
            "issuing_state", "bad_state_code", "The state code must be 1 to 3 letters A-Z."
        )
    return value


def document_key(issuing_state: str, number: str) -> MatchKey:
    """The exact key of a document: issuing state + number."""
    return MatchKey(
        KeyKind.DOCUMENT,
        Strength.EXACT,
        _encode(
            KeyKind.DOCUMENT, normalize_state(issuing_state), normalize_document_number(number)
        ),
    )


def document_keys(record: DocumentRecord) -> list[MatchKey]:
    """Keys of a ``documents`` record (one)."""
    return [document_key(record.issuing_state, record.document_number)]


def phonetic(word: str) -> str:
    """The phonetic code of one folded word (Metaphone; see PHONETIC_CHOICE)."""
    return str(jellyfish.metaphone(word)).upper()


def name_forms(name: NormalizedName) -> tuple[str, ...]:
    """The name as sorted words and as the words run together in written order (sorted)."""
    return tuple(sorted({name.sorted_form, name.joined_form}))


def phonetic_forms(name: NormalizedName, code: Callable[[str], str] = phonetic) -> tuple[str, ...]:
    """Phonetic codes: of each word (sorted, space-joined) and of the run-together name."""
    words = sorted(c for c in (code(t) for t in name.tokens) if c)
    forms = {" ".join(words)} if words else set()
    joined = code(name.joined_form)
    if joined:
        forms.add(joined)
    return tuple(sorted(forms))  # a fixed order: the same rows in every process


def weak_form(name: NormalizedName) -> str:
    """Phonetic code of the family name, or of the whole name when none is marked."""
    words = name.family or name.tokens
    return " ".join(sorted(c for c in (phonetic(t) for t in words) if c))


def _dated(dob: PartialDate, role: Role) -> Iterator[tuple[str, str, bool]]:
    """(date text at precision Q, tag, is-full-date) pairs for one side (module docstring)."""
    own = dob.precision
    for q in Precision:
        if q > own:
            break
        text = dob.truncated(q).isoformat()
        if role is Role.INDEX:
            yield text, "=" if q == own else "+", q == Precision.DAY
        else:
            yield text, "=", q == Precision.DAY
            if q == own and q != Precision.DAY:
                yield text, "+", False


def name_keys(
    names: Iterable[NormalizedName],
    dob: PartialDate | None,
    nationality: str | None,
    *,
    role: Role,
) -> list[MatchKey]:
    """The name keys (name_dob, phonetic_dob, weak) of one person's name forms, deduplicated."""
    keys: dict[bytes, MatchKey] = {}

    def add(kind: KeyKind, strength: Strength, *fields: str) -> None:
        data = _encode(kind, *fields)
        keys.setdefault(data, MatchKey(kind, strength, data))

    for name in names:
        if dob is not None:
            for date_text, tag, full in _dated(dob, role):
                for form in name_forms(name):
                    add(KeyKind.NAME_DOB, Strength.STRONG if full else Strength.WEAK,
                        form, date_text, tag)  # fmt: skip
                for form in phonetic_forms(name):
                    add(KeyKind.PHONETIC_DOB, Strength.PHONETIC if full else Strength.WEAK,
                        form, date_text, tag)  # fmt: skip
            if nationality:
                weak = weak_form(name)
                if weak:
                    add(KeyKind.WEAK, Strength.WEAK, weak, f"{dob.year:04d}", nationality)
    return list(keys.values())


def person_keys(record: PersonRecord, *, role: Role = Role.INDEX) -> list[MatchKey]:
    """Every key of a person: documents (exact) and each name form's name keys.

    A name that cannot be normalised is skipped when another one can (an alias
    with digits must not cost the record); a record with no usable name and no
    document raises InvalidIdentifier. A bad date of birth raises.
    """
    dob = parse_date_of_birth(record.date_of_birth) if record.date_of_birth else None
    nationality = normalize_state(record.nationality) if record.nationality else None
    keys = [document_key(state, number) for state, number in record.documents]
    names: list[NormalizedName] = []
    first_error: InvalidIdentifier | None = None
    for text in record.names:
        try:
            names.append(normalize_name(text))
        except InvalidIdentifier as exc:
            first_error = first_error or exc
    if not names and first_error is not None and not keys:
        raise first_error
    seen = {k.data for k in keys}
    for key in name_keys(names, dob, nationality, role=role):
        if key.data not in seen:
            seen.add(key.data)
            keys.append(key)
    return keys
