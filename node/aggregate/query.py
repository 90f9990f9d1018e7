"""The aggregate query as typed values, and its validation against the data dictionary.

A query names a dataset of the dictionary, a measure (the number of records, or the
sum of one of the dataset's measures), filters and group-by dimensions, and the
dictionary version the requester built it with. ``validate_query`` checks every name
against the dictionary and every value against its dimension (code lists, real dates
and months), and returns a ``ValidatedQuery`` that holds the dictionary's own
``Dataset`` and ``Dimension`` objects: the executor takes only that type, so every
identifier that reaches SQL text comes from the dictionary, never from the request.

Everything a request can make large is bounded by the constants below; a request
over a bound is refused, not truncated.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from rcf.node.policy.model import AGGREGATE, QueryDescription
from rcf.trust.dictionary import DataDictionary, Dataset, Dimension, parse_version
from rcf.trust.errors import RcfError

# -- bounds ----------------------------------------------------------------------------

MAX_FILTERS = 8  # filters in one query (each on a different dimension)
MAX_SET_SIZE = 300  # values in one set filter: every nationality code fits
MAX_GROUP_BY = 3  # group-by dimensions; tables of more than 3 are rarely safe to release
MAX_NAME_LENGTH = 63  # dataset, dimension and measure names (the dictionary's own limit)
MAX_VALUE_LENGTH = 32  # one filter value (codes, YYYY-MM-DD, YYYY-MM, integers)
MAX_VERSION_LENGTH = 16  # the dictionary version string, MAJOR.MINOR
MAX_INT = 2**53  # int dimensions hold 0 … 2^53, as the importer admits

# Dimension kinds an aggregate query may filter or group on.
QUERYABLE_KINDS = ("code", "date", "month", "int")
# Kinds a range filter makes sense on (codes have no order that means anything).
ORDERED_KINDS = ("date", "month", "int")

# -- refusal codes (RcfError.reason) -------------------------------------------------

UNKNOWN_DATASET = "unknown_dataset"
UNKNOWN_DIMENSION = "unknown_dimension"
UNKNOWN_MEASURE = "unknown_measure"
BAD_FILTER = "bad_filter"
TOO_MANY_FILTERS = "too_many_filters"
TOO_MANY_DIMENSIONS = "too_many_dimensions"
DICTIONARY_MISMATCH = "dictionary_mismatch"
BAD_QUERY = "bad_query"

_MONTH = re.compile(r"^[0-9]{4}-[0-9]{2}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_INT = re.compile(r"^[0-9]{1,16}$")

Value = str | int


class QueryError(RcfError):
    """An aggregate query is malformed or does not fit the data dictionary."""

    default_reason = BAD_QUERY
    default_status = "INVALID_ARGUMENT"


# -- the query --------------------------------------------------------------------------


@dataclass(frozen=True)
class Equals:
    """dimension = value."""

    dimension: str
    value: str


@dataclass(frozen=True)
class OneOf:
    """dimension IN (values)."""

    dimension: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Between:
    """low <= dimension <= high (both inclusive; either may be open, not both).

    Dates as YYYY-MM-DD, months as YYYY-MM, integers in decimal.
    """

    dimension: str
    low: str | None = None
    high: str | None = None


Filter = Equals | OneOf | Between


@dataclass(frozen=True)
class AggregateQuery:
    """What a requester asks. ``measure`` None: the number of records; a name: the sum of
    that measure of the dataset."""

    dataset: str
    dictionary_version: str
    measure: str | None = None
    filters: tuple[Filter, ...] = ()
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class SqlCondition:
    """One validated filter: the dictionary's dimension and typed values.

    ``op`` is ``in`` (values), ``between`` (low/high, either may be None).
    Equality is ``in`` with one value.
    """

    dimension: Dimension
    op: str
    values: tuple[Value, ...] = ()
    low: Value | None = None
    high: Value | None = None


@dataclass(frozen=True)
class ValidatedQuery:
    """A query whose every name resolved in the dictionary: the only input ``execute`` takes."""

    query: AggregateQuery
    dataset: Dataset
    group_by: tuple[Dimension, ...]
    conditions: tuple[SqlCondition, ...]
    measure: str | None  # the dataset's measure name, or None for the record count

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.group_by)


# -- validation ---------------------------------------------------------------------


def _name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise QueryError(f"A {kind} name must be 1 to {MAX_NAME_LENGTH} characters.")


def check_dictionary_version(requested: str, held: str) -> None:
    """Refuse a query built with a dictionary this node cannot answer for.

    Same major version, and a minor no newer than the node's: a newer minor may use
    codes the node does not know yet; another major may mean other fields.
    """
    if not requested or len(requested) > MAX_VERSION_LENGTH:
        raise QueryError(
            "The query must name the data dictionary version it was built with.",
            reason=DICTIONARY_MISMATCH,
        )
    try:
        want = parse_version(requested)
    except RcfError:
        raise QueryError(
            "The query's dictionary version is not of the form MAJOR.MINOR.",
            reason=DICTIONARY_MISMATCH,
        ) from None
    have = parse_version(held)
    if want[0] != have[0] or want[1] > have[1]:
        raise QueryError(
            f"The query was built with data dictionary {requested}; this node answers with {held}.",
            reason=DICTIONARY_MISMATCH,
            status="FAILED_PRECONDITION",
        )


MONTH = "month"


def query_dimension(dataset: Dataset, name: str) -> Dimension | None:
    """The dimension ``name`` of dataset as a query may use it, or None.

    Besides the dataset's own dimensions, every dataset has ``month``: the month of its
    date field (``YYYY-MM``), so "by month" means the same in every dataset. Where the
    dataset has a ``month`` dimension of its own, that is it.
    """
    dim = dataset.dimension(name)
    if dim is not None:
        return dim
    if name == MONTH and dataset.date_field:
        field = dataset.dimension(dataset.date_field)
        if field is not None and field.kind in ("date", "month"):
            return Dimension(MONTH, "month", description=f"month of {dataset.date_field}")
    return None


def derived_from(dataset: Dataset, dim: Dimension) -> Dimension | None:
    """The date field a derived ``month`` is computed from (None for a stored dimension)."""
    if dataset.dimension(dim.name) is not None:
        return None
    return dataset.dimension(dataset.date_field)


def _dimension(dataset: Dataset, name: str, what: str) -> Dimension:
    _name("dimension", name)
    dim = query_dimension(dataset, name)
    if dim is None:
        raise QueryError(
            f"Dataset {dataset.name} has no dimension {name!r} to {what}.",
            reason=UNKNOWN_DIMENSION,
        )
    if dim.kind not in QUERYABLE_KINDS:
        raise QueryError(
            f"Dimension {name} of {dataset.name} cannot be used to {what}.",
            reason=UNKNOWN_DIMENSION,
        )
    return dim


def parse_value(dim: Dimension, raw: str) -> Value:
    """The stored form of one filter value of dim; QueryError (never echoing it) if invalid."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_VALUE_LENGTH:
        raise QueryError(
            f"A filter value of {dim.name} must be 1 to {MAX_VALUE_LENGTH} characters.",
            reason=BAD_FILTER,
        )
    if dim.kind == "code":
        if raw not in dim.codes:
            raise QueryError(
                f"A filter value of {dim.name} is not a code of the dictionary.",
                reason=BAD_FILTER,
            )
        return raw
    if dim.kind == "int":
        if not _INT.match(raw) or int(raw) > MAX_INT:
            raise QueryError(
                f"A filter value of {dim.name} is not a whole number from 0 to 2^53.",
                reason=BAD_FILTER,
            )
        return int(raw)
    try:
        if dim.kind == "month":
            if not _MONTH.match(raw):
                raise ValueError(raw)
            dt.date.fromisoformat(raw + "-01")
        else:
            if not _DATE.match(raw):
                raise ValueError(raw)
            dt.date.fromisoformat(raw)
    except ValueError:
        form = "YYYY-MM" if dim.kind == "month" else "YYYY-MM-DD"
        raise QueryError(
            f"A filter value of {dim.name} is not a real {dim.kind} of the form {form}.",
            reason=BAD_FILTER,
        ) from None
    return raw


def _order(value: Value) -> tuple[int, str]:
    # Values of one dimension are all ints or all ISO text; text order is time order.
    return (value, "") if isinstance(value, int) else (0, value)


def _condition(dataset: Dataset, f: Filter) -> SqlCondition:
    dim = _dimension(dataset, f.dimension, "filter on")
    if isinstance(f, Equals):
        return SqlCondition(dim, "in", (parse_value(dim, f.value),))
    if isinstance(f, OneOf):
        if not f.values or len(f.values) > MAX_SET_SIZE:
            raise QueryError(
                f"A set filter on {dim.name} must hold 1 to {MAX_SET_SIZE} values.",
                reason=BAD_FILTER,
            )
        values = tuple(parse_value(dim, v) for v in f.values)
        if len(set(values)) != len(values):
            raise QueryError(f"A set filter on {dim.name} repeats a value.", reason=BAD_FILTER)
        return SqlCondition(dim, "in", tuple(sorted(values, key=str)))
    if isinstance(f, Between):
        if dim.kind not in ORDERED_KINDS:
            raise QueryError(
                f"Dimension {dim.name} holds codes; filter it with values, not a range.",
                reason=BAD_FILTER,
            )
        if f.low is None and f.high is None:
            raise QueryError(f"A range filter on {dim.name} needs a bound.", reason=BAD_FILTER)
        low = parse_value(dim, f.low) if f.low is not None else None
        high = parse_value(dim, f.high) if f.high is not None else None
        if low is not None and high is not None and _order(low) > _order(high):
            raise QueryError(f"A range filter on {dim.name} is empty.", reason=BAD_FILTER)
        return SqlCondition(dim, "between", low=low, high=high)
    raise QueryError("A filter has an unknown form.", reason=BAD_FILTER)


def validate_query(
    query: AggregateQuery, dictionary: DataDictionary, *, max_group_by: int = MAX_GROUP_BY
) -> ValidatedQuery:
    """Resolve every name of query in dictionary and check every value; raise QueryError.

    ``max_group_by`` lets a policy allow fewer group-by dimensions than MAX_GROUP_BY.
    """
    check_dictionary_version(query.dictionary_version, dictionary.version)
    _name("dataset", query.dataset)
    dataset = dictionary.dataset(query.dataset)
    if dataset is None or dataset.kind != "aggregate":
        raise QueryError(
            f"The data dictionary has no aggregate dataset {query.dataset!r}.",
            reason=UNKNOWN_DATASET,
            status="NOT_FOUND",
        )
    measure = query.measure
    if measure is not None:
        _name("measure", measure)
        if measure not in dataset.measures:
            raise QueryError(
                f"Dataset {dataset.name} has no measure {measure!r}; it has "
                f"{', '.join(dataset.measures) or 'none'} (or leave it out to count records).",
                reason=UNKNOWN_MEASURE,
            )
    limit = min(max_group_by, MAX_GROUP_BY)
    if len(query.group_by) > limit:
        raise QueryError(
            f"A query may group by at most {limit} dimensions.", reason=TOO_MANY_DIMENSIONS
        )
    group_by = tuple(_dimension(dataset, name, "group by") for name in query.group_by)
    stored = [_stored_name(dataset, d) for d in group_by]
    if len(set(stored)) != len(stored):
        raise QueryError("A query groups by the same dimension twice.")
    if len(query.filters) > MAX_FILTERS:
        raise QueryError(
            f"A query may have at most {MAX_FILTERS} filters.", reason=TOO_MANY_FILTERS
        )
    conditions = tuple(_condition(dataset, f) for f in query.filters)
    filtered = [_stored_name(dataset, c.dimension) for c in conditions]
    if len(set(filtered)) != len(filtered):
        raise QueryError("A query filters the same dimension twice; use one set or range.")
    return ValidatedQuery(
        query=query,
        dataset=dataset,
        group_by=group_by,
        conditions=conditions,
        measure=measure,
    )


def _stored_name(dataset: Dataset, dim: Dimension) -> str:
    # A derived month over a month-kind date field is that field itself.
    source = derived_from(dataset, dim)
    if source is not None and source.kind == "month":
        return source.name
    return dim.name


def describe(
    query: AggregateQuery, *, purpose: str = "", epsilon: float | None = None
) -> QueryDescription:
    """What the policy engine decides on (the QuerySpec ``describe`` for Aggregate).

    The record count is not a measure to the policy, so it is described as ``""``.
    """
    return QueryDescription(
        query_type=AGGREGATE,
        purpose=purpose,
        dataset=query.dataset,
        group_by=tuple(query.group_by),
        filters=tuple(f.dimension for f in query.filters),
        measure=query.measure or "",
        epsilon=epsilon,
    )
