"""The cell-key method, the default release: the published table, record keys in the
store, and over real nodes (mutual TLS on 127.0.0.1) the attacks it must defeat."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rcf.devnet.synthetic import generate_rows
from rcf.node.aggregate import cellkey
from rcf.node.aggregate.disclosure import PERTURB_CELL_KEY, PERTURBED, ReleaseRules, release
from rcf.node.aggregate.execute import CellTable
from rcf.node.data.store import RECORD_KEY_COLUMN, DataStore
from rcf.node.ops.config import NodeLayout
from rcf.protos.v1 import aggregate_pb2
from rcf.trust.dictionary import default_dictionary
from tests.aggregate_fixtures import (
    AU_DATA,
    DATASET,
    MOVEMENTS_RULE,
    TH_DATA,
    apply,
    ask,
    audit_reasons,
    load,
    merged,
    movement_rows,
    outcomes,
    policy,
    query,
    sql_count,
)
from tests.network import Network
from tests.test_aggregate_disclosure import covers, recoverable, tables

YEAR_2025 = ("event_date BETWEEN ? AND ?", ("2025-01-01", "2025-12-31"))


@pytest.fixture
def region(net: Network, tmp_path: Path) -> Network:
    """AU and TH hold movement data and share it under the default (cell-key) release."""
    load(net.layout("AU"), movement_rows("AU", AU_DATA), tmp_path)
    load(net.layout("TH"), movement_rows("TH", TH_DATA), tmp_path)
    for member, node in net.nodes.items():
        apply(node, policy(member, MOVEMENTS_RULE))
    return net


def nationality(*codes: str) -> aggregate_pb2.AggregateFilter:
    return aggregate_pb2.AggregateFilter(
        dimension="nationality", one_of=aggregate_pb2.ValueSet(values=list(codes))
    )


# -- the published table ---------------------------------------------------------------------


def test_the_published_table_is_zero_mean_never_negative_and_leaves_zeros_alone() -> None:
    for n in (1, 2, 3, 50):
        ps = [cellkey.perturbation(n, b << 24) for b in range(256)]
        assert sum(ps) == 0  # unbiased over uniform cell keys
        assert all(n + p >= 0 for p in ps)
        assert sum(p * p for p in ps) / 256 == cellkey.variance(n)
    assert {cellkey.perturbation(0, b << 24) for b in range(256)} == {0}
    # The bucket boundaries as PROTOCOL-aggregate.md publishes them.
    assert [cellkey.perturbation(7, b << 24) for b in (0, 15, 16, 63, 64, 191, 192, 239, 240)] == [
        -2, -2, -1, -1, 0, 0, 1, 1, 2,
    ]  # fmt: skip
    assert [cellkey.perturbation(1, b << 24) for b in (63, 64, 191, 192)] == [-1, 0, 0, 1]
    assert cellkey.cell_key((1 << 32) + 5) == 5


def test_the_same_records_get_the_same_answer_and_totals_are_their_own_figures() -> None:
    table = CellTable(
        DATASET, None, ("sex",), (("F", "M", "X"),),
        {("F",): 40, ("M",): 58, ("X",): 0}, {("F",): 40, ("M",): 58, ("X",): 0}, 98, 1,
        key_sums={("F",): 123_456_789_012, ("M",): 9_876_543_210, ("X",): 0},
    )  # fmt: skip
    rules = ReleaseRules(min_cell_size=5, perturbation=PERTURB_CELL_KEY)
    first = release(table, rules, rng=random.SystemRandom())
    again = release(table, rules, rng=random.SystemRandom())
    assert first == again
    cells = first.as_dict()
    assert cells[("X",)].value == 0 and cells[("X",)].variance == 0  # no phantom records
    total = cells[(None,)]
    key = cellkey.cell_key(123_456_789_012 + 9_876_543_210)
    assert total.value == 98 + cellkey.perturbation(98, key)
    assert total.status == PERTURBED and total.variance == cellkey.variance(98)
    exact: dict[tuple[str | int | None, ...], int] = {
        ("F",): 40,
        ("M",): 58,
        ("X",): 0,
        (None,): 98,
    }
    for c in first.cells:
        assert c.value is not None and abs(c.value - exact[c.key]) <= 2


# -- record keys in the store -------------------------------------------------------------------


def test_record_keys_are_fixed_and_a_store_from_before_gets_them(tmp_path: Path) -> None:
    layout = NodeLayout(tmp_path / "node")
    layout.root.mkdir()
    db = layout.data_db

    rows = movement_rows("AU", AU_DATA)
    load(layout, rows, tmp_path)

    def keys() -> dict[str, int]:
        with sqlite3.connect(db) as conn:
            sql = f"SELECT record_id, {RECORD_KEY_COLUMN} FROM {DATASET}"  # noqa: S608
            return {str(r): int(k) for r, k in conn.execute(sql)}

    first = keys()
    assert len(first) == len(rows) and all(0 <= k < 1 << 32 for k in first.values())
    assert len(set(first.values())) > len(rows) - 3  # random, not a counter or a constant
    load(layout, rows, tmp_path)  # importing the same records again keeps their keys
    assert keys() == first
    # A store written before record keys existed: the column goes, then the store opens.
    with sqlite3.connect(db) as conn:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '%_record_key%'"
        ).fetchall():
            conn.execute(f"DROP INDEX {name}")
        conn.execute(f"ALTER TABLE {DATASET} DROP COLUMN {RECORD_KEY_COLUMN}")
    DataStore(db, dictionary=default_dictionary()).close()
    migrated = keys()
    assert migrated.keys() == first.keys()
    assert all(k is not None and 0 <= k < 1 << 32 for k in migrated.values())


# -- over real nodes: the attacks ---------------------------------------------------------------


def test_repeats_and_other_requesters_get_identical_answers(region: Network) -> None:
    """Attack 3 (averaging repeats): every repeat, from anyone, is the same answer."""
    q = query(by=("nationality",))
    answers = [ask(region.nodes["TH"], q, members=("AU",)) for _ in range(5)]
    answers.append(ask(region.nodes["NZ"], q, members=("AU",)))
    tables = [[(tuple(c.key), c.value, c.lower_bound) for c in a.cells] for a in answers]
    assert all(t == tables[0] for t in tables)
    au = next(m for m in answers[0].members if m.member_id == "AU")
    assert au.outcome == "answered" and au.disclosure.perturbation == "cell_key"
    total = merged(answers[0])[("",)]
    truth = sql_count(region.layout("AU"), *YEAR_2025)
    assert total.approximate and total.margin95 == 2
    assert abs(total.value - truth) <= 2  # the published table never moves a count more


def test_a_one_record_difference_from_another_requester_is_refused(region: Network) -> None:
    """Attack 2 (across requesters): NZ's population is TH's plus three records."""
    th = ask(region.nodes["TH"], query(filters=(nationality("MMR"),)), members=("AU",))
    assert outcomes(th)["AU"] == ("answered", "")
    nz = ask(region.nodes["NZ"], query(filters=(nationality("MMR", "IRN"),)), members=("AU",))
    assert outcomes(nz)["AU"] == ("refused", "not_permitted")
    assert "differencing_suspected" in audit_reasons(region.nodes["AU"])


def test_regional_figures_have_no_phantom_codes_and_hold_the_truth(region: Network) -> None:
    result = ask(region.nodes["NZ"], query(by=("nationality",)), regional=True)
    assert outcomes(result)["NZ"] == ("refused", "not_permitted")  # no records of its own
    recorded = {n for (n, month, _) in [*AU_DATA, *TH_DATA] if month.startswith("2025")}
    cells = merged(result)
    assert {k[0] for k in cells if k[0]} <= recorded
    truth = sql_count(region.layout("AU"), *YEAR_2025) + sql_count(region.layout("TH"), *YEAR_2025)
    total = cells[("",)]
    # ± at 95% of two independent perturbations of variance 0.875 each; the table's own
    # bound (±2 a member) is what a test can hold without chance.
    assert not total.lower_bound and total.margin95 == 3
    assert abs(total.value - truth) <= 4
    assert abs(cells[("MMR",)].value - 70) <= 4


# -- released regional figures against the truth of generated files (issue 25.5) -------------


@pytest.mark.parametrize("measure", ["", "persons"])
def test_regional_figures_from_generated_data_hold_the_truth(
    net: Network, tmp_path: Path, measure: str
) -> None:
    generated = {m: list(generate_rows(m, DATASET, seed=11, rows=1500)) for m in ("AU", "TH")}
    for member, rows in generated.items():
        load(net.layout(member), rows, tmp_path)
    for member, node in net.nodes.items():
        apply(node, policy(member, MOVEMENTS_RULE))
    q = query(by=("nationality",), month_from="2000-01", month_to="2099-12")
    q.measure = measure
    result = ask(net.nodes["NZ"], q, regional=True)
    assert {m for m, (o, _) in outcomes(result).items() if o == "answered"} == {"AU", "TH"}
    # The truth, from the generated rows themselves.
    truth: dict[str, int] = {}
    step: dict[str, int] = {}  # the largest per-record mean a member's perturbation uses
    total_bound = 0  # each member's total moves by at most 2 x its own per-record mean
    for rows in generated.values():
        values_all = [int(r["persons"]) if measure else 1 for r in rows]
        total_bound += 2 * max(1, round(sum(values_all) / len(values_all)))
        part: dict[str, list[int]] = {}
        for row in rows:
            part.setdefault(str(row["nationality"]), []).append(
                int(row["persons"]) if measure else 1
            )
        for code, values in part.items():
            truth[code] = truth.get(code, 0) + sum(values)
            mean = max(1, round(sum(values) / len(values)))
            step[code] = max(step.get(code, 1), mean)
    cells = merged(result)
    shown = {k[0] for k in cells if k[0]}
    assert shown <= truth.keys()  # no code that nobody recorded
    for code in shown:
        c = cells[(code,)]
        if c.lower_bound:
            assert c.value <= truth[code] + 2 * step[code]
            continue
        assert c.approximate and c.margin95 > 0
        # Each member's part moves by at most 2 x its step (the published table).
        assert abs(c.value - truth[code]) <= 2 * 2 * step[code], code
    total = cells[("",)]
    grand = sum(truth.values())
    assert not total.lower_bound and total.margin95 > 0
    # Totals are the members' own perturbed totals: within the table's bound of the truth,
    # and not inflated by the hundreds of codes nobody recorded.
    assert abs(total.value - grand) <= total_bound


# -- property: the cell-key release over random tables ------------------------------------------


@settings(max_examples=200, deadline=None)
@given(tables(), st.integers(0, 2**32))
def test_cell_key_releases_are_repeatable_unrecoverable_and_near_the_truth(
    table_k: tuple[CellTable, int], seed: int
) -> None:
    table, k = table_k
    keyed = random.Random(seed)
    table = replace(table, key_sums={key: keyed.randrange(1 << 40) for key in table.values})
    rules = ReleaseRules(min_cell_size=k, perturbation=PERTURB_CELL_KEY)
    first = release(table, rules, rng=random.Random(seed))
    # Another requester, or the same one again, gets exactly this table: pooling two
    # answers adds no equation that one answer does not already hold.
    assert release(table, rules, rng=random.Random(seed + 1)) == first
    # No suppressed entry is fixed by the released ones (solved exactly, as rationals,
    # even treating the perturbed values as if they were exact).
    assert recoverable(first) == set()
    for c in first.cells:
        truth = sum(v for key, v in table.values.items() if covers(c.key, key))
        if truth == 0:
            assert c.value in (0, None)  # an empty cell or total stays 0: no phantoms
        if c.value is not None:
            assert c.status == PERTURBED and abs(c.value - truth) <= 2
            assert not 0 < c.value < k
