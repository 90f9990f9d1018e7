"""Disclosure control: properties over random tables, rounding, noise, population rules."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import random
import statistics
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import opendp.prelude as dp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcf.node.aggregate.disclosure import (
    DIFFERENCING_FLAG,
    DIFFERENCING_OFF,
    DIFFERENCING_SUSPECTED,
    DISCRETE_GAUSSIAN,
    DISCRETE_LAPLACE,
    EXACT,
    NOISED,
    ROUNDED,
    SUPPRESSED_PRIMARY,
    SUPPRESSED_SECONDARY,
    ReleasedTable,
    ReleaseRefused,
    ReleaseRules,
    TotalKey,
    noise_scale,
    release,
    round_unbiased,
    rules_from_decision,
)
from rcf.node.aggregate.execute import CellTable, Key
from rcf.node.policy.engine import decide
from rcf.node.policy.model import AGGREGATE, Budget, Policy, QueryDescription, Rule
from rcf.trust.directory import Member, MemberStatus
from rcf.trust.errors import RcfError

# -- building tables ------------------------------------------------------------------------


def make_table(
    levels: Sequence[Sequence[str]],
    values: Sequence[int],
    *,
    records: Sequence[int] | None = None,
    measure: str | None = None,
    sensitivity: int | None = 1,
) -> CellTable:
    keys = list(itertools.product(*levels))
    assert len(keys) == len(values)
    recs = records if records is not None else values
    return CellTable(
        dataset="trafficking_victims",
        measure=measure,
        dimensions=tuple(f"d{i}" for i in range(len(levels))),
        levels=tuple(tuple(lv) for lv in levels),
        values=dict(zip(keys, values, strict=True)),
        records=dict(zip(keys, recs, strict=True)),
        population=sum(recs),
        sensitivity=sensitivity,
    )


@st.composite
def tables(draw: st.DrawFn, *, min_dims: int = 0, max_dims: int = 3) -> tuple[CellTable, int]:
    d = draw(st.integers(min_dims, max_dims))
    sizes = [draw(st.integers(1, 4 if d >= 3 else 6)) for _ in range(d)]
    levels = [[f"v{j}" for j in range(n)] for n in sizes]
    k = draw(st.integers(2, 10))
    cell = st.one_of(st.just(0), st.integers(1, k - 1), st.integers(k, 80))
    values = draw(st.lists(cell, min_size=math.prod(sizes), max_size=math.prod(sizes)))
    return make_table(levels, values), k


# -- an independent check of exact recoverability (rational linear algebra) -----------------


def covers(total: TotalKey, key: TotalKey) -> bool:
    return all(t is None or t == v for t, v in zip(total, key, strict=True))


def determined(unknown: list[TotalKey], equations: list[dict[TotalKey, int]]) -> set[TotalKey]:
    """Unknowns fixed exactly by equations (each: coefficients over known and unknown
    entries, = 0): u is fixed iff its unit vector lies in the row space of the
    equations restricted to the unknowns."""
    index = {u: i for i, u in enumerate(unknown)}
    rows = []
    for eq in equations:
        row = [Fraction(0)] * len(unknown)
        for key, coef in eq.items():
            if key in index:
                row[index[key]] += coef
        if any(row):
            rows.append(row)
    basis: list[tuple[int, list[Fraction]]] = []  # (pivot column, row), reduced
    for raw in rows:
        left = reduce(raw, basis)
        pivot = next((i for i, x in enumerate(left) if x != 0), None)
        if pivot is None:
            continue
        unit = [x / left[pivot] for x in left]
        basis = [(p, [a - b[p] * c for a, c in zip(b, unit, strict=True)]) for p, b in basis]
        basis.append((pivot, unit))
    out = set()
    for u, i in index.items():
        unit = [Fraction(0)] * len(unknown)
        unit[i] = Fraction(1)
        if not any(reduce(unit, basis)):
            out.add(u)
    return out


def reduce(row: list[Fraction], basis: list[tuple[int, list[Fraction]]]) -> list[Fraction]:
    row = list(row)
    for pivot, b in basis:
        if row[pivot] != 0:
            factor = row[pivot]
            row = [a - factor * c for a, c in zip(row, b, strict=True)]
    return row


def table_equations(released: ReleasedTable) -> list[dict[TotalKey, int]]:
    interior = [c.key for c in released.cells if not c.is_total]
    eqs = []
    for t in (c.key for c in released.cells if c.is_total):
        eq = {t: -1}
        eq.update({key: 1 for key in interior if covers(t, key)})
        eqs.append(eq)
    return eqs


def recoverable(released: ReleasedTable) -> set[TotalKey]:
    unknown = [c.key for c in released.cells if c.value is None]
    return determined(unknown, table_equations(released))


def rng(seed: int = 7) -> random.Random:
    return random.Random(seed)


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(tables(), st.sampled_from([None, 2, 3, 5, 10]), st.integers(0, 2**32))
def test_no_released_value_lies_below_the_threshold(
    table_k: tuple[CellTable, int], base: int | None, seed: int
) -> None:
    table, k = table_k
    released = release(table, ReleaseRules(min_cell_size=k, round_to=base), rng=rng(seed))
    for c in released.cells:
        assert c.value is None or not 0 < c.value < k, c
        assert (c.value is None) == (c.status in (SUPPRESSED_PRIMARY, SUPPRESSED_SECONDARY))


@settings(max_examples=300, deadline=None)
@given(tables())
def test_no_suppressed_entry_can_be_recomputed_from_the_released_ones(
    table_k: tuple[CellTable, int],
) -> None:
    table, k = table_k
    released = release(table, ReleaseRules(min_cell_size=k), rng=rng())
    assert recoverable(released) == set()
    # What is released is the truth, and every sensitive entry is suppressed as primary.
    truth: dict[TotalKey, int] = {key: v for key, v in table.values.items()}
    for c in released.cells:
        if c.is_total:
            truth[c.key] = sum(v for key, v in table.values.items() if covers(c.key, key))
        if 0 < truth[c.key] < k:
            assert c.status == SUPPRESSED_PRIMARY
        elif c.value is not None:
            assert (c.value, c.status) == (truth[c.key], EXACT)


@settings(max_examples=150, deadline=None)
@given(tables(min_dims=3, max_dims=3))
def test_three_way_cells_stay_hidden_from_separately_asked_margins(
    table_k: tuple[CellTable, int],
) -> None:
    """3+ dimensions: assume the requester also knows every lower-order total that is not
    itself small (another query would release it): still no suppressed cell is fixed."""
    table, k = table_k
    if any(len(lv) < 2 for lv in table.levels):
        return  # the documented limit: a one-level dimension makes a cell its own margin
    released = release(table, ReleaseRules(min_cell_size=k), rng=rng())
    assert all(c.key == (None, None, None) for c in released.cells if c.is_total)
    d = len(table.dimensions)
    interior: list[Key] = list(table.values)
    unknown: list[TotalKey] = [c.key for c in released.cells if c.value is None]
    equations = []
    for mask in itertools.product([False, True], repeat=d):
        if not any(mask):
            continue
        for key in interior:
            margin = tuple(None if hide else v for v, hide in zip(key, mask, strict=True))
            value = sum(x for other, x in table.values.items() if covers(margin, other))
            if 0 < value < k and margin not in unknown:
                unknown.append(margin)
            eq = {margin: -1}
            eq.update({o: 1 for o in interior if covers(margin, o)})
            if eq not in equations:
                equations.append(eq)
    fixed = determined(unknown, equations)
    assert not fixed & {c.key for c in released.cells if c.value is None}


def test_a_two_way_table_suppresses_a_cycle_not_just_the_small_cell() -> None:
    table = make_table([["a", "b", "c"], ["x", "y", "z"]], [3, 20, 15, 12, 30, 11, 40, 2, 50])
    released = release(table, ReleaseRules(min_cell_size=5), rng=rng())
    cells = released.as_dict()
    assert cells[("a", "x")].status == SUPPRESSED_PRIMARY
    assert cells[("c", "y")].status == SUPPRESSED_PRIMARY
    secondary = [c for c in released.cells if c.status == SUPPRESSED_SECONDARY]
    assert len(secondary) >= 2
    # Every row and column that holds a suppressed cell holds at least two.
    for row in ("a", "b", "c"):
        n = sum(1 for c in released.cells if c.key[0] == row and c.key[1] and c.value is None)
        assert n != 1
    assert cells[(None, None)].value == 183  # the grand total is not small: released


def test_a_small_total_is_suppressed_and_protected_too() -> None:
    # Row a totals 4 (< k): its cells are small too; the column totals must not give it away.
    table = make_table([["a", "b"], ["x", "y"]], [1, 3, 20, 30])
    released = release(table, ReleaseRules(min_cell_size=5), rng=rng())
    assert released.as_dict()[("a", None)].status == SUPPRESSED_PRIMARY
    assert recoverable(released) == set()


def test_a_one_way_table_never_leaves_a_single_unknown() -> None:
    table = make_table([["a", "b", "c"]], [3, 0, 15])
    released = release(table, ReleaseRules(min_cell_size=5), rng=rng())
    cells = released.as_dict()
    assert cells[("a",)].status == SUPPRESSED_PRIMARY
    # The non-zero cell is the complement, not the zero.
    assert cells[("c",)].status == SUPPRESSED_SECONDARY
    assert cells[("b",)].value == 0
    assert cells[(None,)].value == 18


def test_zeros_are_released_and_k_of_one_suppresses_nothing() -> None:
    table = make_table([["a", "b"]], [0, 7])
    assert [c.value for c in release(table, ReleaseRules(5), rng=rng()).cells] == [0, 7, 7]
    small = make_table([["a", "b"]], [1, 2])
    released = release(small, ReleaseRules(1), rng=rng())
    assert [(c.value, c.status) for c in released.cells] == [(1, EXACT), (2, EXACT), (3, EXACT)]


def test_a_sum_from_few_records_is_suppressed_however_large() -> None:
    # One boat of 61 people: a large sum, but it describes a single record.
    table = make_table(
        [["MMR", "BGD", "AFG"]],
        [61, 40, 55],
        records=[1, 9, 12],
        measure="persons",
        sensitivity=None,
    )
    released = release(table, ReleaseRules(min_cell_size=5), rng=rng())
    cells = released.as_dict()
    assert cells[("MMR",)].status == SUPPRESSED_PRIMARY
    assert cells[("BGD",)].status == SUPPRESSED_SECONDARY
    assert cells[("AFG",)].value == 55
    assert recoverable(released) == set()


def test_no_dimensions_is_one_cell() -> None:
    released = release(make_table([], [3]), ReleaseRules(5), rng=rng())
    assert [(c.key, c.value, c.status) for c in released.cells] == [((), None, SUPPRESSED_PRIMARY)]
    released = release(make_table([], [30]), ReleaseRules(5), rng=rng())
    assert [(c.key, c.value, c.status) for c in released.cells] == [((), 30, EXACT)]


# -- rounding --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "base"), [(7, 3), (1001, 3), (12, 5), (4, 10)])
def test_random_rounding_is_unbiased(value: int, base: int) -> None:
    r = random.Random(20260101)
    n = 40_000
    draws = [round_unbiased(value, base, r) for _ in range(n)]
    low = value - value % base
    assert set(draws) <= {low, low + base}
    mean = statistics.fmean(draws)
    p = (value % base) / base
    se = base * math.sqrt(p * (1 - p) / n) if 0 < p < 1 else 0.0
    assert abs(mean - value) <= 4 * se + 1e-9


def test_released_tables_round_every_entry_independently_and_without_bias() -> None:
    table = make_table([["a", "b", "c"]], [1001, 2002, 505])
    rules = ReleaseRules(min_cell_size=10, round_to=3)
    r = random.Random(99)
    sums: dict[TotalKey, int] = {}
    independent = False
    n = 6000
    for _ in range(n):
        released = release(table, rules, rng=r)
        cells = released.as_dict()
        for key, c in cells.items():
            assert c.value is not None and c.value % 3 == 0
            assert (c.status, c.rounded_to) == (ROUNDED, 3)
            sums[key] = sums.get(key, 0) + c.value
        interior = sum(cells[(x,)].value or 0 for x in ("a", "b", "c"))
        independent = independent or cells[(None,)].value != interior
    assert independent  # the total is rounded on its own, not summed from rounded cells
    truth: dict[TotalKey, int] = {("a",): 1001, ("b",): 2002, ("c",): 505, (None,): 3508}
    for key, total in sums.items():
        # Each draw is off by at most the base; 4 standard errors of a two-point draw.
        assert abs(total / n - truth[key]) <= 4 * 1.5 / math.sqrt(n)


def test_rounding_never_lands_between_one_and_k() -> None:
    table = make_table([["a"]], [10])
    for seed in range(200):
        released = release(table, ReleaseRules(min_cell_size=10, round_to=3), rng=rng(seed))
        assert {c.value for c in released.cells} <= {12}


# -- noise ------------------------------------------------------------------------------------


def test_discrete_laplace_noise_is_integer_unbiased_and_labelled() -> None:
    n = 600
    table = make_table([[f"v{i}" for i in range(n)]], [1000] * n)
    rules = ReleaseRules(min_cell_size=10, noise=DISCRETE_LAPLACE, epsilon=0.5)
    released = release(table, rules, rng=rng())
    cells = [c for c in released.cells if not c.is_total]
    assert all(c.status == NOISED and c.mechanism == DISCRETE_LAPLACE for c in cells)
    assert all(c.scale == pytest.approx(2.0) for c in released.cells)
    values = [c.value for c in cells]
    assert all(isinstance(v, int) for v in values)
    errors = [v - 1000 for v in values if v is not None]
    # Discrete Laplace, scale 2: variance 2e^(-1/2)/(1-e^(-1/2))^2 ≈ 7.78.
    var = 2 * math.exp(-0.5) / (1 - math.exp(-0.5)) ** 2
    assert abs(statistics.fmean(errors)) < 6 * math.sqrt(var / n)
    assert 0.5 * var < statistics.pvariance(errors) < 2 * var
    assert any(e != 0 for e in errors)
    # The total is the sum of the noised cells: post-processing, no extra budget.
    total = released.as_dict()[(None,)]
    assert total.value == sum(v for v in values if v is not None)
    assert released.epsilon == 0.5


def test_noise_scales_satisfy_opendp_accounting() -> None:
    scale = noise_scale(DISCRETE_LAPLACE, 0.5, 1, 1e-9)
    assert scale == pytest.approx(2.0)
    assert scale == noise_scale(DISCRETE_LAPLACE, 0.5, 1, 1e-9)
    meas = dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64"), scale=scale
    )
    assert meas.map(1) <= 0.5  # type: ignore[no-untyped-call]
    assert noise_scale(DISCRETE_LAPLACE, 0.5, 100, 1e-9) == pytest.approx(200.0)
    g = noise_scale(DISCRETE_GAUSSIAN, 1.0, 1, 1e-9)
    approx = dp.c.make_fix_delta(
        dp.c.make_zCDP_to_approxDP(
            dp.m.make_gaussian(
                dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64"), scale=g
            )
        ),
        delta=1e-9,
    )
    eps, delta = approx.map(1)  # type: ignore[no-untyped-call]
    assert eps <= 1.0 + 1e-9 and delta <= 1e-9


def test_noised_small_values_are_suppressed_and_rounded_after_noise() -> None:
    table = make_table([["a", "b"], ["x", "y"]], [0, 1, 500, 800])
    rules = ReleaseRules(min_cell_size=10, noise=DISCRETE_GAUSSIAN, epsilon=1.0, round_to=5)
    for _ in range(20):
        released = release(table, rules, rng=random.SystemRandom())
        for c in released.cells:
            # Noised values are not clamped (a clamp biases sums), but none lies in 1..k-1.
            assert c.value is None or not 0 < c.value < 10
            if c.value is not None:
                assert (c.status, c.mechanism, c.rounded_to) == (NOISED, DISCRETE_GAUSSIAN, 5)
                assert c.value % 5 == 0
        assert recoverable(released) == set()


def test_an_unbounded_sum_is_not_noised() -> None:
    table = make_table([["a"]], [50], records=[20], measure="persons", sensitivity=None)
    rules = ReleaseRules(min_cell_size=5, noise=DISCRETE_LAPLACE, epsilon=1.0)
    with pytest.raises(ReleaseRefused) as refused:
        release(table, rules, rng=rng())
    assert refused.value.reason == "noise_unsupported"


# -- population rules ----------------------------------------------------------------------------


def test_filters_selecting_too_few_records_are_refused() -> None:
    table = make_table([["a", "b"]], [20, 9])
    with pytest.raises(ReleaseRefused) as refused:
        release(table, ReleaseRules(min_cell_size=5, min_population=30), rng=rng())
    assert refused.value.reason == "population_too_small"
    assert release(table, ReleaseRules(min_cell_size=5, min_population=29), rng=rng())


def test_a_differencing_pair_is_refused_or_flagged() -> None:
    first = make_table([["a", "b"]], [40, 60])  # population 100
    second = make_table([["a", "b"]], [40, 62])  # 102: two records apart
    rules = ReleaseRules(min_cell_size=5)
    release(first, rules, rng=rng(), history=())
    with pytest.raises(ReleaseRefused) as refused:
        release(second, rules, rng=rng(), history=(100,))
    assert refused.value.reason == DIFFERENCING_SUSPECTED
    flagged = release(
        second,
        ReleaseRules(min_cell_size=5, differencing=DIFFERENCING_FLAG),
        rng=rng(),
        history=(100,),
    )
    assert flagged.flags == (DIFFERENCING_SUSPECTED,)
    off = release(
        second,
        ReleaseRules(min_cell_size=5, differencing=DIFFERENCING_OFF),
        rng=rng(),
        history=(100,),
    )
    assert off.flags == ()
    # The same population again, or one k or more away, is no differencing pair.
    assert release(second, rules, rng=rng(), history=(102, 97, 107)).flags == ()


def test_every_release_carries_the_caveat() -> None:
    released = release(
        make_table([["a"]], [12]), ReleaseRules(5, caveat="TH: RESTRICTED"), rng=rng()
    )
    assert released.caveat == "TH: RESTRICTED"
    assert release(make_table([["a"]], [12]), ReleaseRules(5), rng=rng()).caveat


# -- the policy adapter ------------------------------------------------------------------------


def test_rules_come_from_the_policy_decision() -> None:
    rule = Rule(
        id="sg",
        requesters=("*",),
        query=AGGREGATE,
        datasets=("trafficking_victims",),
        group_by=("nationality",),
        min_cell_size=10,
        noise="geometric",
        epsilon=0.5,
        budget=Budget(epsilon=20.0, per="month"),
        round_to=5,
    )
    member = Member(member_id="ID", name="Indonesia", status=MemberStatus.ACTIVE)
    now = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp() * 1000)
    decision = decide(
        Policy(rules=(rule,)),
        member,
        QueryDescription(AGGREGATE, dataset="trafficking_victims", group_by=("nationality",)),
        now_ms=now,
    )
    rules = rules_from_decision(decision, min_population=50)
    assert (rules.min_cell_size, rules.noise, rules.epsilon, rules.round_to) == (
        10,
        DISCRETE_LAPLACE,
        0.5,
        5,
    )
    assert rules.min_population == 50
    refused = decide(
        Policy(rules=(rule,)),
        member,
        QueryDescription(AGGREGATE, dataset="trafficking_victims", group_by=("sex",)),
        now_ms=now,
    )
    with pytest.raises(RcfError):
        rules_from_decision(refused)


def test_rules_refuse_nonsense() -> None:
    bad: dict[str, Any]
    for bad in (
        {"min_cell_size": 0},
        {"round_to": 0},
        {"noise": "uniform"},
        {"noise": DISCRETE_LAPLACE},
        {"noise": DISCRETE_LAPLACE, "epsilon": math.inf},
        {"noise": DISCRETE_LAPLACE, "epsilon": 0.0},
        {"differencing": "maybe"},
        {"min_population": -1},
    ):
        with pytest.raises(ValueError):
            ReleaseRules(**bad)


def test_the_recoverability_check_itself_finds_a_lone_suppression() -> None:
    """The checker the properties rely on does find an unprotected cell."""
    table = make_table([["a", "b"], ["x", "y"]], [3, 20, 12, 30])
    released = release(table, ReleaseRules(min_cell_size=1), rng=rng())
    cells = [
        c if c.key != ("a", "x") else type(c)(key=c.key, value=None, status=SUPPRESSED_PRIMARY)
        for c in released.cells
    ]
    leaky = ReleasedTable(
        dataset=released.dataset,
        measure=None,
        dimensions=released.dimensions,
        cells=tuple(cells),
        caveat="",
        min_cell_size=5,
    )
    assert recoverable(leaky) == {("a", "x")}
    hidden = {("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")}
    boxed = ReleasedTable(
        dataset=released.dataset,
        measure=None,
        dimensions=released.dimensions,
        cells=tuple(
            type(c)(key=c.key, value=None, status=SUPPRESSED_SECONDARY) if c.key in hidden else c
            for c in released.cells
        ),
        caveat="",
        min_cell_size=5,
    )
    assert recoverable(boxed) == set()
