"""The network data dictionary: datasets, their dimensions and code lists, signed by the hub.

The RSO publishes it so that national figures add up: every node validates
its records against it, and aggregate queries name its datasets, dimensions
and measures.

Encoding: a ``rcf.v1.DataDictionary`` protobuf message inside a DSSE envelope
(payload type ``rcf.v1.DataDictionary``), exactly like the signed directory.
Protobuf rather than JSON because deterministic serialisation gives one byte
string for one dictionary without a canonical-JSON scheme of our own, and the
reader parses the payload only after the hub's signature holds. Admins who
edit a new version work on the JSON form (``to_json``/``from_json``), which is
converted to the message before signing.

Versioning: ``MAJOR.MINOR``. A minor version may only add codes to the code
lists of the version before it (``check_successor`` enforces this when the
hub publishes); everything else needs a new major version.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pycountry

from rcf.protos.v1 import dictionary_pb2
from rcf.trust.dsse import Envelope
from rcf.trust.errors import RcfError
from rcf.trust.keys import SigningKey
from rcf.trust.signed import open_document, sign_document

DEFAULT_VERSION = "1.0"

# The categories of the persons dataset (policies may exclude some from hits).
PERSON_CATEGORIES = (
    "irregular_migrant",
    "asylum_seeker",
    "refugee",
    "trafficking_victim",
    "suspected_smuggler",
    "suspected_trafficker",
    "missing_person",
    "deportee",
)

# What a request may state as its purpose (RequestHeader.purpose); bounded so a
# requester cannot put arbitrary text into a responder's audit log.
PURPOSE_RE = re.compile(r"^[a-z][a-z0-9-]{1,47}$")
DEFAULT_PURPOSES: Mapping[str, str] = {
    "connectivity-check": "Liveness and key checks between nodes (Ping).",
    "border-check": "A traveller or document checked at a border crossing point.",
    "border-control": "Border management and entry screening.",
    "document-check": "Verifying a travel document against records and alerts.",
    "alert-distribution": "Receiving document-fraud alerts.",
    "investigation": "A criminal investigation of smuggling, trafficking or document fraud.",
    "victim-identification": "Identifying a possible victim of trafficking.",
    "victim-protection": "Protection and assistance of trafficking victims.",
    "protection-monitoring": "Monitoring the protection of refugees and asylum seekers.",
    "search-and-rescue": "Search and rescue at sea or on land.",
    "return-and-reintegration": "Voluntary return and reintegration.",
    "operational-planning": "Planning operations and deployments.",
    "policy-analysis": "Analysis for national or regional policy.",
    "regional-analysis": "Regional statistics and trend analysis (RSO).",
    "ministerial-reporting": "Reports to Bali Process ministers and senior officials.",
    "audit": "Audit and oversight of the network.",
}

# Kinds a dimension may have. The last two occur only in identity datasets.
KINDS = ("code", "date", "month", "int", "text", "partial_date", "document_refs")
DATASET_KINDS = ("aggregate", "identity")
# Every record of every dataset carries this key; importing it again updates it.
ID_FIELD = "record_id"

_VERSION_RE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class DictionaryError(RcfError):
    """A data dictionary is malformed, unsigned, or an invalid successor."""

    default_reason = "dictionary_invalid"
    default_status = "FAILED_PRECONDITION"


@dataclass(frozen=True)
class Dimension:
    name: str
    kind: str
    codes: tuple[str, ...] = ()
    optional: bool = False
    pattern: str = ""
    description: str = ""

    @property
    def required(self) -> bool:
        return not self.optional


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str
    dimensions: tuple[Dimension, ...]
    measures: tuple[str, ...] = ()
    date_field: str = ""
    description: str = ""
    _by_name: dict[str, Dimension] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for d in self.dimensions:
            self._by_name[d.name] = d

    def dimension(self, name: str) -> Dimension | None:
        return self._by_name.get(name)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every field a record of this dataset has, in file order."""
        return (ID_FIELD, *(d.name for d in self.dimensions), *self.measures)


@dataclass(frozen=True)
class DataDictionary:
    version: str
    datasets: Mapping[str, Dataset]
    # When the hub signed it; two publications of the same content compare equal.
    issued_at_ms: int = field(default=0, compare=False)
    # The purposes a request may state: name → description.
    purposes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Frozen means frozen: nobody mutates the dictionary they were handed.
        object.__setattr__(self, "datasets", MappingProxyType(dict(self.datasets)))
        object.__setattr__(self, "purposes", MappingProxyType(dict(self.purposes)))

    def dataset(self, name: str) -> Dataset | None:
        return self.datasets.get(name)

    @property
    def major(self) -> int:
        return parse_version(self.version)[0]

    # -- protobuf edge ---------------------------------------------------

    def to_proto(self) -> dictionary_pb2.DataDictionary:
        return dictionary_pb2.DataDictionary(
            version=self.version,
            issued_at_ms=self.issued_at_ms,
            datasets=[
                dictionary_pb2.Dataset(
                    name=ds.name,
                    kind=ds.kind,
                    measures=list(ds.measures),
                    date_field=ds.date_field,
                    description=ds.description,
                    dimensions=[
                        dictionary_pb2.Dimension(
                            name=d.name,
                            kind=d.kind,
                            codes=list(d.codes),
                            optional=d.optional,
                            pattern=d.pattern,
                            description=d.description,
                        )
                        for d in ds.dimensions
                    ],
                )
                for ds in self.datasets.values()
            ],
            purposes=[
                dictionary_pb2.Purpose(name=n, description=d) for n, d in self.purposes.items()
            ],
        )

    @classmethod
    def from_proto(cls, msg: dictionary_pb2.DataDictionary) -> DataDictionary:
        return _validated(
            cls(
                version=msg.version,
                issued_at_ms=msg.issued_at_ms,
                datasets={
                    ds.name: Dataset(
                        name=ds.name,
                        kind=ds.kind,
                        measures=tuple(ds.measures),
                        date_field=ds.date_field,
                        description=ds.description,
                        dimensions=tuple(
                            Dimension(
                                name=d.name,
                                kind=d.kind,
                                codes=tuple(d.codes),
                                optional=d.optional,
                                pattern=d.pattern,
                                description=d.description,
                            )
                            for d in ds.dimensions
                        ),
                    )
                    for ds in msg.datasets
                },
                purposes={p.name: p.description for p in msg.purposes},
            )
        )

    # -- JSON form, for admins who edit a new version ------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "datasets": [
                    {
                        "name": ds.name,
                        "kind": ds.kind,
                        "description": ds.description,
                        "date_field": ds.date_field,
                        "measures": list(ds.measures),
                        "dimensions": [
                            {
                                "name": d.name,
                                "kind": d.kind,
                                "optional": d.optional,
                                "pattern": d.pattern,
                                "description": d.description,
                                "codes": list(d.codes),
                            }
                            for d in ds.dimensions
                        ],
                    }
                    for ds in self.datasets.values()
                ],
                "purposes": [{"name": n, "description": d} for n, d in self.purposes.items()],
            },
            indent=1,
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> DataDictionary:
        try:
            data = json.loads(text)
            datasets = {}
            for ds in data["datasets"]:
                dims = tuple(
                    Dimension(
                        name=str(d["name"]),
                        kind=str(d["kind"]),
                        codes=tuple(str(c) for c in d.get("codes", ())),
                        optional=bool(d.get("optional", False)),
                        pattern=str(d.get("pattern", "")),
                        description=str(d.get("description", "")),
                    )
                    for d in ds["dimensions"]
                )
                datasets[str(ds["name"])] = Dataset(
                    name=str(ds["name"]),
                    kind=str(ds["kind"]),
                    dimensions=dims,
                    measures=tuple(str(m) for m in ds.get("measures", ())),
                    date_field=str(ds.get("date_field", "")),
                    description=str(ds.get("description", "")),
                )
            purposes = {
                str(p["name"]): str(p.get("description", "")) for p in data.get("purposes", ())
            }
            return _validated(
                cls(version=str(data["version"]), datasets=datasets, purposes=purposes)
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DictionaryError(f"The data dictionary JSON is malformed: {exc}.") from exc


def parse_version(version: str) -> tuple[int, int]:
    """(major, minor) of a ``MAJOR.MINOR`` version string."""
    m = _VERSION_RE.match(version)
    if not m:
        raise DictionaryError(f"Dictionary version {version!r} is not of the form MAJOR.MINOR.")
    return int(m.group(1)), int(m.group(2))


def _validated(dictionary: DataDictionary) -> DataDictionary:
    """Refuse a structurally unusable dictionary, whoever built it."""
    parse_version(dictionary.version)
    for purpose in dictionary.purposes:
        if not PURPOSE_RE.match(purpose):
            raise DictionaryError(f"Purpose {purpose!r} is not of the form {PURPOSE_RE.pattern}.")
    for name, ds in dictionary.datasets.items():
        if name != ds.name or not _NAME_RE.match(name):
            raise DictionaryError(f"Dataset name {name!r} is not a valid identifier.")
        if ds.kind not in DATASET_KINDS:
            raise DictionaryError(f"Dataset {name} has unknown kind {ds.kind!r}.")
        seen: set[str] = set()
        for col in [*(d.name for d in ds.dimensions), *ds.measures]:
            if not _NAME_RE.match(col) or col == ID_FIELD or col in seen:
                raise DictionaryError(f"Dataset {name}: field {col!r} is invalid or repeated.")
            seen.add(col)
        for d in ds.dimensions:
            if d.kind not in KINDS:
                raise DictionaryError(f"Dataset {name}: dimension {d.name} has kind {d.kind!r}.")
            if (d.kind == "code") != bool(d.codes):
                raise DictionaryError(
                    f"Dataset {name}: dimension {d.name} needs codes exactly when kind is code."
                )
            if len(set(d.codes)) != len(d.codes):
                raise DictionaryError(f"Dataset {name}: dimension {d.name} repeats a code.")
            if d.pattern:
                try:
                    re.compile(d.pattern)
                except re.error as exc:
                    raise DictionaryError(
                        f"Dataset {name}: dimension {d.name} has a bad pattern: {exc}."
                    ) from exc
        date_dim = ds.dimension(ds.date_field) if ds.date_field else None
        if ds.date_field and (date_dim is None or date_dim.kind not in ("date", "month")):
            raise DictionaryError(f"Dataset {name}: date_field must name a date or month.")
    return dictionary


def check_successor(old: DataDictionary, new: DataDictionary) -> None:
    """Raise DictionaryError unless new may be published after old.

    Same major version: the minor must grow and the only change allowed is
    codes added to existing code lists. A higher major may change anything.
    """
    old_v, new_v = parse_version(old.version), parse_version(new.version)
    if new_v <= old_v:
        raise DictionaryError(
            f"Version {new.version} does not follow the published {old.version}.",
            reason="dictionary_version",
        )
    if new_v[0] > old_v[0]:
        return
    dropped = set(old.purposes) - set(new.purposes)
    if dropped:
        raise DictionaryError(
            f"Minor version {new.version} removes purpose {sorted(dropped)[0]!r}; purposes can "
            "only be added.",
            reason="dictionary_incompatible",
        )
    if set(new.datasets) != set(old.datasets):
        raise DictionaryError(
            f"Minor version {new.version} adds or removes datasets; that needs a new major "
            "version.",
            reason="dictionary_incompatible",
        )
    for name, old_ds in old.datasets.items():
        new_ds = new.datasets[name]
        shape = (old_ds.kind, old_ds.measures, old_ds.date_field)
        if shape != (new_ds.kind, new_ds.measures, new_ds.date_field) or len(
            old_ds.dimensions
        ) != len(new_ds.dimensions):
            raise DictionaryError(
                f"Minor version {new.version} changes dataset {name}; only codes may be added.",
                reason="dictionary_incompatible",
            )
        for od, nd in zip(old_ds.dimensions, new_ds.dimensions, strict=True):
            if (od.name, od.kind, od.optional, od.pattern) != (
                nd.name,
                nd.kind,
                nd.optional,
                nd.pattern,
            ):
                raise DictionaryError(
                    f"Minor version {new.version} changes {name}.{od.name}; only codes may be "
                    "added.",
                    reason="dictionary_incompatible",
                )
            removed = set(od.codes) - set(nd.codes)
            if removed:
                raise DictionaryError(
                    f"Minor version {new.version} removes code {sorted(removed)[0]!r} from "
                    f"{name}.{od.name}; codes can only be added.",
                    reason="dictionary_incompatible",
                )


# -- signing -----------------------------------------------------------------


def sign_dictionary(dictionary: DataDictionary, hub_key: SigningKey) -> Envelope:
    """The hub's signed publication of dictionary."""
    return sign_document(dictionary.to_proto(), [hub_key])


def verify_dictionary(envelope: Envelope, *, hub_public_key: bytes) -> DataDictionary:
    """Verify a signed dictionary against the pinned hub key and parse it."""
    opened = open_document(
        envelope,
        dictionary_pb2.DataDictionary,
        what="data dictionary",
        pinned_key=hub_public_key,
        error=DictionaryError,
        bad_signature_reason="dictionary_bad_signature",
    )
    return DataDictionary.from_proto(opened.message)


# -- the v1 defaults the hub ships ------------------------------------------

# ICAO Doc 9303 part 3 codes for people without a nationality code of their own;
# Rohingya, for one, are mostly recorded as stateless (XXA).
ICAO_SPECIAL_NATIONALITIES = ("XXA", "XXB", "XXC", "XXX")

# Border crossing points (air, sea, land) of the region in UN/LOCODE form
# (country alpha-2 + 3 letters). Curated for the first version; states ask the
# RSO to add theirs in a minor version. Check against the UNECE list before a
# real deployment.
BORDER_CROSSING_POINTS = (
    "AUBNE", "AUDRW", "AUMEL", "AUPER", "AUSYD", "AUBME", "CXXCH",
    "BDCGP", "BDDAC", "BDCXB",
    "IDBTH", "IDDPS", "IDJKT", "IDKOE", "IDMES", "IDPNK", "IDTNJ",
    "KHPNH", "KHPOI", "KHREP",
    "LAVTE",
    "LKCMB",
    "MMKAW", "MMMDY", "MMRGN", "MMMWQ",
    "MYBKI", "MYJHB", "MYKUL", "MYPEN", "MYPKG", "MYLGK",
    "NZAKL",
    "PGPOM",
    "PHMNL", "PHCEB",
    "SGSIN",
    "THBKK", "THCNX", "THHKT", "THMAE", "THRNG", "THSGZ", "THARA", "THNKP",
    "VNHAN", "VNSGN",
    "INCCU", "INMAA", "NPKTM", "PKKHI", "AFKBL", "IRIKA", "CNCAN", "HKHKG",
)  # fmt: skip

AGE_BANDS = ("0-4", "5-11", "12-17", "18-59", "60+", "unknown")  # UNHCR demographic bands
SEXES = ("F", "M", "X")  # as in the MRZ; X: unspecified
DOCUMENT_TYPES = (
    "passport",
    "identity_card",
    "visa",
    "residence_permit",
    "refugee_travel_document",
    "seafarer_identity_document",
    "other",
)


def state_alpha3(member_id: str) -> str | None:
    """The ISO 3166-1 alpha-3 code of a member id given as alpha-2 or alpha-3, or None for
    a member that is not a state (the RSO, UNHCR, IOM)."""
    country = None
    if len(member_id) == 2:
        country = pycountry.countries.get(alpha_2=member_id.upper())
    elif len(member_id) == 3:
        country = pycountry.countries.get(alpha_3=member_id.upper())
    return None if country is None else str(country.alpha_3)


def nationality_codes() -> tuple[str, ...]:
    """Every ISO 3166-1 alpha-3 code (from pycountry) plus ICAO's stateless/refugee codes."""
    iso = sorted(c.alpha_3 for c in pycountry.countries)
    return (*iso, *ICAO_SPECIAL_NATIONALITIES)


def location_codes() -> tuple[str, ...]:
    """ISO 3166-2 subdivisions (provinces, from pycountry) and the border crossing points."""
    subdivisions = sorted(s.code for s in pycountry.subdivisions)
    return (*subdivisions, *sorted(BORDER_CROSSING_POINTS))


def _code(name: str, codes: Iterable[str], description: str = "", **kw: Any) -> Dimension:
    return Dimension(name=name, kind="code", codes=tuple(codes), description=description, **kw)


@functools.cache
def default_dictionary() -> DataDictionary:
    """The first version of the dictionary, which a new hub publishes."""
    nat = nationality_codes()
    issuing = tuple(c for c in nat if c != "XXX")
    sex = _code("sex", SEXES)
    age = _code("age_band", AGE_BANDS)
    month = "YYYY-MM"
    datasets = [
        Dataset(
            name="irregular_movements",
            kind="aggregate",
            description="Irregular movements of people by sea, land and air.",
            date_field="event_date",
            measures=("persons",),
            dimensions=(
                Dimension("event_date", "date", description="YYYY-MM-DD"),
                _code("reporting_state", issuing, "ISO 3166-1 alpha-3"),
                _code("location", location_codes(), "ISO 3166-2 province or UN/LOCODE port"),
                _code("route", ("sea", "land", "air")),
                _code("direction", ("departure", "transit", "arrival")),
                _code("nationality", nat, "ISO 3166-1 alpha-3, or ICAO XXA/XXB/XXC/XXX"),
                sex,
                age,
                _code(
                    "outcome",
                    ("intercepted", "rescued", "disembarked", "returned", "dead", "missing"),
                ),
            ),
        ),
        Dataset(
            name="trafficking_victims",
            kind="aggregate",
            description="Identified victims of trafficking in persons.",
            date_field="identification_month",
            measures=("victims",),
            dimensions=(
                Dimension("identification_month", "month", description=month),
                _code("nationality", nat),
                sex,
                age,
                _code(
                    "exploitation",
                    (
                        "sexual",
                        "forced_labour",
                        "forced_marriage",
                        "forced_criminality",
                        "organ_removal",
                        "other",
                    ),
                ),
                _code(
                    "identified_by",
                    (
                        "police",
                        "immigration",
                        "labour_inspection",
                        "social_services",
                        "ngo",
                        "international_organisation",
                        "self_referral",
                        "other",
                    ),
                ),
            ),
        ),
        Dataset(
            name="document_fraud_detections",
            kind="aggregate",
            description="Fraudulent documents detected at the border.",
            date_field="month",
            measures=("detections",),
            dimensions=(
                Dimension("month", "month", description=month),
                _code("border_crossing_point", sorted(BORDER_CROSSING_POINTS), "UN/LOCODE"),
                _code("document_type", DOCUMENT_TYPES),
                _code("issuing_state", issuing),
                _code(
                    "fraud_type",
                    (
                        "counterfeit",
                        "forged",
                        "pseudo",
                        "fraudulently_obtained_genuine",
                        "impostor",
                        "stolen_blank",
                    ),
                ),
                _code("holder_nationality", nat),
            ),
        ),
        Dataset(
            name="asylum_applications",
            kind="aggregate",
            description="Asylum applications and first-instance decisions.",
            date_field="month",
            measures=("applications",),
            dimensions=(
                Dimension("month", "month", description=month),
                _code("nationality", nat),
                sex,
                age,
                _code(
                    "decision",
                    (
                        "pending",
                        "recognised",
                        "complementary_protection",
                        "rejected",
                        "otherwise_closed",
                    ),
                ),
            ),
        ),
        Dataset(
            name="persons",
            kind="identity",
            description="People of interest; held only by the owning node, checked hit/no-hit.",
            date_field="recorded_on",
            dimensions=(
                Dimension("name_original", "text", optional=True, description="original script"),
                Dimension("name_latin", "text", description="Latin script, family name first"),
                Dimension(
                    "aliases", "text", optional=True, description="other spellings, ';'-separated"
                ),
                Dimension(
                    "date_of_birth", "partial_date", optional=True, description="YYYY[-MM[-DD]]"
                ),
                sex,
                _code("nationality", nat),
                Dimension(
                    "document_numbers",
                    "document_refs",
                    optional=True,
                    description="ISSUER:NUMBER pairs, ';'-separated, e.g. MMR:MA1234567",
                ),
                _code(
                    "category",
                    PERSON_CATEGORIES,
                ),
                Dimension("local_reference", "text", optional=True),
                Dimension("recorded_on", "date", description="when the record was made"),
            ),
        ),
        Dataset(
            name="documents",
            kind="identity",
            description="Stolen, lost, revoked and invalid travel documents.",
            date_field="date_reported",
            dimensions=(
                _code("issuing_state", issuing),
                _code("document_type", DOCUMENT_TYPES),
                Dimension("document_number", "text", pattern=r"[A-Z0-9<]{1,20}"),
                _code("status", ("stolen", "lost", "revoked", "invalid", "stolen_blank")),
                Dimension("date_reported", "date"),
            ),
        ),
    ]
    return _validated(
        DataDictionary(
            version=DEFAULT_VERSION,
            datasets={d.name: d for d in datasets},
            purposes=DEFAULT_PURPOSES,
        )
    )
