"""Realistic, seeded, reproducible synthetic data for any member state.

The same (member, dataset, seed, rows) always gives the same file, byte for
byte, with the installed Faker version. What makes it realistic:

- movements follow the region's real corridors (Myanmar and Bangladesh to
  Malaysia and Indonesia across the Andaman Sea and the Bay of Bengal, Sri
  Lanka, Indonesia, Iran, Afghanistan and Vietnam to Australia by sea, land
  routes through Thailand, air routes into the hubs) with plausible
  nationalities per corridor, the sailing season, boat-sized groups at sea and
  small ones on land and in the air;
- names come in their original scripts (Burmese, Bengali, Arabic, Persian,
  Tamil, Sinhala, Thai, Chinese, Vietnamese) with Latin transliterations and
  the real-world spelling variants (node.names), Latin-script names from Faker;
- a share of the people are drawn from a network-wide pool seeded without the
  member, so the same person turns up at several nodes, spelled differently:
  material for the hit/no-hit checks;
- passports and travel documents get numbers in the issuing state's style and
  a TD3 machine-readable zone whose ICAO 9303 check digits are valid
  (``mrz_td3``, written to ``MEMBER-persons.mrz.csv``).

Dates fall in a fixed window (``PERIOD_START`` … ``PERIOD_END``) rather than
relative to today, so reruns on another day give the same data.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faker import Faker

from rcf.devnet.names import BURMESE_FEMALE, BURMESE_MALE, CULTURES, Entry
from rcf.trust.dictionary import (
    BORDER_CROSSING_POINTS,
    DataDictionary,
    default_dictionary,
    state_alpha3,
)
from rcf.trust.errors import ConfigError
from rcf.trust.files import open_private, private_dir

PERIOD_START = dt.date(2022, 1, 1)
PERIOD_END = dt.date(2025, 12, 31)
POOL_SIZE = 400  # people shared across the network
POOL_SHARE = 0.1

AGE_WEIGHTS = {"0-4": 6, "5-11": 9, "12-17": 12, "18-59": 68, "60+": 3, "unknown": 2}


# -- ICAO 9303 machine-readable zone -----------------------------------------------


def check_digit(field: str) -> int:
    """ICAO 9303 check digit: weights 7, 3, 1; 0-9 as is, A-Z = 10-35, '<' = 0; sum mod 10."""
    total = 0
    for i, ch in enumerate(field):
        if ch.isdigit():
            value = int(ch)
        elif "A" <= ch <= "Z":
            value = ord(ch) - 55
        elif ch == "<":
            value = 0
        else:
            raise ValueError(f"{ch!r} cannot appear in a machine-readable zone")
        total += value * (7, 3, 1)[i % 3]
    return total % 10


def mrz_name(text: str) -> str:
    """Latin text as MRZ characters: diacritics dropped, A-Z kept, everything else '<'."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().upper()
    return "".join(ch if "A" <= ch <= "Z" else "<" for ch in plain)


def mrz_td3(
    *,
    doc_type: str,
    issuing_state: str,
    family: str,
    given: str,
    number: str,
    nationality: str,
    birth: str,  # YYMMDD, '<' for unknown parts
    sex: str,
    expiry: str,  # YYMMDD
    optional: str = "",
) -> tuple[str, str]:
    """The two 44-character lines of a passport (TD3) MRZ with valid check digits."""
    name = mrz_name(family) + "<<" + mrz_name(given)
    line1 = (doc_type.ljust(2, "<") + issuing_state + name)[:44].ljust(44, "<")
    num = number.ljust(9, "<")
    opt = optional.ljust(14, "<")
    sex_char = sex if sex in ("F", "M") else "<"
    parts = [
        num + str(check_digit(num)),
        nationality,
        birth + str(check_digit(birth)),
        sex_char,
        expiry + str(check_digit(expiry)),
        opt + str(check_digit(opt)),
    ]
    composite = parts[0] + parts[2] + parts[4] + parts[5]
    line2 = "".join(parts) + str(check_digit(composite))
    return line1, line2


# -- geography ----------------------------------------------------------------------


@dataclass(frozen=True)
class Corridor:
    name: str
    route: str
    origins: dict[str, float]  # nationality -> weight
    departure: dict[str, tuple[str, ...]]  # state -> locations people leave from
    transit: dict[str, tuple[str, ...]]
    arrival: dict[str, tuple[str, ...]]
    peak_months: tuple[int, ...] = ()  # the sailing season, where there is one
    group: tuple[int, int] = (1, 4)  # typical min, max people per event

    def states(self) -> set[str]:
        return set(self.departure) | set(self.transit) | set(self.arrival)


# Locations: ISO 3166-2 provinces and UN/LOCODE points from the dictionary.
CORRIDORS = (
    Corridor(
        "andaman_sea", "sea",
        {"XXA": 0.62, "MMR": 0.18, "BGD": 0.20},
        {"MMR": ("MM-16", "MM-05"), "BGD": ("BD-B", "BDCXB")},
        {"THA": ("TH-85", "TH-83", "TH-82", "THRNG")},
        {"MYS": ("MY-02", "MY-09", "MY-07"), "IDN": ("ID-AC", "ID-SU")},
        peak_months=(11, 12, 1, 2, 3, 4), group=(20, 180),
    ),
    Corridor(
        "bay_of_bengal", "sea",
        {"XXA": 0.7, "BGD": 0.3},
        {"BGD": ("BDCXB", "BD-B"), "MMR": ("MM-16",)},
        {},
        {"IDN": ("ID-AC",), "MYS": ("MY-02",), "IND": ("IN-AN",)},
        peak_months=(11, 12, 1, 2, 3), group=(30, 200),
    ),
    Corridor(
        "indian_ocean_to_australia", "sea",
        {"LKA": 0.35, "IDN": 0.1, "IRN": 0.15, "AFG": 0.15, "VNM": 0.15, "IRQ": 0.1},
        {"LKA": ("LK-5", "LK-4"), "IDN": ("ID-JB", "ID-NT", "ID-JT"), "VNM": ("VN-43",)},
        {"IDN": ("ID-NT", "ID-JB", "ID-BA")},
        {"AUS": ("AU-WA", "AU-NT", "CXXCH", "AUDRW")},
        peak_months=(10, 11, 12, 1, 2, 3), group=(8, 90),
    ),
    Corridor(
        "mekong_land", "land",
        {"MMR": 0.55, "KHM": 0.25, "LAO": 0.2},
        {"MMR": ("MM-13", "MM-17"), "KHM": ("KH-1",), "LAO": ("LA-VT",)},
        {"THA": ("TH-63", "THMAE", "TH-27", "THARA", "TH-43", "THNKP")},
        {"THA": ("TH-10", "TH-11", "TH-13", "THBKK"), "MYS": ("MY-09", "MY-02")},
        group=(1, 25),
    ),
    Corridor(
        "thai_malaysian_border", "land",
        {"MMR": 0.5, "XXA": 0.2, "BGD": 0.15, "KHM": 0.15},
        {"THA": ("TH-90", "THSGZ", "TH-95")},
        {},
        {"MYS": ("MY-09", "MY-02", "MY-03")},
        group=(1, 15),
    ),
    Corridor(
        "air_hubs", "air",
        {"VNM": 0.2, "CHN": 0.2, "IND": 0.12, "PAK": 0.1, "LKA": 0.1, "BGD": 0.1, "IRN": 0.08,
         "PHL": 0.1},
        {"VNM": ("VNSGN", "VNHAN"), "CHN": ("CNCAN",), "IND": ("INMAA", "INCCU"),
         "PAK": ("PKKHI",), "LKA": ("LKCMB",), "BGD": ("BDDAC",), "IRN": ("IRIKA",),
         "PHL": ("PHMNL",)},
        {"THA": ("THBKK",), "MYS": ("MYKUL",), "SGP": ("SGSIN",), "HKG": ("HKHKG",)},
        {"AUS": ("AUSYD", "AUMEL", "AUPER", "AUBNE"), "NZL": ("NZAKL",), "JPN": ("JP-13",),
         "KOR": ("KR-11",), "MYS": ("MYKUL", "MYBKI"), "IDN": ("IDJKT", "IDDPS"),
         "THA": ("THBKK", "THHKT"), "SGP": ("SGSIN",)},
        group=(1, 4),
    ),
)  # fmt: skip

CULTURE_BY_NATIONALITY = {
    "MMR": "burmese", "XXA": "rohingya", "BGD": "bengali", "IRN": "persian", "AFG": "persian",
    "PAK": "persian", "IRQ": "arabic", "SYR": "arabic", "LKA": "tamil|sinhala", "IND": "tamil",
    "THA": "thai", "CHN": "chinese", "HKG": "chinese", "TWN": "chinese", "VNM": "vietnamese",
}  # fmt: skip
FAKER_LOCALE = {
    "IDN": "id_ID", "MYS": "id_ID", "AUS": "en_AU", "NZL": "en_NZ", "PHL": "en_PH",
    "NPL": "en_IN", "USA": "en_US", "GBR": "en_GB",
}  # fmt: skip

# Passport number styles of some issuing states (letters prefix, digits).
DOC_STYLE = {
    "MMR": ("MA", 7), "BGD": ("B", 8), "THA": ("AA", 7), "MYS": ("A", 8), "IDN": ("C", 7),
    "AUS": ("PA", 7), "NZL": ("LA", 6), "LKA": ("N", 7), "IRN": ("X", 8), "AFG": ("P", 8),
    "VNM": ("C", 7), "CHN": ("E", 8), "IND": ("K", 7), "PAK": ("AB", 7),
}  # fmt: skip


def alpha3(member_id: str) -> str:
    """The ISO 3166-1 alpha-3 code of a member given by its alpha-2 or alpha-3 id."""
    code = state_alpha3(member_id)
    if code is None:
        raise ConfigError(
            f"Member {member_id!r} is not a state (an ISO 3166 alpha-2 or alpha-3 code); "
            "synthetic national data is generated for states only."
        )
    return code


def _weighted(rng: random.Random, weights: Mapping[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _date(rng: random.Random, peak_months: Sequence[int] = ()) -> dt.date:
    span = (PERIOD_END - PERIOD_START).days
    while True:
        day = PERIOD_START + dt.timedelta(days=rng.randrange(span + 1))
        # Outside the season, keep only a third of the days: fewer boats sail.
        if not peak_months or day.month in peak_months or rng.random() < 0.33:
            return day


def _month(rng: random.Random) -> str:
    return _date(rng).isoformat()[:7]


# -- people ------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    given: Entry
    family: Entry | None
    culture: str
    sex: str
    nationality: str
    birth: dt.date
    seed: int

    def spelled(self, rng: random.Random) -> tuple[str, str, list[str]]:
        """(original, Latin 'FAMILY, Given', other Latin spellings) with a random spelling."""
        g_orig, g_latin = self.given
        given = rng.choice(g_latin) if rng.random() < 0.35 else g_latin[0]
        variants = [v for v in g_latin if v != given]
        if self.family is None:
            return g_orig, given, variants
        f_orig, f_latin = self.family
        family = rng.choice(f_latin) if rng.random() < 0.35 else f_latin[0]
        if self.culture == "chinese":
            original = f_orig + g_orig
        elif self.culture == "vietnamese":
            original = f"{f_orig} {g_orig}"
        else:
            original = f"{g_orig} {f_orig}"
        others = [f"{f}, {given}" for f in f_latin if f != family]
        others += [f"{family}, {v}" for v in variants]
        return original, f"{family}, {given}", others[:3]


def _faker(locale: str, seed: int) -> Faker:
    fake = Faker(locale)
    fake.seed_instance(seed)
    return fake


def make_person(rng: random.Random, nationality: str) -> Person:
    sex = "F" if rng.random() < 0.38 else "M"
    seed = rng.getrandbits(32)
    age_years = rng.choice(
        (rng.randint(1, 17), rng.randint(18, 45), rng.randint(18, 45), rng.randint(46, 70))
    )
    birth = PERIOD_END - dt.timedelta(days=age_years * 365 + rng.randrange(365))
    culture = CULTURE_BY_NATIONALITY.get(nationality, "")
    if "|" in culture:
        culture = rng.choice(culture.split("|"))
    if culture == "burmese":
        table = BURMESE_FEMALE if sex == "F" else BURMESE_MALE
        syllables = rng.sample(table, rng.choice((2, 2, 3)))
        given: Entry = (
            "".join(s[0] for s in syllables),
            _combine([s[1] for s in syllables]),
        )
        return Person(given, None, culture, sex, nationality, birth, seed)
    if culture in CULTURES:
        t = CULTURES[culture]
        return Person(
            rng.choice(t["female" if sex == "F" else "male"]),
            rng.choice(t["family"]),
            culture,
            sex,
            nationality,
            birth,
            seed,
        )
    fake = _faker(FAKER_LOCALE.get(nationality, "en_US"), seed)
    first = fake.first_name_female() if sex == "F" else fake.first_name_male()
    last = fake.last_name()
    given_v = (first, *_old_spellings(first)) if nationality == "IDN" else (first,)
    return Person(
        (first, given_v),
        (last, (last, *_old_spellings(last))),
        "latin",
        sex,
        nationality,
        birth,
        seed,
    )


def _combine(parts: list[tuple[str, ...]]) -> tuple[str, ...]:
    """Spellings of a multi-syllable Burmese name: the usual one, then single swaps."""
    usual = " ".join(p[0] for p in parts)
    out = [usual]
    for i, p in enumerate(parts):
        for alt in p[1:]:
            out.append(" ".join(alt if j == i else q[0] for j, q in enumerate(parts)))
    out.append(usual.replace(" ", ""))  # often run together in foreign records
    return tuple(dict.fromkeys(out))


def _old_spellings(name: str) -> tuple[str, ...]:
    """Indonesian names keep pre-1972 spellings (Soeharto / Suharto, Djoko / Joko)."""
    old = name.replace("u", "oe").replace("j", "dj").replace("J", "Dj").replace("c", "tj")
    return (old,) if old != name else ()


def _birth_text(rng: random.Random, birth: dt.date) -> str:
    r = rng.random()
    if r < 0.12:
        return str(birth.year)  # only the year known, common for refugees
    if r < 0.17:
        return birth.isoformat()[:7]
    return birth.isoformat()


def document_number(rng: random.Random, issuing_state: str) -> str:
    prefix, digits = DOC_STYLE.get(issuing_state, ("", 9))
    if not prefix:
        prefix = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(1))
        digits = 8
    return prefix + "".join(rng.choice("0123456789") for _ in range(digits))


# -- dataset generators --------------------------------------------------------------

Row = dict[str, Any]


def _corridors_for(state: str) -> list[Corridor]:
    mine = [c for c in CORRIDORS if state in c.states()]
    return mine or [c for c in CORRIDORS if c.name == "air_hubs"]


def _movement(rng: random.Random, state: str, corridors: list[Corridor]) -> Row:
    c = rng.choice(corridors)
    roles = [
        (r, places)
        for r, places in (
            ("departure", c.departure),
            ("transit", c.transit),
            ("arrival", c.arrival),
        )
        if state in places
    ]
    direction, places = rng.choice(roles) if roles else ("arrival", {state: (state[:2],)})
    location = (
        rng.choice(places[state])
        if state in places
        else rng.choice([p for p in BORDER_CROSSING_POINTS if p.startswith(state[:2])] or ["SGSIN"])
    )
    origins = (
        c.origins
        if direction != "departure"
        else {k: v for k, v in c.origins.items() if k in (state, "XXA")} or c.origins
    )
    sea = c.route == "sea"
    outcome_w = (
        {"intercepted": 40, "rescued": 18, "disembarked": 30, "returned": 8, "dead": 2,
         "missing": 2}
        if sea
        else {"intercepted": 62, "returned": 30, "disembarked": 0.1, "rescued": 6, "dead": 1.5,
              "missing": 0.4}
    )  # fmt: skip
    if c.route == "air":
        outcome_w = {"intercepted": 55, "returned": 44, "disembarked": 0.1, "rescued": 0.1,
                     "dead": 0.01, "missing": 0.01}  # fmt: skip
    lo, hi = c.group
    persons = max(1, min(hi, int(rng.lognormvariate(0, 0.9) * (lo + hi) / 4)))
    return {
        "event_date": _date(rng, c.peak_months).isoformat(),
        "reporting_state": state,
        "location": location,
        "route": c.route,
        "direction": direction,
        "nationality": _weighted(rng, origins),
        "sex": "F" if rng.random() < (0.3 if sea else 0.4) else "M",
        "age_band": _weighted(rng, AGE_WEIGHTS),
        "outcome": _weighted(rng, outcome_w),
        "persons": persons,
    }


def _nationalities(state: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for c in _corridors_for(state):
        for k, v in c.origins.items():
            weights[k] = weights.get(k, 0) + v
    weights[state] = weights.get(state, 0) + 0.5
    return weights


def _trafficking(rng: random.Random, state: str, nat: dict[str, float]) -> Row:
    exploitation = _weighted(
        rng,
        {"forced_labour": 44, "sexual": 36, "forced_marriage": 7, "forced_criminality": 8,
         "organ_removal": 0.5, "other": 4.5},
    )  # fmt: skip
    sex = (
        "F"
        if rng.random() < (0.9 if exploitation in ("sexual", "forced_marriage") else 0.35)
        else "M"
    )
    return {
        "identification_month": _month(rng),
        "nationality": _weighted(rng, nat),
        "sex": sex,
        "age_band": _weighted(rng, {"5-11": 4, "12-17": 22, "18-59": 72, "unknown": 2}),
        "exploitation": exploitation,
        "identified_by": _weighted(
            rng,
            {
                "police": 35,
                "immigration": 20,
                "labour_inspection": 12,
                "social_services": 8,
                "ngo": 15,
                "international_organisation": 6,
                "self_referral": 3,
                "other": 1,
            },
        ),
        "victims": 1 if rng.random() < 0.7 else rng.randint(2, 12),
    }


HIGH_VALUE = {
    "MYS": 3,
    "SGP": 3,
    "AUS": 2,
    "GBR": 2,
    "JPN": 2,
    "KOR": 2,
    "FRA": 1,
    "CAN": 1,
    "USA": 1,
}


def _fraud(rng: random.Random, state: str, nat: dict[str, float]) -> Row:
    bcps = [p for p in BORDER_CROSSING_POINTS if p.startswith(state[:2])] or ["SGSIN"]
    holder = _weighted(rng, nat)
    issuing = _weighted(rng, {**HIGH_VALUE, holder: 6, state: 2})
    return {
        "month": _month(rng),
        "border_crossing_point": rng.choice(bcps),
        "document_type": _weighted(
            rng,
            {
                "passport": 60,
                "visa": 18,
                "identity_card": 8,
                "residence_permit": 10,
                "refugee_travel_document": 1,
                "seafarer_identity_document": 2,
                "other": 1,
            },
        ),
        "issuing_state": issuing,
        "fraud_type": _weighted(
            rng,
            {
                "counterfeit": 30,
                "forged": 25,
                "impostor": 25,
                "fraudulently_obtained_genuine": 12,
                "stolen_blank": 5,
                "pseudo": 3,
            },
        ),
        "holder_nationality": holder,
        "detections": 1 if rng.random() < 0.8 else rng.randint(2, 6),
    }


def _asylum(rng: random.Random, state: str, nat: dict[str, float]) -> Row:
    nationality = _weighted(rng, {k: v for k, v in nat.items() if k != state} or {"AFG": 1})
    return {
        "month": _month(rng),
        "nationality": nationality,
        "sex": "F" if rng.random() < 0.4 else "M",
        "age_band": _weighted(rng, AGE_WEIGHTS),
        "decision": _weighted(
            rng,
            {
                "pending": 35,
                "recognised": 25,
                "complementary_protection": 8,
                "rejected": 25,
                "otherwise_closed": 7,
            },
        ),
        "applications": 1 + int(rng.expovariate(0.3)),
    }


CATEGORIES = {
    "irregular_migrant": 45, "asylum_seeker": 15, "refugee": 10, "trafficking_victim": 8,
    "suspected_smuggler": 7, "suspected_trafficker": 3, "missing_person": 4, "deportee": 8,
}  # fmt: skip


def network_pool(seed: int) -> list[Person]:
    """People shared across the network: the same list for every member with this seed."""
    rng = random.Random(f"pool:{seed}")
    nat: dict[str, float] = {}
    for c in CORRIDORS:
        for k, v in c.origins.items():
            nat[k] = nat.get(k, 0) + v
    return [make_person(rng, _weighted(rng, nat)) for _ in range(POOL_SIZE)]


# -- writing files ---------------------------------------------------------------------


def _persons(
    rng: random.Random, state: str, member: str, rows: int, seed: int, mrz_out: list[list[str]]
) -> Iterator[Row]:
    nat = _nationalities(state)
    pool = network_pool(seed)
    for i in range(rows):
        person = (
            rng.choice(pool) if rng.random() < POOL_SHARE else make_person(rng, _weighted(rng, nat))
        )
        original, latin, others = person.spelled(rng)
        docs: list[str] = []
        record_id = f"{member}-P-{i + 1:07d}"
        if rng.random() < 0.6 and person.nationality not in ("XXA", "XXX"):
            # The document's own seed keeps a pooled person's passport number the same everywhere.
            doc_rng = random.Random(f"doc:{person.seed}")
            number = document_number(doc_rng, person.nationality)
            docs.append(f"{person.nationality}:{number}")
            family, _, given = latin.partition(", ")
            line1, line2 = mrz_td3(
                doc_type="P", issuing_state=person.nationality, family=family or latin,
                given=given, number=number, nationality=person.nationality,
                birth=person.birth.strftime("%y%m%d"), sex=person.sex,
                expiry=(PERIOD_END + dt.timedelta(days=doc_rng.randrange(300, 3000))).strftime(
                    "%y%m%d"
                ),
            )  # fmt: skip
            mrz_out.append([record_id, docs[0], line1, line2])
        yield {
            "name_original": original if original != latin else "",
            "name_latin": latin,
            "aliases": ";".join(others),
            "date_of_birth": _birth_text(rng, person.birth),
            "sex": person.sex,
            "nationality": person.nationality,
            "document_numbers": ";".join(docs),
            "category": _weighted(rng, CATEGORIES),
            "local_reference": f"{member}/{rng.randint(2015, 2025)}/{rng.randrange(10**6):06d}",
            "recorded_on": _date(rng).isoformat(),
        }


def _documents(rng: random.Random, state: str, rows: int) -> Iterator[Row]:
    for _ in range(rows):
        # A state reports mostly its own documents; some foreign ones found or seized.
        issuing = state if rng.random() < 0.85 else _weighted(rng, HIGH_VALUE)
        yield {
            "issuing_state": issuing,
            "document_type": _weighted(
                rng, {"passport": 70, "identity_card": 20, "visa": 5, "residence_permit": 5}
            ),
            "document_number": document_number(rng, issuing),
            "status": _weighted(
                rng, {"lost": 55, "stolen": 30, "revoked": 7, "invalid": 5, "stolen_blank": 3}
            ),
            "date_reported": _date(rng).isoformat(),
        }


DATASET_CODES = {
    "irregular_movements": "IM",
    "trafficking_victims": "TV",
    "document_fraud_detections": "DF",
    "asylum_applications": "AA",
    "persons": "P",
    "documents": "D",
}


def generate_rows(member_id: str, dataset: str, *, seed: int, rows: int) -> Iterator[Row]:
    """Rows (with record_id) of one dataset for one member; same arguments, same rows."""
    state = alpha3(member_id)
    member = member_id.upper()
    rng = random.Random(f"{seed}:{member}:{dataset}")
    code = DATASET_CODES.get(dataset)
    if code is None:
        raise ConfigError(f"Unknown dataset {dataset!r}; choose from {', '.join(DATASET_CODES)}.")
    nat = _nationalities(state)
    corridors = _corridors_for(state)
    source: Iterator[Row]
    if dataset == "persons":
        source = _persons(rng, state, member, rows, seed, [])
    elif dataset == "documents":
        source = _documents(rng, state, rows)
    else:
        make: Callable[[], Row] = {
            "irregular_movements": lambda: _movement(rng, state, corridors),
            "trafficking_victims": lambda: _trafficking(rng, state, nat),
            "document_fraud_detections": lambda: _fraud(rng, state, nat),
            "asylum_applications": lambda: _asylum(rng, state, nat),
        }[dataset]
        source = (make() for _ in range(rows))
    for i, row in enumerate(source):
        yield {"record_id": f"{member}-{code}-{i + 1:07d}", **row}


def generate_member_data(
    member_id: str,
    out_dir: Path,
    *,
    seed: int,
    rows: int,
    datasets: Sequence[str] | None = None,
    dictionary: DataDictionary | None = None,
) -> dict[str, Path]:
    """Write MEMBER-DATASET.csv for each dataset (all by default) into out_dir; return the paths.

    Persons also get MEMBER-persons.mrz.csv: record id, document, and the TD3 MRZ lines.
    """
    dictionary = dictionary or default_dictionary()
    state = alpha3(member_id)  # fail early for non-state members
    del state
    member = member_id.upper()
    # Names and dates of birth, synthetic or not, are kept like real ones: 0600 files,
    # in a 0700 folder when we create it (an existing folder is the user's to set).
    if not out_dir.exists():
        private_dir(out_dir)
    paths: dict[str, Path] = {}
    for name in datasets or list(DATASET_CODES):
        ds = dictionary.dataset(name)
        if ds is None:
            raise ConfigError(f"Unknown dataset {name!r}; choose from {', '.join(DATASET_CODES)}.")
        path = out_dir / f"{member}-{name}.csv"
        tmp = path.with_name(path.name + ".tmp")
        mrz: list[list[str]] = []
        with open_private(tmp) as fh:
            writer = csv.writer(fh)
            writer.writerow(ds.columns)
            rows_iter = (
                ({"record_id": r_id, **r} for r_id, r in _numbered_persons(member, seed, rows, mrz))
                if name == "persons"
                else generate_rows(member_id, name, seed=seed, rows=rows)
            )
            for row in rows_iter:
                writer.writerow([row.get(c, "") for c in ds.columns])
        tmp.replace(path)
        paths[name] = path
        if name == "persons":
            mrz_path = out_dir / f"{member}-persons.mrz.csv"
            # Not a dataset: the documents' machine-readable zones, for trying
            # `rcf query document --mrz` and `rcf alert check --mrz` on the persons file.
            with open_private(mrz_path) as fh:
                writer = csv.writer(fh)
                writer.writerow(["record_id", "document", "mrz_line1", "mrz_line2"])
                writer.writerows(mrz)
            paths["persons_mrz"] = mrz_path
    return paths


def _numbered_persons(
    member: str, seed: int, rows: int, mrz: list[list[str]]
) -> Iterator[tuple[str, Row]]:
    state = alpha3(member)
    rng = random.Random(f"{seed}:{member}:persons")
    for i, row in enumerate(_persons(rng, state, member, rows, seed, mrz)):
        yield f"{member}-P-{i + 1:07d}", row
