"""The pieces the Aggregate query type adds: policy keys, `month` of the date field,
the wire form, and the situation report's periods."""

from __future__ import annotations

import sqlite3
import textwrap

import pytest

from rcf.cli.aggregate_view import build_query, parse_deadline, parse_filter
from rcf.cli.situation_report import parse_period, previous
from rcf.node.aggregate.disclosure import (
    DISCRETE_GAUSSIAN,
    EXACT,
    SUPPRESSED_PRIMARY,
    ReleasedCell,
    ReleasedTable,
    rules_from_decision,
)
from rcf.node.aggregate.execute import build_sql, execute
from rcf.node.aggregate.query import (
    AggregateQuery,
    Between,
    Equals,
    OneOf,
    QueryError,
    describe,
    validate_query,
)
from rcf.node.aggregate.wire import (
    query_from_proto,
    query_to_proto,
    table_from_proto,
    table_to_proto,
)
from rcf.node.policy.engine import decide
from rcf.node.policy.loader import parse_policy
from rcf.node.policy.validate import check_policy
from rcf.trust.dictionary import default_dictionary
from rcf.trust.errors import ConfigError
from tests.policy_fixtures import BY_ID, CONTEXT, NOW_MS, policy

DICT = default_dictionary()
IM = "irregular_movements"


def _rule(extra: str) -> str:
    return textwrap.dedent(
        """
        [policy]
        caveat = "RESTRICTED - members only"

        [[rule]]
        id = "agg"
        requesters = ["*"]
        query = "Aggregate"
        datasets = ["irregular_movements"]
        group_by = ["nationality", "month", "route"]
        filters = ["month"]
        min_cell_size = 5
        """
    ) + textwrap.dedent(extra)


def test_new_policy_keys_reach_the_release_rules() -> None:
    p = policy(
        _rule(
            """
            noise = "discrete_gaussian"
            epsilon = 0.5
            delta = 1e-8
            budget = { epsilon = 5.0, per = "month" }
            sum_clamp = 20
            min_population = 30
            differencing = "flag"
            max_group_by = 2
            reciprocity = true
            """
        )
    )
    query = describe(AggregateQuery(IM, "1.0", group_by=("nationality", "month")))
    decision = decide(p, BY_ID["AU"], query, now_ms=NOW_MS)
    assert decision.allowed
    rules = rules_from_decision(decision)
    assert (rules.noise, rules.epsilon, rules.delta, rules.sum_clamp) == (
        DISCRETE_GAUSSIAN,
        0.5,
        1e-8,
        20,
    )
    assert (rules.min_population, rules.differencing) == (30, "flag")
    assert rules.caveat == "RESTRICTED - members only"  # the policy's, no rule caveat
    assert decision.constraints is not None and decision.constraints.reciprocity
    three = describe(AggregateQuery(IM, "1.0", group_by=("nationality", "month", "route")))
    refused = decide(p, BY_ID["AU"], three, now_ms=NOW_MS)
    assert (refused.allowed, refused.reason) == (False, "too_many_dimensions")


def test_a_rule_caveat_overrides_the_policy_caveat() -> None:
    p = policy(_rule('caveat = "For the RSO only"\n'))
    decision = decide(p, BY_ID["RSO"], describe(AggregateQuery(IM, "1.0")), now_ms=NOW_MS)
    assert rules_from_decision(decision).caveat == "For the RSO only"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('noise = "geometric"\nepsilon = 1.0\nbudget = { epsilon = 5.0, per = "month" }\n'
         "delta = 1e-9\n", "'delta' applies to discrete_gaussian"),
        ('noise = "discrete_gaussian"\nepsilon = 1.0\ndelta = 0.5\n'
         'budget = { epsilon = 5.0, per = "month" }\n', "'delta' must lie above 0"),
        ("sum_clamp = 10\n", "'sum_clamp' has no effect without noise"),
        ("max_group_by = 4\n", "'max_group_by' must be at most 3"),
        ('reciprocity = "yes"\n', "'reciprocity' must be true or false"),
        ('differencing = "warn"\n', "'warn' is not a valid differencing"),
        ("min_population = 0\n", "'min_population' must be at least 1"),
        (f'caveat = "{"x" * 1001}"\n', "'caveat' must be 1 to 1000"),
    ],
)  # fmt: skip
def test_bad_policy_values_are_errors_with_a_line(extra: str, message: str) -> None:
    loaded = parse_policy(_rule(extra), "p.toml")
    assert loaded.policy is None
    assert any(message in i.message for i in loaded.errors), [i.message for i in loaded.errors]


def test_month_is_a_dimension_of_every_dataset_in_policies() -> None:
    text = 'member = "TH"\n' + _rule("").replace("[policy]\n", "")
    loaded = check_policy("[policy]\n" + text, "p.toml", CONTEXT)
    assert loaded.errors == [], loaded.errors


def test_month_of_a_date_field_groups_and_filters_by_month() -> None:
    vq = validate_query(
        AggregateQuery(IM, "1.0", filters=(Between("month", "2025-02", "2025-03"),),
                       group_by=("month",)),
        DICT,
    )  # fmt: skip
    sql, params = build_sql(vq)
    assert "substr(event_date, 1, 7)" in sql
    assert params == ["2025-02-01", "2025-03-31"]  # the date index serves the range
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE irregular_movements (event_date TEXT, _record_key INTEGER)")
    conn.executemany(
        "INSERT INTO irregular_movements (event_date) VALUES (?)",
        [("2025-01-31",), ("2025-02-01",), ("2025-02-28",), ("2025-03-31",), ("2025-04-01",)],
    )
    table = execute(conn, vq)
    assert dict(table.values) == {("2025-02",): 2, ("2025-03",): 1}
    assert table.population == 3


def test_month_aliases_a_month_field_and_cannot_be_named_twice() -> None:
    ok = validate_query(AggregateQuery("trafficking_victims", "1.0", group_by=("month",)), DICT)
    assert build_sql(ok)[0].startswith("SELECT identification_month,")
    with pytest.raises(QueryError):
        validate_query(
            AggregateQuery("trafficking_victims", "1.0",
                           group_by=("month", "identification_month")),
            DICT,
        )  # fmt: skip


def test_query_round_trips_through_the_wire() -> None:
    q = AggregateQuery(
        IM,
        "1.0",
        measure="persons",
        filters=(Equals("route", "sea"), OneOf("nationality", ("AFG", "MMR")),
                 Between("month", "2025-01", None)),
        group_by=("nationality", "month"),
    )  # fmt: skip
    back, eps = query_from_proto(query_to_proto(q, epsilon=0.25))
    assert (back, eps) == (q, 0.25)
    bad = query_to_proto(q)
    bad.epsilon = float("nan")
    with pytest.raises(QueryError):
        query_from_proto(bad)


def test_released_table_round_trips_with_int_keys_and_totals() -> None:
    table = ReleasedTable(
        dataset=IM,
        measure=None,
        dimensions=("nationality", "age"),
        cells=(
            ReleasedCell(("AFG", 3), 12, EXACT),
            ReleasedCell(("AFG", 4), None, SUPPRESSED_PRIMARY),
            ReleasedCell(("AFG", None), 15, EXACT),
        ),
        caveat="c",
        min_cell_size=5,
    )
    msg = table_to_proto(table, scale=None, delta=None, dictionary_version="1.0")
    assert [list(c.key) for c in msg.cells] == [["AFG", "3"], ["AFG", "4"], ["AFG", ""]]
    assert table_from_proto(msg, [False, True]) == table


def test_command_line_words_become_a_query() -> None:
    words = ["route=sea,land", "age=3..7"]
    q = build_query(dataset=IM, by=["nationality", "month"], period_from="2025-01",
                    period_to="2025-12", measure=None, filters=words)  # fmt: skip
    assert [f.dimension for f in q.filters] == ["month", "route", "age"]
    assert list(q.filters[1].one_of.values) == ["sea", "land"]
    assert (q.filters[2].between.low, q.filters[2].between.high) == ("3", "7")
    assert parse_filter("route=sea").one_of.values == ["sea"]
    assert parse_deadline("800ms") == 800 and parse_deadline("5s") == 5000
    for bad in ("0s", "0", "soon", "-1s"):
        with pytest.raises(ConfigError):
            parse_deadline(bad)
    with pytest.raises(ConfigError):
        build_query(dataset=IM, by=[], period_from="2025-12", period_to="2025-01",
                    measure=None, filters=[])  # fmt: skip


def test_report_periods_and_the_one_before() -> None:
    q3 = parse_period("2025-Q3")
    assert q3.months == ("2025-07", "2025-08", "2025-09")
    assert previous(q3).label == "2025-Q2"
    assert previous(parse_period("2025-Q1")).months == ("2024-10", "2024-11", "2024-12")
    assert previous(parse_period("2025-01")).label == "2024-12"
    assert previous(parse_period("2025")).months[0] == "2024-01"
    with pytest.raises(ConfigError):
        parse_period("2025-Q5")
