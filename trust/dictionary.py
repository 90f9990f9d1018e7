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
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

import pycountry

from rcf.protos.v1 import dictionary_pb2
from rcf.trust.dsse import Envelope
from rcf.trust.errors import RcfError
from rcf.trust.keys import SigningKey
from rcf.trust.signed import open_document, sign_document

# What a request may state as its purpose (RequestHeader.purpose); bounded so a
# requester cannot put arbitrary text into a responder's audit log.
PURPOSE_RE = re.compile(r"^[a-z][a-z0-9-]{1,47}$")

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
#
# Their content is package data, default_dictionary.toml beside this module; only
# the ISO 3166 code lists are computed (from pycountry), referenced there by name.

DEFAULT_DICTIONARY_FILE = "default_dictionary.toml"
# Code lists computed rather than copied: a default file may include them by name.
_COMPUTED_CODE_LISTS = ("iso3166-1-alpha3", "iso3166-2")


@functools.cache
def _default_source() -> Mapping[str, Any]:
    text = resources.files("rcf.trust").joinpath(DEFAULT_DICTIONARY_FILE).read_text("utf-8")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DictionaryError(f"{DEFAULT_DICTIONARY_FILE} is not valid TOML: {exc}.") from exc


def _literal_list(name: str) -> tuple[str, ...]:
    """A code list of the default file that holds codes only (no includes)."""
    return tuple(str(c) for c in _default_source()["code_lists"][name])


def state_alpha3(member_id: str) -> str | None:
    """The ISO 3166-1 alpha-3 code of a member id given as alpha-2 or alpha-3, or None for
    a member that is not a state (the RSO, UNHCR, IOM)."""
    country = None
    if len(member_id) == 2:
        country = pycountry.countries.get(alpha_2=member_id.upper())
    elif len(member_id) == 3:
        country = pycountry.countries.get(alpha_3=member_id.upper())
    return None if country is None else str(country.alpha_3)


def _computed_codes(name: str) -> tuple[str, ...]:
    if name == "iso3166-1-alpha3":
        return tuple(sorted(c.alpha_3 for c in pycountry.countries))
    return tuple(sorted(s.code for s in pycountry.subdivisions))


def _expand_codes(spec: Any, lists: Mapping[str, Any], seen: tuple[str, ...] = ()) -> list[str]:
    """The codes a `codes` value of the default file stands for (see its header)."""
    if isinstance(spec, str):
        spec = [{"include": spec}]
    if not isinstance(spec, list):
        raise DictionaryError(f"A code list must be a list or a list name, not {spec!r}.")
    codes: list[str] = []
    for item in spec:
        if isinstance(item, str):
            codes.append(item)
            continue
        if not isinstance(item, dict) or set(item) - {"include", "sorted"}:
            raise DictionaryError(
                f"A code list item must be a code or {{include = ...}}: {item!r}."
            )
        name = str(item.get("include", ""))
        if name in seen:
            raise DictionaryError(f"Code list {name!r} includes itself.")
        if name in _COMPUTED_CODE_LISTS:
            included = list(_computed_codes(name))
        elif name in lists:
            included = _expand_codes(lists[name], lists, (*seen, name))
        else:
            raise DictionaryError(f"Code list {name!r} is neither defined nor computed.")
        codes.extend(sorted(included) if item.get("sorted", False) else included)
    return codes


def default_code_list(name: str) -> tuple[str, ...]:
    """A named code list of the default dictionary file, its includes expanded."""
    lists = _default_source()["code_lists"]
    return tuple(_expand_codes([{"include": name}], lists))


# Named lists other modules use; they come from the same file as the dictionary.
DEFAULT_VERSION = str(_default_source()["version"])
DEFAULT_PURPOSES: Mapping[str, str] = MappingProxyType(
    {str(k): str(v) for k, v in _default_source()["purposes"].items()}
)
PERSON_CATEGORIES = _literal_list("person_category")
ICAO_SPECIAL_NATIONALITIES = _literal_list("icao_special_nationalities")
# In the file's curated order (grouped by country); the dictionary publishes them sorted.
BORDER_CROSSING_POINTS = _literal_list("border_crossing_points")
AGE_BANDS = _literal_list("age_band")
SEXES = _literal_list("sex")
DOCUMENT_TYPES = _literal_list("document_type")


def nationality_codes() -> tuple[str, ...]:
    """Every ISO 3166-1 alpha-3 code (from pycountry) plus ICAO's stateless/refugee codes."""
    return default_code_list("nationality")


def location_codes() -> tuple[str, ...]:
    """ISO 3166-2 subdivisions (provinces, from pycountry) and the border crossing points."""
    return default_code_list("location")


@functools.cache
def default_dictionary() -> DataDictionary:
    """The first version of the dictionary, which a new hub publishes.

    Built from the package's default_dictionary.toml through the same JSON form (and
    validation) as a dictionary an admin edits, so both readers agree on every field."""
    source = _default_source()
    lists = source["code_lists"]
    try:
        datasets = [
            {
                **{k: v for k, v in ds.items() if k != "dimensions"},
                "dimensions": [
                    {**d, "codes": _expand_codes(d["codes"], lists)} if "codes" in d else d
                    for d in ds["dimensions"]
                ],
            }
            for ds in source["datasets"]
        ]
    except (KeyError, TypeError, AttributeError) as exc:
        raise DictionaryError(f"{DEFAULT_DICTIONARY_FILE} is malformed: {exc}.") from exc
    document = {
        "version": source["version"],
        "datasets": datasets,
        "purposes": [{"name": n, "description": d} for n, d in DEFAULT_PURPOSES.items()],
    }
    return DataDictionary.from_json(json.dumps(document))
