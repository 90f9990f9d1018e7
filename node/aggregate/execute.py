"""Running a validated aggregate query on the node's store: parameterised SQL, typed cells.

The SQL text holds only identifiers taken from the data dictionary's ``Dataset`` and
``Dimension`` objects (which admit ``[a-z][a-z0-9_]*`` names only, re-checked here);
every value from the request is a bound parameter. One ``SELECT … GROUP BY`` gives
every cell's record count and measure sum, and the population (records the filters
select) is their total, so cells and population come from one consistent read.

The table is a full grid: every combination of the levels of its dimensions has a
cell, zero where no record falls. Two kinds of grid:

* ``observed`` (exact answers): each dimension spans the values that occur in the
  selected records. A value absent from the grid is a zero the requester can infer
  anyway, so nothing more is revealed.
* ``domain`` (noised answers): each dimension spans its whole domain — the
  dictionary's codes, or the values a set filter names, or every month or day of a
  range filter. Differential privacy needs this: a grid that grows with the data
  would reveal, through which cells exist, what the noise hides. A date, month or
  int dimension is grouped only under a bounded range filter.

Records whose group-by value is empty (a field added to the dictionary after they
were imported) count in the population but in no cell.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from rcf.node.aggregate.query import QueryError, SqlCondition, ValidatedQuery, Value, derived_from
from rcf.trust.dictionary import DataDictionary, Dataset, Dimension

MAX_CELLS = 20_000  # cells of one table's grid (interior); more is refused
OBSERVED = "observed"
DOMAIN = "domain"
TOO_MANY_CELLS = "too_many_cells"
UNBOUNDED_DIMENSION = "unbounded_dimension"

RECORD_KEY = "_record_key"  # node.data.store.RECORD_KEY_COLUMN (the store imports us)
_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

Key = tuple[Value, ...]


@dataclass(frozen=True)
class CellTable:
    """A query's exact result: the grid of cells and the population it was drawn from.

    ``values[key]`` is the cell's count of records, or its measure sum; ``records[key]``
    its count of records (equal to the value for a count); ``key_sums[key]`` the sum of
    its records' record keys (the cell-key method; ``population_key_sum`` the same over
    every selected record with a value in every group-by dimension, the grand total's
    records). ``sensitivity`` is the most
    one record can change one cell: 1 for counts, the clamp for clamped sums, None for
    an unclamped sum (which cannot be noised).
    """

    dataset: str
    measure: str | None
    dimensions: tuple[str, ...]
    levels: tuple[tuple[Value, ...], ...]
    values: Mapping[Key, int]
    records: Mapping[Key, int]
    population: int
    sensitivity: int | None
    grid: str = OBSERVED
    key_sums: Mapping[Key, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "records", MappingProxyType(dict(self.records)))
        object.__setattr__(self, "key_sums", MappingProxyType(dict(self.key_sums)))

    def keys(self) -> list[Key]:
        """Every cell of the grid, in level order (first dimension slowest)."""
        return [tuple(k) for k in itertools.product(*self.levels)]


def _ident(name: str) -> str:
    # The dictionary already admits only these; checked again because this is SQL text.
    if name != RECORD_KEY and not _IDENT.match(name):
        raise QueryError(f"{name!r} is not a valid identifier.")
    return name


def column(dataset: Dataset, dim: Dimension) -> str:
    """The SQL expression of a query dimension: its column, or the month of the date field."""
    source = derived_from(dataset, dim)
    if source is None:
        return _ident(dim.name)
    if source.kind == "month":
        return _ident(source.name)
    return f"substr({_ident(source.name)}, 1, 7)"


def _where(dataset: Dataset, conditions: Sequence[SqlCondition]) -> tuple[str, list[Value]]:
    parts: list[str] = []
    params: list[Value] = []
    for c in conditions:
        col = column(dataset, c.dimension)
        source = derived_from(dataset, c.dimension)
        if c.op == "between" and source is not None and source.kind == "date":
            # A month range on a date field, as a date range: the date index serves it.
            if c.low is not None:
                parts.append(f"{_ident(source.name)} >= ?")
                params.append(f"{c.low}-01")
            if c.high is not None:
                parts.append(f"{_ident(source.name)} <= ?")
                params.append(f"{c.high}-31")
            continue
        if c.op == "in":
            parts.append(f"{col} IN ({', '.join('?' for _ in c.values)})")
            params.extend(c.values)
        else:
            if c.low is not None:
                parts.append(f"{col} >= ?")
                params.append(c.low)
            if c.high is not None:
                parts.append(f"{col} <= ?")
                params.append(c.high)
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


def build_sql(vq: ValidatedQuery, *, sum_clamp: int | None = None) -> tuple[str, list[Value]]:
    """The SELECT (text, parameters) that computes every non-empty cell of vq."""
    table = _ident(vq.dataset.name)
    groups = [column(vq.dataset, d) for d in vq.group_by]
    params: list[Value] = []
    if vq.measure is None:
        total = "COUNT(*)"
    elif sum_clamp is None:
        total = f"COALESCE(SUM({_ident(vq.measure)}), 0)"
    else:
        total = f"COALESCE(SUM(MIN({_ident(vq.measure)}, ?)), 0)"
        params.append(sum_clamp)
    where, where_params = _where(vq.dataset, vq.conditions)
    params.extend(where_params)
    # The record keys' sum, for the cell-key method (NULL-safe for a store mid-migration).
    select = ", ".join([*groups, "COUNT(*)", total, f"COALESCE(SUM({RECORD_KEY}), 0)"])
    group = f" GROUP BY {', '.join(groups)}" if groups else ""
    # S608: identifiers come from the dictionary (checked above); values are parameters.
    return f"SELECT {select} FROM {table}{where}{group}", params  # noqa: S608


def _months(low: str, high: str) -> list[str]:
    y, m = int(low[:4]), int(low[5:7])
    out = []
    while f"{y:04d}-{m:02d}" <= high:
        out.append(f"{y:04d}-{m:02d}")
        if len(out) > MAX_CELLS:
            break
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _days(low: str, high: str) -> list[str]:
    start, end = dt.date.fromisoformat(low), dt.date.fromisoformat(high)
    n = min((end - start).days + 1, MAX_CELLS + 1)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(n)]


def domain_levels(vq: ValidatedQuery) -> tuple[tuple[Value, ...], ...]:
    """Each group-by dimension's whole domain under the query's filters (for noised grids)."""
    by_dim = {c.dimension.name: c for c in vq.conditions}
    levels: list[tuple[Value, ...]] = []
    for dim in vq.group_by:
        cond = by_dim.get(dim.name)
        if cond is not None and cond.op == "in":
            levels.append(tuple(cond.values))
            continue
        if dim.kind == "code":
            levels.append(tuple(dim.codes))
            continue
        if cond is None or cond.low is None or cond.high is None:
            raise QueryError(
                f"A noised answer grouped by {dim.name} needs a range filter with both bounds "
                f"on {dim.name}.",
                reason=UNBOUNDED_DIMENSION,
            )
        low, high = cond.low, cond.high
        if dim.kind == "int":
            assert isinstance(low, int) and isinstance(high, int)
            if high - low >= MAX_CELLS:
                raise _too_many()
            levels.append(tuple(range(low, high + 1)))
        elif dim.kind == "month":
            levels.append(tuple(_months(str(low), str(high))))
        else:
            levels.append(tuple(_days(str(low), str(high))))
    return tuple(levels)


def _too_many() -> QueryError:
    return QueryError(
        f"The table would have more than {MAX_CELLS} cells; group by fewer dimensions or "
        "filter more narrowly.",
        reason=TOO_MANY_CELLS,
    )


def _grid_size(levels: Sequence[Sequence[Value]]) -> int:
    size = 1
    for lv in levels:
        size *= len(lv)
    return size


def execute(
    conn: sqlite3.Connection,
    vq: ValidatedQuery,
    *,
    grid: str = OBSERVED,
    sum_clamp: int | None = None,
) -> CellTable:
    """Run vq on the store's connection (``DataStore.conn``) and return its full grid.

    ``grid`` is OBSERVED for exact answers and DOMAIN for noised ones (see the module
    docstring). ``sum_clamp`` caps each record's contribution to a measure sum, which
    bounds the sensitivity that noise needs. Raises QueryError(too_many_cells,
    unbounded_dimension).
    """
    if grid not in (OBSERVED, DOMAIN):
        raise ValueError(f"unknown grid {grid!r}")
    if sum_clamp is not None and sum_clamp < 1:
        raise ValueError("sum_clamp must be at least 1")
    levels_fixed = domain_levels(vq) if grid == DOMAIN else None
    if levels_fixed is not None and _grid_size(levels_fixed) > MAX_CELLS:
        raise _too_many()
    sql, params = build_sql(vq, sum_clamp=sum_clamp)
    n = len(vq.group_by)
    values: dict[Key, int] = {}
    records: dict[Key, int] = {}
    key_sums: dict[Key, int] = {}
    population = 0
    for row in conn.execute(sql, params):
        key: Key = tuple(row[:n])
        count, total = int(row[n]), int(row[n + 1])
        population += count
        if any(v is None for v in key):
            continue
        values[key] = total
        records[key] = count
        key_sums[key] = int(row[n + 2])
        if len(values) > MAX_CELLS:
            raise _too_many()
    if levels_fixed is None:
        levels = tuple(tuple(sorted({k[i] for k in values}, key=_sort_key)) for i in range(n))
        if _grid_size(levels) > MAX_CELLS:
            raise _too_many()
    else:
        levels = levels_fixed
        inside = set(itertools.product(*levels))
        # A record outside the domain grid (a code added since, say) must not vanish silently.
        if any(k not in inside for k in values):
            raise QueryError(
                "The store holds values outside the dictionary's domain for this table.",
                reason="store_inconsistent",
                status="INTERNAL",
            )
    dense_values = {}
    dense_records = {}
    for key in itertools.product(*levels):
        dense_values[key] = values.get(key, 0)
        dense_records[key] = records.get(key, 0)
    if vq.measure is None:
        sensitivity: int | None = 1
    else:
        sensitivity = sum_clamp
    return CellTable(
        dataset=vq.dataset.name,
        measure=vq.measure,
        dimensions=vq.dimensions,
        levels=levels,
        values=dense_values,
        records=dense_records,
        population=population,
        sensitivity=sensitivity,
        grid=grid,
        key_sums={key: key_sums.get(key, 0) for key in dense_values},
    )


def _sort_key(v: Value) -> tuple[int, str]:
    return (v, "") if isinstance(v, int) else (0, v)


# -- indexes ----------------------------------------------------------------------------

# Dimensions most aggregate queries break down by (nationality first: it is what
# states compare; sex is the usual second). Each gets one covering index (nationality,
# sex, date field, measures), so a GROUP BY nationality [, sex] over a period reads only
# the index, in group order: no table lookups, no temporary sort B-tree. Measured on
# 300 000 synthetic trafficking records (after ANALYZE): by nationality over 3 years
# 15 ms against 99 ms with the date index alone; by nationality and sex 11 ms against
# 95 ms for a table scan. The planner needs statistics to choose it: run
# ``analyze_aggregates`` after imports.
COMMON_GROUP_BY = ("nationality", "holder_nationality")
COMPANIONS = ("sex",)


def aggregate_index_columns(dataset: Dataset) -> list[tuple[str, ...]]:
    """Extra index column lists for an aggregate dataset's common group-bys."""
    if dataset.kind != "aggregate":
        return []
    out: list[tuple[str, ...]] = []
    for name in COMMON_GROUP_BY:
        dim: Dimension | None = dataset.dimension(name)
        if dim is None:
            continue
        cols = [name, *(s for s in COMPANIONS if dataset.dimension(s) is not None)]
        if dataset.date_field:
            cols.append(dataset.date_field)
        cols.extend(dataset.measures)
        cols.append(RECORD_KEY)
        out.append(tuple(cols))
    return out


def index_statements(dictionary: DataDictionary) -> list[str]:
    """CREATE INDEX IF NOT EXISTS statements for every aggregate dataset's common group-bys."""
    stmts = []
    for ds in dictionary.datasets.values():
        for cols in aggregate_index_columns(ds):
            name = f"ix_agg_{_ident(ds.name)}_{'_'.join(_ident(c) for c in cols)}"
            stmts.append(
                f"CREATE INDEX IF NOT EXISTS {name}"
                f" ON {_ident(ds.name)} ({', '.join(_ident(c) for c in cols)})"
            )
    return stmts


def ensure_aggregate_indexes(conn: sqlite3.Connection, dictionary: DataDictionary) -> None:
    """Create the aggregate indexes (idempotent; the store calls it in sync_schema)."""
    for stmt in index_statements(dictionary):
        conn.execute(stmt)


def analyze_aggregates(conn: sqlite3.Connection, dictionary: DataDictionary) -> None:
    """Refresh the planner's statistics for the aggregate tables (after an import)."""
    for ds in dictionary.datasets.values():
        if ds.kind == "aggregate":
            conn.execute(f"ANALYZE {_ident(ds.name)}")
