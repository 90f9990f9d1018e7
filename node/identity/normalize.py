"""Names and dates of birth in one canonical form, so that spellings of one person compare equal.

A name goes through, in order:

1. checks: at most 200 characters and 12 words; letters, combining marks,
   spaces and punctuation only (a digit, symbol, emoji or control character
   is refused: no real name has one, and transliterators would spell them out);
2. Unicode NFKC, then transliteration of any script to Latin (below);
3. NFKD with combining marks removed (diacritics), case folding, apostrophes
   and ʿayn/hamza marks removed, every other non-letter a word break;
4. deliberate rules for the region's naming customs: a leading run of titles
   and honorifics is dropped (Mr, Dr, Haji, Sheikh; Burmese U, Daw, Maung,
   Mg, Ma, Ko, Saw, Naw, Sai, Nang) as long as a word remains; the Malay and
   Arabic filiation words bin, binti, bint, bte and the Malaysian and
   Singaporean a/l, a/p, s/o, d/o are dropped but the father's name after
   them is kept, because records of the same person keep or omit them
   (and bin/binti differ by sex only); the Arabic article joins the word
   after it (al-Husseini, Al Husseini, El Husseini, Alhusseini and الحسيني are
   all ``alhusseini``-like); ʿAbd-compounds are written one way (Abdul Rahman,
   Abdulrahman, Abdurrahman, Abdel Rahman are all ``abdulrahman``); the
   abbreviations Md, Mohd, Muhd are written out as ``mohammad``.

The family name is the part before the first comma when there is one (the
``persons`` dataset writes ``FAMILY, Given``); Burmese and other single or
family-less names simply have no comma. Word order is kept here (``tokens``);
the match keys sort the words so that order does not matter.

Transliteration: ``anyascii`` (maintained, pure Python, ISC licence, no system
library). Chosen by measuring each candidate on the synthetic persons of
``node.synthetic`` (20,000 rows per member for TH, MY, ID, AU, LK, BD, seed 7)
with ``benchmarks/transliteration_eval.py``: the share of records whose name
in its original script yields a phonetic match key shared with one of its
Latin spellings (name and alias forms; the match rule of ``node.identity.keys``).

================  ======  =======  =======  =======  =======  =======  =======  =====  =======  ====
phonetic match    all     Arabic   Bengali  Burmese  Chinese  Persian  Sinhala  Tamil  Thai     Viet
================  ======  =======  =======  =======  =======  =======  =======  =====  =======  ====
anyascii          49.2%   19.0%    60.4%    3.6%     97.3%    35.5%    43.3%    26.2%  13.8%    100%
unidecode         51.0%   40.3%    45.4%    3.5%     97.5%    28.2%    43.3%    26.2%  13.8%    100%
PyICU Any-Latin   46.5%   21.6%    44.6%    5.1%     97.5%    48.8%    0.0%     26.2%  0.0%     100%
PyICU + anyascii  49.0%   21.6%    44.6%    5.1%     97.5%    48.8%    43.3%    26.2%  0.0%     100%
uroman            55.5%   31.3%    61.0%    6.6%     97.3%    48.8%    57.5%    26.2%  79.3%    100%
================  ======  =======  =======  =======  =======  =======  =======  =====  =======  ====

(120,000 rows; "Arabic" is Arabic script for non-Persian nationalities, Rohingya
included; "PyICU + anyascii" is ICU 72's Any-Latin with anyascii on what it
leaves; with ICU's Burmese word breaks first it gives 49.1% / Burmese 6.3%.
Exact normalised-name agreement, all scripts: anyascii 32.1%, unidecode
27.6%, PyICU 28.2%, uroman 28.0%.) Why anyascii although uroman scores
higher: uroman takes 364 µs a name (anyascii 2.9 µs), more than the OPRF
evaluation of a key, and 3.3 s to start in every worker; unidecode is
GPL-2.0-or-later, which would put the Apache-2.0 node under the GPL; PyICU has no
wheels (it compiles against the system ICU, whose version then decides the
result: ICU 72 has no Sinhala or Thai to Latin here). Abjad scripts (Arabic,
Persian) write no short vowels and Burmese has no library romanisation close
to the conventional spellings (Aung, Kyaw, Thein), so cross-script matches
there stay rare whatever the library: those records still match on their
Latin name and aliases and on documents.

A date of birth is partial on purpose: ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``
(refugee records often hold only the year). It must be a real calendar date,
not before 1900 and not in the future.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from anyascii import anyascii

from rcf.node.identity.errors import InvalidIdentifier

MIN_YEAR = 1900
MAX_NAME_CHARS = 200
MAX_NAME_TOKENS = 12

Transliterator = Callable[[str], str]

# Leading titles and honorifics, as folded words.
TITLES = frozenset(
    {
        "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam", "mme", "mlle",
        "haji", "hj", "hajjah", "hjh", "hajji", "sheikh", "shaikh", "sheik", "syekh",
        # Burmese: U (elder man), Daw (woman), Maung / Mg (young man), Ma (young woman),
        # Ko (man of one's age); Karen Saw / Naw; Shan Sai / Nang.
        "u", "daw", "maung", "mg", "ma", "ko", "saw", "naw", "sai", "nang",
    }
)  # fmt: skip
FILIATION = frozenset({"bin", "binti", "bint", "bte", "binte", "bt"})
ABBREVIATIONS = {"md": "mohammad", "mohd": "mohammad", "muhd": "mohammad", "mhd": "mohammad"}
ARTICLES = frozenset({"al", "el"})

_FILIATION_SLASH = re.compile(r"(?<![^\W\d_])(?:a/l|a/p|s/o|d/o)(?![^\W\d_])", re.IGNORECASE)
_APOSTROPHES = re.compile(r"['`\u2018\u2019\u02bb\u02bc\u02be\u02bf\u02b9\u00b4]")
_NON_LETTER = re.compile(r"[^a-z]+")
_ABD = re.compile(r"^abd(?:[aeiou][lr]?)?(?=[a-z]{3})")
_ARABIC_ARTICLE = re.compile(r"(?<![\u0600-\u06ff])\u0627\u0644(?=[\u0600-\u06ff]{2})")
# Format characters that scripts need inside words: zero-width (non-)joiner.
_ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})


def transliterate(text: str) -> str:
    """Any script to ASCII Latin with the chosen library (anyascii; see the module docstring)."""
    return anyascii(text)


class Precision(IntEnum):
    """How much of a date of birth is known."""

    YEAR = 1
    MONTH = 2
    DAY = 3


@dataclass(frozen=True, order=True)
class PartialDate:
    """A date of birth of which the year, year and month, or whole date is known."""

    year: int
    month: int | None = None
    day: int | None = None

    @property
    def precision(self) -> Precision:
        if self.day is not None:
            return Precision.DAY
        return Precision.MONTH if self.month is not None else Precision.YEAR

    def truncated(self, precision: Precision) -> PartialDate:
        """The same date known only to the given precision (never finer than it is)."""
        p = min(precision, self.precision)
        return PartialDate(
            self.year,
            self.month if p >= Precision.MONTH else None,
            self.day if p >= Precision.DAY else None,
        )

    def isoformat(self) -> str:
        """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``."""
        text = f"{self.year:04d}"
        if self.month is not None:
            text += f"-{self.month:02d}"
        if self.day is not None:
            text += f"-{self.day:02d}"
        return text


def _bad_date(rule: str, sentence: str) -> InvalidIdentifier:
    return InvalidIdentifier("date_of_birth", rule, f"The date of birth {sentence}.")


def _today() -> dt.date:
    # A day's grace, as the importer allows: a birth today east of UTC is not "future".
    return dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)


def make_partial_date(
    year: int, month: int | None = None, day: int | None = None, *, today: dt.date | None = None
) -> PartialDate:
    """A checked PartialDate: real calendar date, not before 1900, not in the future."""
    limit = today or _today()
    if day is not None and month is None:
        raise _bad_date("bad_date", "has a day but no month")
    if month is not None and not 1 <= month <= 12:
        raise _bad_date("bad_date", "has no real month")
    if day is not None and month is not None:
        try:
            first = dt.date(year, month, day)
        except ValueError:
            raise _bad_date("bad_date", "is not a real calendar date") from None
    else:
        first = dt.date(year, month or 1, 1) if MIN_YEAR <= year <= 9999 else dt.date.max
    if year < MIN_YEAR or first > limit:
        raise _bad_date("date_out_of_range", "is before 1900 or in the future")
    return PartialDate(year, month, day)


_DATE_FORMS = (
    re.compile(r"(\d{4})"),
    re.compile(r"(\d{4})-(\d{2})"),
    re.compile(r"(\d{4})-(\d{2})-(\d{2})"),
)


def parse_date_of_birth(text: str, *, today: dt.date | None = None) -> PartialDate:
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` (surrounding spaces allowed) as a PartialDate."""
    if not isinstance(text, str):
        raise _bad_date("bad_date", "is not text")
    value = text.strip()
    for form in _DATE_FORMS:
        m = form.fullmatch(value)
        if m:
            parts = [int(g) for g in m.groups()]
            return make_partial_date(*parts, today=today)
    raise _bad_date("bad_date_format", "is not of the form YYYY, YYYY-MM or YYYY-MM-DD")


@dataclass(frozen=True)
class NormalizedName:
    """A name as folded ASCII words in written order; ``family`` when the record says which."""

    tokens: tuple[str, ...]
    family: tuple[str, ...] = ()

    @property
    def sorted_form(self) -> str:
        """The words sorted and space-joined: the same for any word order."""
        return " ".join(sorted(self.tokens))

    @property
    def joined_form(self) -> str:
        """The words run together in written order (names often are, in foreign records)."""
        return "".join(self.tokens)


def _bad_name(rule: str, sentence: str) -> InvalidIdentifier:
    return InvalidIdentifier("name", rule, f"The name {sentence}.")


def _check_characters(text: str) -> None:
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] in "LMPZ" or ch in _ALLOWED_FORMAT:
            continue
        if cat[0] == "N":
            raise _bad_name("name_has_digits", "holds digits")
        raise _bad_name("name_bad_characters", "holds symbols or control characters")


def _fold_words(text: str, translit: Transliterator) -> list[str]:
    # Transliterators give the Arabic-script article as a bare "l"; written out, it
    # joins its word as the Latin "al-" does below.
    latin = translit(_ARABIC_ARTICLE.sub("al", text))
    plain = "".join(
        ch for ch in unicodedata.normalize("NFKD", latin) if not unicodedata.combining(ch)
    ).casefold()
    plain = _APOSTROPHES.sub("", plain)
    return [w for w in _NON_LETTER.split(plain) if w]


def _customs(words: list[str], *, drop_titles: bool) -> list[str]:
    out: list[str] = []
    i = 0
    if drop_titles:
        while i < len(words) - 1 and words[i] in TITLES:
            i += 1
    while i < len(words):
        w = ABBREVIATIONS.get(words[i], words[i])
        if w in FILIATION and out and i + 1 < len(words):
            i += 1
            continue
        if w in ARTICLES and i + 1 < len(words):
            w = "al" + words[i + 1]
            i += 1
        out.append(w)
        i += 1
    # Abd-compounds: join "abdul rahman" first, then write every spelling of the prefix one way.
    joined: list[str] = []
    for w in out:
        if joined and joined[-1] in ("abd", "abdul", "abdel", "abdur", "abdal"):
            joined[-1] += w
        else:
            joined.append(w)
    return [_ABD.sub("abdul", w) for w in joined]


def normalize_name(text: str, *, translit: Transliterator = transliterate) -> NormalizedName:
    """Fold a name (any script; ``FAMILY, Given`` or free order) into a NormalizedName."""
    if not isinstance(text, str):
        raise _bad_name("bad_name", "is not text")
    if len(text) > MAX_NAME_CHARS:
        raise _bad_name("name_too_long", f"is longer than {MAX_NAME_CHARS} characters")
    _check_characters(text)
    text = unicodedata.normalize("NFKC", text)
    text = _FILIATION_SLASH.sub(" ", text)
    family_text, comma, given_text = text.partition(",")
    if comma:
        family = _customs(_fold_words(family_text, translit), drop_titles=False)
        given = _customs(_fold_words(given_text, translit), drop_titles=True)
        tokens = family + given
    else:
        family = []
        tokens = _customs(_fold_words(text, translit), drop_titles=True)
    if not tokens:
        raise _bad_name("name_empty", "has no letters")
    if len(tokens) > MAX_NAME_TOKENS:
        raise _bad_name("name_too_many_words", f"has more than {MAX_NAME_TOKENS} words")
    return NormalizedName(tuple(tokens), tuple(family))
