"""Disclosure control: the release step that turns an exact table into one fit to send.

``release(table, rules, rng=…, history=…)`` applies, in this order:

1. **Minimum population.** Filters that select fewer than ``min_population`` records
   are refused (``population_too_small``).
2. **Differencing.** A population that differs from one of the requester's earlier
   populations of the dataset by 1 … k-1 records (k = ``min_cell_size``) would let two
   answers be subtracted to describe those few records: refused
   (``differencing_suspected``) or, if the rules say ``flag``, released with a flag.
3. **Noise** (optional). Every interior cell of the grid gets integer noise drawn by
   OpenDP — discrete Laplace (``make_laplace`` on an integer domain) or discrete
   Gaussian — at the scale that makes the table ε-DP (or (ε, δ)-DP) for one record
   moving one cell by the table's sensitivity. Never floating-point noise. Totals are
   sums of the noised cells and negative values become 0: both post-processing, so
   they cost no budget. Everything after this step sees only noised values, so
   suppression and rounding are post-processing too.
4. **Primary suppression.** A cell or total whose value is 1 … k-1 is suppressed; for
   an exact measure sum, also one drawn from 1 … k-1 records. Zeros are released.
5. **Secondary (complementary) suppression**, so that no suppressed value can be
   recomputed exactly from what is released:

   * 0 dimensions: a single cell, nothing to protect against.
   * 1 dimension (cells and the grand total): never exactly one unknown among them.
   * 2 dimensions (cells, row totals, column totals, grand total): with the totals
     written into an extra row and column with their signs flipped, every row and
     column of the augmented table sums to zero, so the released values fix a
     suppressed one exactly iff its entry is a bridge of the bipartite graph whose
     edges are the suppressed entries (rows and columns as nodes). Each bridge is
     broken by suppressing the cheapest path that closes a cycle through it
     (Dijkstra; cost: small non-zero cells first, zeros only if needed, totals last).
   * 3 or more dimensions: only the cells and the grand total are released, never the
     lower-order totals. Every suppressed cell is put in a fully suppressed box (two
     levels in each dimension that has two or more), so it stays undetermined even
     against every lower-order total the requester can ask for separately, as long
     as each dimension has two levels. Then the 1-dimension rule for the grand total.
6. **Rounding** (optional, ``round_to`` = base b): every released value, totals
   independently, is rounded to a multiple of b, up with probability r/b where r is
   its remainder — unbiased. A value is never rounded into 1 … k-1: it then rounds up.
7. The policy's **caveat** goes on the table.

Each released entry says what happened to it: ``exact``, ``suppressed_primary``,
``suppressed_secondary``, ``rounded``, or ``noised`` (with mechanism and scale, and
the rounding base if also rounded).

Protection is per table. Across tables, the population rule in step 2 and the
boxes for 3+ dimensions are the guards; a requester who combines several tables of
one or two dimensions with different filters is limited by the budget and rate,
not by this module.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import opendp.prelude as dp

from rcf.node.aggregate import cellkey
from rcf.node.aggregate.execute import CellTable, Key
from rcf.node.aggregate.query import Value
from rcf.node.policy.model import Decision
from rcf.trust.errors import RcfError, RequestRejected

dp.enable_features("contrib")

# -- statuses and options ---------------------------------------------------------------

EXACT = "exact"
SUPPRESSED_PRIMARY = "suppressed_primary"
SUPPRESSED_SECONDARY = "suppressed_secondary"
ROUNDED = "rounded"
NOISED = "noised"
PERTURBED = "perturbed"  # the cell-key method (node.aggregate.cellkey)
STATUSES = (EXACT, SUPPRESSED_PRIMARY, SUPPRESSED_SECONDARY, ROUNDED, NOISED, PERTURBED)

PERTURB_NONE = "none"
PERTURB_CELL_KEY = cellkey.CELL_KEY
PERTURBATIONS = (PERTURB_CELL_KEY, PERTURB_NONE)

NOISE_NONE = "none"
DISCRETE_LAPLACE = "discrete_laplace"
DISCRETE_GAUSSIAN = "discrete_gaussian"
NOISE_MECHANISMS = (NOISE_NONE, DISCRETE_LAPLACE, DISCRETE_GAUSSIAN)
# The policy file's names for the mechanisms.
POLICY_NOISE = {
    "none": NOISE_NONE,
    "geometric": DISCRETE_LAPLACE,
    "discrete_laplace": DISCRETE_LAPLACE,
    "gaussian": DISCRETE_GAUSSIAN,
    "discrete_gaussian": DISCRETE_GAUSSIAN,
}

DIFFERENCING_REFUSE = "refuse"
DIFFERENCING_FLAG = "flag"
DIFFERENCING_OFF = "off"
DIFFERENCING_MODES = (DIFFERENCING_REFUSE, DIFFERENCING_FLAG, DIFFERENCING_OFF)

POPULATION_TOO_SMALL = "population_too_small"
DIFFERENCING_SUSPECTED = "differencing_suspected"
NOISE_UNSUPPORTED = "noise_unsupported"

DEFAULT_DELTA = 1e-9  # δ of the discrete Gaussian's (ε, δ) guarantee
DEFAULT_SUM_CLAMP = 100  # a noised sum counts at most this much of one record's measure
DEFAULT_CAVEAT = (
    "Official statistics shared under the Regional Cooperation Framework: for the stated "
    "purpose only; do not publish or pass on without the responding state's consent."
)
MAX_CAVEAT = 1000

# Costs of suppressing a released entry as a complement: small non-zero cells first,
# then zero cells (a zero complement bounds the protected cell on one side), totals last.
_ZERO_COST = 10**12
_TOTAL_COST = 10**15

TotalKey = tuple[Value | None, ...]  # None in a position: summed over that dimension


class ReleaseRefused(RequestRejected):
    """The release step refuses to answer (population too small, differencing …)."""

    default_reason = POPULATION_TOO_SMALL
    default_status = "FAILED_PRECONDITION"


@dataclass(frozen=True)
class ReleaseRules:
    """What the responder's policy asks of a release.

    ``epsilon`` is required with noise; ``delta`` applies to the discrete Gaussian only.
    ``min_population`` 0 means no minimum. ``sum_clamp`` bounds a record's share of a
    noised measure sum (the executor must be run with it).
    """

    min_cell_size: int = 1
    round_to: int | None = None
    noise: str = NOISE_NONE
    epsilon: float | None = None
    delta: float = DEFAULT_DELTA
    caveat: str = DEFAULT_CAVEAT
    min_population: int = 0
    differencing: str = DIFFERENCING_REFUSE
    sum_clamp: int = DEFAULT_SUM_CLAMP
    perturbation: str = PERTURB_NONE  # the policy's default is the cell-key method

    def __post_init__(self) -> None:
        if self.perturbation not in PERTURBATIONS:
            raise ValueError(f"unknown perturbation {self.perturbation!r}")
        if self.min_cell_size < 1:
            raise ValueError("min_cell_size must be at least 1")
        if self.round_to is not None and self.round_to < 1:
            raise ValueError("round_to must be at least 1")
        if self.noise not in NOISE_MECHANISMS:
            raise ValueError(f"unknown noise mechanism {self.noise!r}")
        if self.noise != NOISE_NONE and (
            self.epsilon is None or not math.isfinite(self.epsilon) or self.epsilon <= 0
        ):
            raise ValueError("noise needs a finite epsilon above 0")
        if not 0 < self.delta < 1:
            raise ValueError("delta must lie strictly between 0 and 1")
        if self.min_population < 0:
            raise ValueError("min_population must not be negative")
        if self.differencing not in DIFFERENCING_MODES:
            raise ValueError(f"unknown differencing mode {self.differencing!r}")
        if self.sum_clamp < 1:
            raise ValueError("sum_clamp must be at least 1")
        if len(self.caveat) > MAX_CAVEAT:
            raise ValueError(f"the caveat is longer than {MAX_CAVEAT} characters")

    @property
    def noised(self) -> bool:
        return self.noise != NOISE_NONE

    @property
    def perturbed(self) -> bool:
        """Cell-key perturbation applies (noise, when asked for, replaces it)."""
        return self.perturbation == PERTURB_CELL_KEY and not self.noised


def rules_from_decision(
    decision: Decision,
    *,
    caveat: str | None = None,
    min_population: int | None = None,
    differencing: str | None = None,
    sum_clamp: int | None = None,
    delta: float | None = None,
) -> ReleaseRules:
    """The release rules of a granted Aggregate decision.

    Everything comes from the decision's ``Constraints`` (the rule that granted it);
    a keyword given here overrides that one setting (tests, and the benchmark).
    """
    c = decision.constraints
    if not decision.allowed or c is None or c.min_cell_size is None:
        raise RcfError(
            "The release step needs a granted Aggregate decision with a minimum cell size.",
            reason="release_misconfigured",
        )
    noise = POLICY_NOISE.get(c.noise)
    if noise is None:
        raise RcfError(
            f"The policy names noise {c.noise!r}, which the release step does not know.",
            reason="release_misconfigured",
        )
    return ReleaseRules(
        min_cell_size=c.min_cell_size,
        round_to=c.round_to,
        noise=noise,
        epsilon=c.epsilon if noise != NOISE_NONE else None,
        delta=c.delta if delta is None else delta,
        caveat=(c.caveat or DEFAULT_CAVEAT) if caveat is None else caveat,
        min_population=c.min_population if min_population is None else min_population,
        differencing=c.differencing if differencing is None else differencing,
        sum_clamp=c.sum_clamp if sum_clamp is None else sum_clamp,
        perturbation=c.perturbation,
    )


# -- the released table ---------------------------------------------------------------


@dataclass(frozen=True)
class ReleasedCell:
    """One released entry. ``key`` has one value per dimension; None where the entry is a
    total over that dimension. ``value`` is None when suppressed."""

    key: TotalKey
    value: int | None
    status: str
    mechanism: str = ""  # the noise mechanism, when noised
    scale: float | None = None  # the noise scale per interior cell, when noised
    rounded_to: int | None = None  # the rounding base, when rounded
    # The variance of the released value around the true one (perturbation or noise,
    # and rounding): what a merger needs to state a sum's uncertainty. 0 when exact.
    variance: float = 0.0

    @property
    def is_total(self) -> bool:
        return any(v is None for v in self.key)

    @property
    def suppressed(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class ReleasedTable:
    """What the responder sends: cells first (grid order), then totals.

    ``flags`` holds ``differencing_suspected`` when the rules flag rather than refuse.
    """

    dataset: str
    measure: str | None
    dimensions: tuple[str, ...]
    cells: tuple[ReleasedCell, ...]
    caveat: str
    min_cell_size: int
    noise: str = NOISE_NONE
    epsilon: float | None = None
    round_to: int | None = None
    flags: tuple[str, ...] = ()
    perturbation: str = PERTURB_NONE

    def cell(self, key: TotalKey) -> ReleasedCell | None:
        return next((c for c in self.cells if c.key == key), None)

    def as_dict(self) -> dict[TotalKey, ReleasedCell]:
        return {c.key: c for c in self.cells}


# -- noise --------------------------------------------------------------------------------


def _measurement(mechanism: str, scale: float) -> dp.Measurement:
    domain = dp.vector_domain(dp.atom_domain(T="i64"))
    if mechanism == DISCRETE_LAPLACE:
        return dp.m.make_laplace(domain, dp.l1_distance(T="i64"), scale=scale)
    return dp.m.make_gaussian(domain, dp.l2_distance(T="i64"), scale=scale)


@functools.cache
def noise_scale(mechanism: str, epsilon: float, sensitivity: int, delta: float) -> float:
    """The scale at which OpenDP's mechanism is ε-DP (Laplace) or (ε, δ)-DP (Gaussian) for
    a change of ``sensitivity`` in one cell."""
    if mechanism == DISCRETE_LAPLACE:
        scale = sensitivity / epsilon
        # OpenDP's own accounting must agree, or the scale grows until it does.
        while float(_measurement(mechanism, scale).map(sensitivity)) > epsilon:  # type: ignore[no-untyped-call]
            scale = math.nextafter(scale, math.inf)
        return scale
    if mechanism == DISCRETE_GAUSSIAN:

        def approx(scale: float) -> dp.Measurement:
            zcdp = dp.m.make_gaussian(
                dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64"), scale=scale
            )
            return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(zcdp), delta=delta)

        return float(dp.binary_search_param(approx, d_in=sensitivity, d_out=(epsilon, delta)))
    raise ValueError(f"no scale for mechanism {mechanism!r}")


def add_noise(values: Sequence[int], mechanism: str, scale: float) -> list[int]:
    """values, each with independent integer noise drawn by OpenDP at scale."""
    if not values:
        return []
    noised = _measurement(mechanism, scale)(list(values))
    return [int(v) for v in noised]


# -- rounding -------------------------------------------------------------------------------


def round_unbiased(value: int, base: int, rng: random.Random) -> int:
    """value rounded to a multiple of base: up with probability remainder/base (E = value)."""
    q, r = divmod(value, base)
    return (q + (1 if rng.randrange(base) < r else 0)) * base


def _round_released(value: int, base: int, k: int, rng: random.Random) -> int:
    out = round_unbiased(value, base, rng)
    if 0 < out < k:
        # Never publish a value in 1 … k-1: round up instead (value >= k here).
        out = -(-value // base) * base
    return out


# -- the release ---------------------------------------------------------------------------


def differencing_conflict(population: int, history: Iterable[int], k: int) -> bool:
    """Whether population differs from an earlier one by 1 … k-1 records."""
    return any(0 < abs(population - earlier) < k for earlier in history)


def _totals_keys(table: CellTable) -> list[TotalKey]:
    d = len(table.dimensions)
    if d == 0:
        return []
    if d == 2:
        rows: list[TotalKey] = [(a, None) for a in table.levels[0]]
        cols: list[TotalKey] = [(None, b) for b in table.levels[1]]
        return [*rows, *cols, (None, None)]
    return [(None,) * d]  # 1 dimension: the grand total; 3+: only the grand total


def _sum_totals(
    keys: Sequence[TotalKey], values: Mapping[TotalKey, int], totals: Sequence[TotalKey]
) -> dict[TotalKey, int]:
    """Each total's sum over the cells it covers (one pass over the cells)."""
    out = dict.fromkeys(totals, 0)
    for key in keys:
        v = values[key]
        for mask in _masks(len(key)):
            covering = tuple(None if hide else x for x, hide in zip(key, mask, strict=True))
            if covering in out:
                out[covering] += v
    return out


@functools.cache
def _masks(d: int) -> tuple[tuple[bool, ...], ...]:
    # The patterns of totals a release may hold: every dimension summed, or (two
    # dimensions) one of them.
    full = (True,) * d
    if d == 2:
        return (full, (True, False), (False, True))
    return (full,)


def release(
    table: CellTable,
    rules: ReleaseRules,
    *,
    rng: random.Random,
    history: Sequence[int] = (),
) -> ReleasedTable:
    """Apply rules to table (see the module docstring); raise ReleaseRefused to refuse.

    ``rng`` drives random rounding: pass ``random.SystemRandom()`` in production (a
    predictable rounding could be undone), a seeded ``random.Random`` in tests. Noise
    always comes from OpenDP's own cryptographic generator. ``history`` holds the
    requester's earlier populations of this dataset (from the ledger).
    """
    k = rules.min_cell_size
    if table.population < rules.min_population:
        raise ReleaseRefused(
            "Refused: the filters select too few records to answer.",
            reason=POPULATION_TOO_SMALL,
        )
    flags: tuple[str, ...] = ()
    if rules.differencing != DIFFERENCING_OFF and differencing_conflict(
        table.population, history, k
    ):
        if rules.differencing == DIFFERENCING_REFUSE:
            raise ReleaseRefused(
                "Refused: the answer could be subtracted from an earlier one to single out "
                "a few records.",
                reason=DIFFERENCING_SUSPECTED,
            )
        flags = (DIFFERENCING_SUSPECTED,)

    keys = table.keys()
    values: dict[TotalKey, int] = {key: table.values[key] for key in keys}
    records: dict[TotalKey, int] | None = {key: table.records[key] for key in keys}
    scale: float | None = None
    if rules.noised:
        if table.sensitivity is None:
            raise ReleaseRefused(
                "Refused: this measure cannot be noised without a bound per record.",
                reason=NOISE_UNSUPPORTED,
                status="INTERNAL",
            )
        assert rules.epsilon is not None
        scale = noise_scale(rules.noise, rules.epsilon, table.sensitivity, rules.delta)
        noised = add_noise([values[key] for key in keys], rules.noise, scale)
        # Not clamped at 0: a clamp biases every sum upwards (a merged total of many
        # noised zeros would grow with the grid). Readers clamp for display only.
        values = dict(zip(keys, noised, strict=True))
        records = None  # only noised values may decide anything from here on
    elif table.measure is None:
        records = None  # a count's records are its value

    totals = _totals_keys(table)
    variances: dict[TotalKey, float] = {}
    if rules.perturbed:
        values, records, variances = _perturb(table, keys, totals)
    else:
        values.update(_sum_totals(keys, values, totals))
        if records is not None:
            records.update(_sum_totals(keys, records, totals))
        if scale is not None:
            one = noise_variance(rules.noise, scale)
            variances = {key: one for key in keys}
            # A total of noised cells carries the noise of every cell it covers.
            covered = _sum_totals(keys, dict.fromkeys(keys, 1), totals)
            variances.update({key: one * n for key, n in covered.items()})

    def sensitive(key: TotalKey) -> bool:
        if 0 < values[key] < k:
            return True
        return records is not None and 0 < records[key] < k

    entries = [*keys, *totals]
    primary = {key for key in entries if sensitive(key)}
    suppressed = set(primary)
    if primary and k > 1:
        cost = _cost_function(values, set(totals))
        d = len(table.dimensions)
        if d == 1:
            _protect_linear(entries, suppressed, cost)
        elif d == 2:
            _protect_two_way(table.levels[0], table.levels[1], suppressed, cost)
        elif d >= 3:
            _protect_boxes(table.levels, primary, suppressed, cost)
            _protect_linear(entries, suppressed, cost)

    base = rules.round_to if rules.round_to is not None and rules.round_to > 1 else None
    # Unbiased random rounding to base b adds r(b-r) ≤ b²/4 of variance (r: remainder).
    rounding_variance = base * base / 4 if base is not None else 0.0
    mechanism = rules.noise if rules.noised else ""
    cells = []
    for key in entries:
        if key in suppressed:
            status = SUPPRESSED_PRIMARY if key in primary else SUPPRESSED_SECONDARY
            cells.append(ReleasedCell(key=key, value=None, status=status))
            continue
        value = values[key]
        if base is not None:
            value = _round_released(value, base, k, rng)
        if rules.noised:
            status = NOISED
        elif rules.perturbed:
            status = PERTURBED
        else:
            status = ROUNDED if base is not None else EXACT
        cells.append(
            ReleasedCell(
                key=key,
                value=value,
                status=status,
                mechanism=mechanism,
                scale=scale,
                rounded_to=base,
                variance=variances.get(key, 0.0) + rounding_variance,
            )
        )
    return ReleasedTable(
        dataset=table.dataset,
        measure=table.measure,
        dimensions=table.dimensions,
        cells=tuple(cells),
        caveat=rules.caveat,
        min_cell_size=k,
        noise=rules.noise,
        epsilon=rules.epsilon if rules.noised else None,
        round_to=base,
        flags=flags,
        perturbation=PERTURB_CELL_KEY if rules.perturbed else PERTURB_NONE,
    )


def _perturb(
    table: CellTable, keys: Sequence[Key], totals: Sequence[TotalKey]
) -> tuple[dict[TotalKey, int], dict[TotalKey, int] | None, dict[TotalKey, float]]:
    """Cell-key perturbation of every cell and, each as its own figure, every total.

    Returns the released values, the released record counts (for a measure sum: what
    the small-cell rule reads; None for a count, whose value is its record count) and
    each entry's variance. A total's records and key sum are those of the cells it
    covers, so the same population gives the same total in any table.
    """
    exact: dict[TotalKey, int] = {key: table.values[key] for key in keys}
    counts: dict[TotalKey, int] = {key: table.records[key] for key in keys}
    key_sums: dict[TotalKey, int] = {key: table.key_sums.get(key, 0) for key in keys}
    exact.update(_sum_totals(keys, exact, totals))
    counts.update(_sum_totals(keys, counts, totals))
    key_sums.update(_sum_totals(keys, key_sums, totals))
    values: dict[TotalKey, int] = {}
    released_counts: dict[TotalKey, int] = {}
    variances: dict[TotalKey, float] = {}
    for key in [*keys, *totals]:
        ck = cellkey.cell_key(key_sums[key])
        n = counts[key]
        released_counts[key] = cellkey.perturb_count(n, ck)
        if table.measure is None:
            values[key] = released_counts[key]
            variances[key] = cellkey.variance(n)
        else:
            values[key], variances[key] = cellkey.perturb_sum(exact[key], n, ck)
    return values, (None if table.measure is None else released_counts), variances


def noise_variance(mechanism: str, scale: float) -> float:
    """The variance of one draw of OpenDP's integer noise at scale."""
    if mechanism == DISCRETE_LAPLACE:
        a = math.exp(-1.0 / scale)
        return 2 * a / (1 - a) ** 2
    return scale * scale  # the discrete Gaussian's variance is at most sigma²


# -- secondary suppression -----------------------------------------------------------------

Cost = dict[TotalKey, int]


def _cost_function(values: Mapping[TotalKey, int], totals: set[TotalKey]) -> Cost:
    out: Cost = {}
    for key, v in values.items():
        if key in totals:
            out[key] = _TOTAL_COST + v
        elif v == 0:
            out[key] = _ZERO_COST
        else:
            out[key] = v
    return out


def _cheapest(candidates: Iterable[TotalKey], cost: Cost) -> TotalKey | None:
    return min(candidates, key=lambda key: (cost[key], _order(key)), default=None)


def _order(key: TotalKey) -> tuple[tuple[int, int, str], ...]:
    # A total order over keys mixing None, ints and text, for deterministic tie-breaks.
    return tuple(
        (0, 0, "") if v is None else (1, v, "") if isinstance(v, int) else (2, 0, v) for v in key
    )


def _protect_linear(entries: Sequence[TotalKey], suppressed: set[TotalKey], cost: Cost) -> None:
    """One equation (grand total = sum of cells): never exactly one unknown in it."""
    if sum(1 for e in entries if e in suppressed) == 1:
        extra = _cheapest((e for e in entries if e not in suppressed), cost)
        if extra is not None:
            suppressed.add(extra)


def _protect_two_way(
    rows: Sequence[Value], cols: Sequence[Value], suppressed: set[TotalKey], cost: Cost
) -> None:
    """Break every bridge of the augmented table's suppressed graph (see module docstring)."""
    row_nodes: list[Value | None] = [*rows, None]
    col_nodes: list[Value | None] = [*cols, None]
    m, n = len(row_nodes), len(col_nodes)

    def entry(i: int, j: int) -> TotalKey:
        return (row_nodes[i], col_nodes[j])

    while True:
        edges = [(i, j) for i in range(m) for j in range(n) if entry(i, j) in suppressed]
        bridge = _first_bridge(m, n, edges)
        if bridge is None:
            return
        path = _cheapest_path(m, n, bridge, suppressed, cost, entry)
        if not path:
            # Cannot happen for a table of at least one row and column (the augmented
            # table is then at least 2x2); suppress everything rather than leak.
            suppressed.update(entry(i, j) for i in range(m) for j in range(n))
            return
        suppressed.update(path)


def _first_bridge(m: int, n: int, edges: list[tuple[int, int]]) -> tuple[int, int] | None:
    """A bridge of the bipartite graph (row nodes 0…m-1, column nodes m…m+n-1), or None."""
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(m + n)]
    for idx, (i, j) in enumerate(edges):
        adjacency[i].append((m + j, idx))
        adjacency[m + j].append((i, idx))
    disc = [-1] * (m + n)
    low = [0] * (m + n)
    timer = 0
    for root in range(m + n):
        if disc[root] != -1 or not adjacency[root]:
            continue
        disc[root] = low[root] = timer
        timer += 1
        # Iterative DFS: (node, edge index used to reach it, next neighbour position).
        stack: list[tuple[int, int, int]] = [(root, -1, 0)]
        while stack:
            node, via, pos = stack[-1]
            if pos < len(adjacency[node]):
                stack[-1] = (node, via, pos + 1)
                nxt, idx = adjacency[node][pos]
                if idx == via:
                    continue
                if disc[nxt] == -1:
                    disc[nxt] = low[nxt] = timer
                    timer += 1
                    stack.append((nxt, idx, 0))
                else:
                    low[node] = min(low[node], disc[nxt])
                continue
            stack.pop()
            if stack:
                parent = stack[-1][0]
                low[parent] = min(low[parent], low[node])
                if low[node] > disc[parent]:
                    return edges[via]
    return None


def _cheapest_path(
    m: int,
    n: int,
    bridge: tuple[int, int],
    suppressed: set[TotalKey],
    cost: Cost,
    entry: Callable[[int, int], TotalKey],
) -> list[TotalKey]:
    """The released entries on the cheapest path from the bridge's column to its row that
    does not use the bridge: suppressing them closes a cycle through it."""
    bi, bj = bridge
    start, goal = m + bj, bi
    dist = {start: 0}
    prev: dict[int, tuple[int, TotalKey]] = {}
    heap = [(0, start)]
    done: set[int] = set()
    while heap:
        d, node = heapq.heappop(heap)
        if node in done:
            continue
        done.add(node)
        if node == goal:
            break
        if node >= m:
            j = node - m
            neighbours = [(i, entry(i, j)) for i in range(m) if (i, j) != bridge]
        else:
            i = node
            neighbours = [(m + j, entry(i, j)) for j in range(n) if (i, j) != bridge]
        for nxt, key in neighbours:
            step = 0 if key in suppressed else cost[key]
            nd = d + step
            if nxt not in dist or nd < dist[nxt]:
                dist[nxt] = nd
                prev[nxt] = (node, key)
                heapq.heappush(heap, (nd, nxt))
    if goal not in prev:
        return []
    path = []
    node = goal
    while node != start:
        node, key = prev[node]
        if key not in suppressed:
            path.append(key)
    return path


def _moved(cell: TotalKey, i: int, v: Value) -> TotalKey:
    return (*cell[:i], v, *cell[i + 1 :])


def _protect_boxes(
    levels: Sequence[Sequence[Value]],
    primary: set[TotalKey],
    suppressed: set[TotalKey],
    cost: Cost,
) -> None:
    """Put every primary cell in a fully suppressed box of two levels per dimension."""
    varying = [i for i, lv in enumerate(levels) if len(lv) >= 2]
    for cell in sorted((c for c in primary if not any(v is None for v in c)), key=_order):
        choices: list[tuple[Value | None, ...]] = [(v,) for v in cell]
        for i in varying:
            alternatives = [v for v in levels[i] if v != cell[i]]
            best = min(
                alternatives,
                key=lambda v, i=i, cell=cell: (  # type: ignore[misc]
                    0 if _moved(cell, i, v) in suppressed else cost[_moved(cell, i, v)],
                    _order((v,)),
                ),
            )
            choices[i] = (cell[i], best)
        suppressed.update(tuple(k) for k in itertools.product(*choices))
