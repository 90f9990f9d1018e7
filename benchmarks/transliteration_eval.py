"""Measure transliteration libraries and phonetic codes on the synthetic names (not a speed bench).

Run: ``.venv/bin/pip install anyascii unidecode pyicu uroman`` in a scratch
environment with this project, then ``python -m benchmarks.transliteration_eval``.
Candidates that are not installed are skipped. The numbers it prints are the
ones recorded in ``node.identity.normalize`` and ``node.identity.keys``.

Transliteration: for every synthetic ``persons`` row whose name has an
original-script form, does the transliterated original share a match form with
any of the row's Latin spellings (name_latin and aliases)? ``exact`` compares
the normalised name forms, ``phonetic`` the phonetic forms (Metaphone), which
is what a ``phonetic_dob`` key compares when the dates agree.

Phonetic codes: over the Latin spellings of each entry of ``node.names``,
``recall`` is the share of pairs of spellings of one name whose codes agree,
``collisions`` the share of pairs of different names (same table) that agree.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable

from rcf.devnet.names import BURMESE_FEMALE, BURMESE_MALE, CULTURES
from rcf.devnet.synthetic import generate_rows
from rcf.node.identity.errors import InvalidIdentifier
from rcf.node.identity.keys import name_forms, phonetic_forms
from rcf.node.identity.normalize import NormalizedName, normalize_name

MEMBERS = ("TH", "MY", "ID", "AU", "LK", "BD")
ROWS = 20_000
SEED = 7
PERSIAN_NATIONALITIES = ("IRN", "AFG", "PAK")

Fn = Callable[[str], str]


def _candidates() -> dict[str, Fn]:
    found: dict[str, Fn] = {}
    with contextlib.suppress(ImportError):
        found["anyascii"] = importlib.import_module("anyascii").anyascii
    with contextlib.suppress(ImportError):
        found["unidecode"] = importlib.import_module("unidecode").unidecode
    try:
        icu = importlib.import_module("icu")
        tr = icu.Transliterator.createInstance("Any-Latin; Latin-ASCII")
        found["pyicu Any-Latin"] = tr.transliterate
        fallback = found.get("anyascii")
        if fallback is not None:
            any_ = fallback
            found["pyicu Any-Latin + anyascii"] = lambda s: any_(tr.transliterate(s))
            words = icu.BreakIterator.createWordInstance(icu.Locale("my"))

            def segmented(s: str) -> str:
                words.setText(s)
                bounds = [0, *words]
                parts = [s[i:j] for i, j in itertools.pairwise(bounds)]
                return any_(tr.transliterate(" ".join(parts)))

            found["pyicu word-break + Any-Latin + anyascii"] = segmented
    except ImportError:
        pass
    try:
        uroman = importlib.import_module("uroman").Uroman()
        found["uroman"] = lambda s: str(uroman.romanize_string(s))
    except ImportError:
        pass
    return found


def _script(text: str, nationality: str) -> str:
    for ch in text:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            script = name.split(" ")[0].lower()
            if script == "cjk":
                return "chinese"
            if script == "myanmar":
                return "burmese"
            if script == "latin":
                return "vietnamese"
            if script == "arabic" and nationality in PERSIAN_NATIONALITIES:
                return "persian"
            return script
    return "none"


def _norm(text: str, fn: Fn | None = None) -> NormalizedName | None:
    try:
        return normalize_name(text, translit=fn) if fn else normalize_name(text)
    except InvalidIdentifier:
        return None


def transliteration_rates() -> dict[str, dict[str, tuple[float, float, int]]]:
    """{candidate: {script: (exact rate, phonetic rate, rows)}} plus an 'all' row."""
    rows: list[tuple[str, str, list[str]]] = []  # script, original, Latin spellings
    for member in MEMBERS:
        for row in generate_rows(member, "persons", seed=SEED, rows=ROWS):
            original = str(row["name_original"])
            if not original:
                continue
            latin = [str(row["name_latin"]), *(a for a in str(row["aliases"]).split(";") if a)]
            rows.append((_script(original, str(row["nationality"])), original, latin))
    latin_forms: list[tuple[set[str], set[str]]] = []
    for _, _, spellings in rows:
        exact: set[str] = set()
        phon: set[str] = set()
        for s in spellings:
            n = _norm(s)
            if n is not None:
                exact |= set(name_forms(n))
                phon |= set(phonetic_forms(n))
        latin_forms.append((exact, phon))
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for cand, fn in _candidates().items():
        hits: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for (script, original, _), (exact, phon) in zip(rows, latin_forms, strict=True):
            n = _norm(original, fn)
            for key in (script, "all"):
                counts = hits[key]
                counts[2] += 1
                if n is not None and set(name_forms(n)) & exact:
                    counts[0] += 1
                if n is not None and set(phonetic_forms(n)) & phon:
                    counts[1] += 1
        out[cand] = {k: (v[0] / v[2], v[1] / v[2], v[2]) for k, v in sorted(hits.items())}
    return out


def _codes() -> dict[str, Fn]:
    jellyfish = importlib.import_module("jellyfish")
    return {
        "metaphone": jellyfish.metaphone,
        "nysiis": jellyfish.nysiis,
        "soundex": jellyfish.soundex,
        "match_rating_codex": jellyfish.match_rating_codex,
    }


def _tables() -> Iterable[list[tuple[str, ...]]]:
    for table in CULTURES.values():
        for entries in table.values():
            yield [latin for _, latin in entries]
    yield [latin for _, latin in BURMESE_MALE + BURMESE_FEMALE]


def phonetic_rates() -> dict[str, tuple[float, float]]:
    """{code: (recall over spelling pairs, collisions over different-name pairs)}."""
    out: dict[str, tuple[float, float]] = {}
    for name, code in _codes().items():
        same = [0, 0]
        diff = [0, 0]
        for table in _tables():
            forms: list[set[str]] = []
            for spellings in table:
                per: list[set[str]] = []
                for s in spellings:
                    n = _norm(s)
                    per.append(set(phonetic_forms(n, code)) if n else set())
                for a, b in itertools.combinations(per, 2):
                    same[1] += 1
                    same[0] += bool(a & b)
                forms.append(set().union(*per))
            for a, b in itertools.combinations(forms, 2):
                diff[1] += 1
                diff[0] += bool(a & b)
        out[name] = (same[0] / same[1], diff[0] / diff[1])
    return out


def main() -> None:
    for name, (recall, collisions) in phonetic_rates().items():
        print(f"phonetic {name:20s} recall {recall:6.1%}  collisions {collisions:6.1%}")
    for cand, scripts in transliteration_rates().items():
        print(f"\n{cand}")
        for script, (exact, phon, n) in scripts.items():
            print(f"  {script:12s} exact {exact:6.1%}  phonetic {phon:6.1%}  ({n} rows)")


if __name__ == "__main__":
    main()
