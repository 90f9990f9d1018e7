"""Aggregate queries: validation against the dictionary, and SQL on a real imported store."""

from __future__ import annotations

import csv
import datetime as dt
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from rcf.devnet.synthetic import generate_member_data
from rcf.node.aggregate.disclosure import ReleaseRules, release
from rcf.node.aggregate.execute import (
    DOMAIN,
    MAX_CELLS,
    analyze_aggregates,
    build_sql,
    ensure_aggregate_indexes,
    execute,
    index_statements,
)
from rcf.node.aggregate.query import (
    MAX_FILTERS,
    MAX_GROUP_BY,
    MAX_SET_SIZE,
    AggregateQuery,
    Between,
    Equals,
    OneOf,
    QueryError,
    describe,
    validate_query,
)
from rcf.node.data.importer import import_file
from rcf.node.data.store import DataStore
from rcf.node.policy.engine import decide
from rcf.node.policy.model import AGGREGATE, Policy, Rule
from rcf.trust.dictionary import default_dictionary
from rcf.trust.directory import Member, MemberStatus

DICT = default_dictionary()
V = DICT.version
TV = "trafficking_victims"
IM = "irregular_movements"
ROWS = 3000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataStore, dict[str, Path]]]:
    """A real store with TH's synthetic trafficking and movement data, imported as a node
    would (`rcf data generate` + `rcf data import`)."""
    root = tmp_path_factory.mktemp("aggregate")
    paths = generate_member_data("TH", root / "csv", seed=11, rows=ROWS, datasets=[TV, IM])
    store = DataStore(root / "data.db", dictionary=DICT)
    for name in (TV, IM):
        assert import_file(store, paths[name], dataset=name).committed
    ensure_aggregate_indexes(store.conn, DICT)
    analyze_aggregates(store.conn, DICT)
    yield store, paths
    store.close()


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def q(**kw: object) -> AggregateQuery:
    base: dict[str, object] = {"dataset": TV, "dictionary_version": V}
    base.update(kw)
    return AggregateQuery(**base)  # type: ignore[arg-type]


def refused(query: AggregateQuery, reason: str, **kw: int) -> QueryError:
    with pytest.raises(QueryError) as exc:
        validate_query(query, DICT, **kw)
    assert exc.value.reason == reason, exc.value
    return exc.value


# -- validation --------------------------------------------------------------------------------


def test_a_good_query_resolves_to_dictionary_objects() -> None:
    vq = validate_query(
        q(
            measure="victims",
            group_by=("nationality", "sex"),
            filters=(
                Between("identification_month", "2023-01", "2023-12"),
                OneOf("sex", ("F", "M")),
                Equals("exploitation", "forced_labour"),
            ),
        ),
        DICT,
    )
    ds = DICT.dataset(TV)
    assert ds is not None and vq.dataset is ds
    assert vq.group_by == (ds.dimension("nationality"), ds.dimension("sex"))
    assert vq.dimensions == ("nationality", "sex")
    assert [c.op for c in vq.conditions] == ["between", "in", "in"]


def test_unknown_names_are_refused() -> None:
    refused(q(dataset="weather"), "unknown_dataset")
    refused(q(dataset="persons"), "unknown_dataset")  # identity data is never aggregated
    refused(q(group_by=("religion",)), "unknown_dimension")
    refused(q(filters=(Equals("religion", "x"),)), "unknown_dimension")
    refused(q(measure="persons"), "unknown_measure")  # a measure of another dataset


def test_bad_filter_values_are_refused_without_echoing_them() -> None:
    err = refused(q(filters=(Equals("nationality", "MMR' OR 1=1 --"),)), "bad_filter")
    assert "OR 1=1" not in str(err)
    refused(q(filters=(Equals("identification_month", "2023-13"),)), "bad_filter")
    refused(q(filters=(Equals("identification_month", "2023-1"),)), "bad_filter")
    refused(q(dataset=IM, filters=(Between("event_date", "2023-02-30", None),)), "bad_filter")
    refused(q(filters=(Between("nationality", "AFG", "MMR"),)), "bad_filter")  # codes: no range
    refused(q(filters=(Between("identification_month"),)), "bad_filter")
    refused(q(filters=(Between("identification_month", "2024-01", "2023-01"),)), "bad_filter")
    refused(q(filters=(OneOf("sex", ()),)), "bad_filter")
    refused(q(filters=(OneOf("sex", ("F", "F")),)), "bad_filter")
    refused(q(filters=(Equals("sex", "F" * 100),)), "bad_filter")


def test_bounds_are_enforced() -> None:
    dims = ("nationality", "sex", "age_band", "exploitation")
    assert len(dims) > MAX_GROUP_BY
    refused(q(group_by=dims), "too_many_dimensions")
    # A policy may allow fewer dimensions than the hard bound.
    refused(q(group_by=("nationality", "sex")), "too_many_dimensions", max_group_by=1)
    nat = DICT.datasets[TV].dimension("nationality")
    assert nat is not None and len(nat.codes) <= MAX_SET_SIZE
    refused(q(filters=(OneOf("nationality", tuple(nat.codes) * 2),)), "bad_filter")
    many = tuple(Equals("sex", "F") for _ in range(MAX_FILTERS + 1))
    refused(q(filters=many), "too_many_filters")
    refused(q(filters=(Equals("sex", "F"), Equals("sex", "M"))), "bad_query")
    refused(q(group_by=("sex", "sex")), "bad_query")
    refused(q(dataset="x" * 200), "bad_query")


def test_dictionary_versions_must_match() -> None:
    refused(q(dictionary_version=""), "dictionary_mismatch")
    refused(q(dictionary_version="2.0"), "dictionary_mismatch")
    refused(q(dictionary_version="1.1"), "dictionary_mismatch")  # newer than the node's
    refused(q(dictionary_version="one"), "dictionary_mismatch")
    validate_query(q(dictionary_version="1.0"), DICT)


def test_the_policy_sees_the_query_through_describe() -> None:
    rule = Rule(
        id="sg",
        requesters=("*",),
        query=AGGREGATE,
        datasets=(TV,),
        group_by=("nationality", "sex"),
        filters=("identification_month",),
        min_cell_size=10,
    )
    member = Member(member_id="ID", name="Indonesia", status=MemberStatus.ACTIVE)
    now = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp() * 1000)
    policy = Policy(rules=(rule,))

    def decision(query: AggregateQuery) -> str:
        return decide(policy, member, describe(query, purpose="x"), now_ms=now).reason

    assert decision(q(group_by=("nationality",))) == "ok"
    assert decision(q(group_by=("identified_by",))) == "dimension_not_allowed"
    assert decision(q(filters=(Equals("sex", "F"),))) == "filter_not_allowed"
    assert describe(q()).measure == ""  # counting records is not a policy measure


# -- execution on a real store ------------------------------------------------------------------


def test_counts_by_two_dimensions_match_the_imported_file(
    data: tuple[DataStore, dict[str, Path]],
) -> None:
    store, paths = data
    rows = rows_of(paths[TV])
    vq = validate_query(
        q(
            group_by=("nationality", "sex"),
            filters=(Between("identification_month", "2023-01", "2023-12"),),
        ),
        DICT,
    )
    table = execute(store.conn, vq)
    selected = [r for r in rows if "2023-01" <= r["identification_month"] <= "2023-12"]
    expected = Counter((r["nationality"], r["sex"]) for r in selected)
    assert table.population == len(selected) > 0
    assert {k: v for k, v in table.values.items() if v} == dict(expected)
    # A full grid: every observed nationality by every observed sex, zeros included.
    assert len(table.values) == len(table.levels[0]) * len(table.levels[1])
    assert table.sensitivity == 1


def test_sums_of_a_measure_and_clamped_sums(data: tuple[DataStore, dict[str, Path]]) -> None:
    store, paths = data
    rows = rows_of(paths[IM])
    vq = validate_query(
        AggregateQuery(
            dataset=IM,
            dictionary_version=V,
            measure="persons",
            group_by=("route",),
            filters=(
                Between("event_date", "2022-01-01", "2023-06-30"),
                OneOf("direction", ("arrival", "transit")),
            ),
        ),
        DICT,
    )
    sel = [
        r
        for r in rows
        if "2022-01-01" <= r["event_date"] <= "2023-06-30"
        and r["direction"] in ("arrival", "transit")
    ]
    sums: Counter[tuple[str, ...]] = Counter()
    clamped: Counter[tuple[str, ...]] = Counter()
    for r in sel:
        sums[(r["route"],)] += int(r["persons"])
        clamped[(r["route"],)] += min(int(r["persons"]), 20)
    exact = execute(store.conn, vq)
    assert exact.population == len(sel)
    assert dict(exact.values) == dict(sums)
    assert dict(exact.records) == dict(Counter((r["route"],) for r in sel))
    assert exact.sensitivity is None
    capped = execute(store.conn, vq, sum_clamp=20)
    assert dict(capped.values) == dict(clamped) and capped.sensitivity == 20


def test_values_travel_as_parameters_never_as_sql_text() -> None:
    vq = validate_query(
        q(
            group_by=("sex",),
            filters=(
                Equals("nationality", "MMR"),
                Between("identification_month", "2023-01", None),
            ),
        ),
        DICT,
    )
    sql, params = build_sql(vq)
    assert "MMR" not in sql and "2023-01" not in sql
    assert params == ["MMR", "2023-01"]
    assert sql.startswith(
        "SELECT sex, COUNT(*), COUNT(*), COALESCE(SUM(_record_key), 0) FROM trafficking_victims"
        " WHERE"
    )


def test_noised_grids_span_the_whole_domain(data: tuple[DataStore, dict[str, Path]]) -> None:
    store, _ = data
    vq = validate_query(
        q(
            group_by=("identification_month", "sex"),
            filters=(Between("identification_month", "2023-11", "2024-02"),),
        ),
        DICT,
    )
    table = execute(store.conn, vq, grid=DOMAIN)
    assert table.levels == (("2023-11", "2023-12", "2024-01", "2024-02"), ("F", "M", "X"))
    assert len(table.values) == 12
    with pytest.raises(QueryError) as exc:
        execute(
            store.conn, validate_query(q(group_by=("identification_month",)), DICT), grid=DOMAIN
        )
    assert exc.value.reason == "unbounded_dimension"


def test_too_many_cells_are_refused(data: tuple[DataStore, dict[str, Path]]) -> None:
    store, _ = data
    vq = validate_query(
        AggregateQuery(
            dataset=IM, dictionary_version=V, group_by=("location", "nationality", "sex")
        ),
        DICT,
    )
    with pytest.raises(QueryError) as exc:
        execute(store.conn, vq, grid=DOMAIN)
    assert exc.value.reason == "too_many_cells"
    assert MAX_CELLS < 5000 * 250


def test_common_group_bys_read_a_covering_index(data: tuple[DataStore, dict[str, Path]]) -> None:
    store, _ = data
    assert any("ix_agg_trafficking_victims_nationality" in s for s in index_statements(DICT))
    vq = validate_query(
        q(
            measure="victims",
            group_by=("nationality",),
            filters=(Between("identification_month", "2023-01", "2023-12"),),
        ),
        DICT,
    )
    sql, params = build_sql(vq)
    plan = " ".join(str(r[-1]) for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "COVERING INDEX ix_agg_trafficking_victims_nationality_sex" in plan
    assert "TEMP B-TREE" not in plan
    vq = validate_query(q(group_by=("nationality", "sex")), DICT)
    sql, params = build_sql(vq)
    plan = " ".join(str(r[-1]) for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "COVERING INDEX ix_agg_trafficking_victims_nationality_sex" in plan
    assert "TEMP B-TREE" not in plan


def test_an_imported_table_released_end_to_end(data: tuple[DataStore, dict[str, Path]]) -> None:
    store, _ = data
    vq = validate_query(q(group_by=("nationality", "exploitation")), DICT)
    table = execute(store.conn, vq)
    released = release(table, ReleaseRules(min_cell_size=10, round_to=3), rng=random.Random(1))
    assert released.dimensions == ("nationality", "exploitation")
    assert any(c.value is None for c in released.cells)  # synthetic data has small cells
    assert all(c.value is None or c.value == 0 or c.value >= 10 for c in released.cells)
