"""Aggregate queries over real nodes (mutual TLS on 127.0.0.1): the regional fan-out, the
merge, every member's outcome, disclosure control at each responder, and bad input."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from rcf.node.aggregate.responder import AGGREGATE
from rcf.protos.v1 import aggregate_pb2
from rcf.trust.errors import PeerError
from tests.aggregate_fixtures import (
    CAVEAT,
    apply,
    ask,
    audit_reasons,
    merged,
    outcomes,
    policy,
    query,
    setup_region,
    sql_count,
)
from tests.network import Network, reason_of

YEAR_2025 = ("event_date BETWEEN ? AND ?", ("2025-01-01", "2025-12-31"))


@pytest.fixture
def region(net: Network, tmp_path: Path) -> Network:
    return setup_region(net, tmp_path)


def nationality(*codes: str) -> aggregate_pb2.AggregateFilter:
    return aggregate_pb2.AggregateFilter(
        dimension="nationality", one_of=aggregate_pb2.ValueSet(values=list(codes))
    )


def test_regional_query_merges_answers_and_shows_every_outcome(region: Network) -> None:
    result = ask(region.nodes["AU"], query(by=("nationality",)), regional=True)
    assert outcomes(result) == {
        "AU": ("answered", ""),
        "TH": ("answered", ""),
        "NZ": ("refused", "not_permitted"),  # no records: fewer than min_population
    }
    cells = merged(result)
    expected_total = sql_count(region.layout("AU"), *YEAR_2025) + sql_count(
        region.layout("TH"), *YEAR_2025
    )
    assert cells[("",)].value == expected_total == 120
    assert not cells[("",)].lower_bound
    assert cells[("MMR",)].value == 70 and not cells[("MMR",)].lower_bound
    # AU's 3 Iranians are suppressed (primary), and a complement with them (secondary).
    assert cells[("IRN",)].lower_bound and cells[("IRN",)].suppressed_by == ["AU"]
    assert cells[("KHM",)].suppressed_by == ["TH"]
    assert sum(c.lower_bound for c in result.cells) == 4
    for m in result.members:
        if m.outcome == "answered":
            assert m.disclosure.caveat == CAVEAT
            assert m.disclosure.min_cell_size == 5 and m.cells_suppressed == 2
    # The refusal's detail stays at NZ; AU's own audit shows what it learnt.
    assert "population_too_small" in audit_reasons(region.nodes["NZ"])
    assert "refused:not_permitted" in audit_reasons(region.nodes["AU"], side="requester")


def test_two_dimension_table_by_month_is_released_per_member(region: Network) -> None:
    result = ask(region.nodes["TH"], query(by=("nationality", "month")), members=("AU", "TH"))
    assert {m.outcome for m in result.members} == {"answered"}
    cells = merged(result)
    assert cells[("MMR", "2025-03")].value == 70
    # AU's table is sparse: protecting its 3 Iranians takes its grand total too, so the
    # merged total is TH's part only and says it is a lower bound.
    total = cells[("", "")]
    assert (total.value, total.lower_bound, list(total.suppressed_by)) == (67, True, ["AU"])
    # 2024 data is outside the range; no month outside 2025 appears.
    assert all(c.key[1] == "" or c.key[1].startswith("2025-") for c in result.cells)


def test_a_stopped_node_is_unreachable_within_the_deadline(region: Network) -> None:
    region.stop_node("TH")
    started = time.monotonic()
    result = ask(region.nodes["AU"], query(), regional=True, deadline_ms=3000)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0 + 1.5
    assert outcomes(result)["TH"] == ("unreachable", "unreachable")
    assert outcomes(result)["AU"] == ("answered", "")
    # Only AU's records are in the (explicitly partial) merge.
    assert merged(result)[("",)].value == sql_count(region.layout("AU"), *YEAR_2025)


def test_bad_input_is_refused_with_one_code(region: Network) -> None:
    au = region.nodes["AU"]
    for q, reason in (
        (query(dataset="no_such_dataset"), "unknown_dataset"),
        (query(by=("colour",)), "unknown_dimension"),
        (query(version="1.9"), "dictionary_mismatch"),
        (query(by=("nationality", "route", "sex", "month")), "too_many_dimensions"),
    ):
        with pytest.raises(grpc.RpcError) as info:
            ask(au, q, members=("TH",))
        assert reason_of(info.value) == reason, reason
    with pytest.raises(grpc.RpcError) as info:
        ask(au, query(), members=("TH",), deadline_ms=0)
    assert reason_of(info.value) == "bad_deadline"
    with pytest.raises(grpc.RpcError) as info:
        ask(au, query(), members=("XX",))
    assert reason_of(info.value) == "unknown_member"


def test_the_responder_itself_refuses_a_newer_dictionary(region: Network) -> None:
    au = region.nodes["AU"]

    def fill(request: aggregate_pb2.AggregateRequest) -> None:
        request.query.CopyFrom(query(version="1.7"))

    with pytest.raises(PeerError) as info:
        au.peers.call(
            AGGREGATE, responder="TH", purpose="regional-analysis", fill=fill, timeout_s=5
        )
    assert info.value.reason == "refused:dictionary_mismatch"


def test_the_responder_refuses_too_many_dimensions_and_filters_with_their_codes(
    region: Network,
) -> None:
    # Sent straight to TH (the local operator would refuse them before sending): the
    # responder's own form check answers with the codes PROTOCOL-aggregate.md lists.
    au = region.nodes["AU"]
    four = ("nationality", "route", "sex", "month")
    nine = [nationality("MMR") for _ in range(9)]
    for q, reason in (
        (query(by=four), "too_many_dimensions"),
        (query(filters=tuple(nine)), "too_many_filters"),
    ):

        def fill(
            request: aggregate_pb2.AggregateRequest, q: aggregate_pb2.AggregateQuery = q
        ) -> None:
            request.query.CopyFrom(q)

        with pytest.raises(PeerError) as info:
            au.peers.call(
                AGGREGATE, responder="TH", purpose="regional-analysis", fill=fill, timeout_s=5
            )
        assert info.value.reason == f"refused:{reason}"
        assert audit_reasons(region.nodes["TH"])[-1] == reason


def test_policy_refusals_reach_the_requester_as_not_permitted(region: Network) -> None:
    au, th = region.nodes["AU"], region.nodes["TH"]
    cases = (
        (query(by=("age_band",)), "dimension_not_allowed"),  # not in the rule's group_by
        (query(by=("nationality", "month", "route")), "too_many_dimensions"),  # max_group_by 2
        (query(filters=(nationality("KHM"),)), "population_too_small"),  # 2 records < 20
    )
    for q, detail in cases:
        result = ask(au, q, members=("TH",))
        assert outcomes(result) == {"TH": ("refused", "not_permitted")}, detail
        assert audit_reasons(th)[-1] == detail


def test_a_differencing_pair_is_refused(region: Network) -> None:
    th, au = region.nodes["TH"], region.nodes["AU"]
    first = ask(th, query(), members=("AU",))
    assert outcomes(first)["AU"] == ("answered", "")
    # All but the 3 Iranians: subtracting would describe those 3 people.
    second = ask(th, query(filters=(nationality("MMR", "AFG", "LKA"),)), members=("AU",))
    assert outcomes(second)["AU"] == ("refused", "not_permitted")
    assert audit_reasons(au)[-1] == "differencing_suspected"
    # The same population again is no difference at all.
    assert outcomes(ask(th, query(), members=("AU",)))["AU"] == ("answered", "")


NOISED_RULE = """
[[rule]]
id = "movements-noised"
requesters = ["*"]
query = "Aggregate"
datasets = ["irregular_movements"]
group_by = ["nationality", "month"]
filters = ["month", "nationality"]
min_cell_size = 5
noise = "{noise}"
epsilon = 1.0
budget = {{ epsilon = 2.0, per = "month" }}
"""


def test_budget_is_spent_then_refused_and_survives_a_restart(region: Network) -> None:
    apply(region.nodes["TH"], policy("TH", NOISED_RULE.format(noise="geometric")))
    au = region.nodes["AU"]
    for _ in range(2):
        result = ask(au, query(), members=("TH",))
        assert outcomes(result)["TH"] == ("answered", "")
        d = result.members[0].disclosure
        assert d.noise == "discrete_laplace" and d.epsilon == 1.0 and d.noise_scale > 0
        assert all(c.approximate for c in result.cells if c.value)
    assert outcomes(ask(au, query(), members=("TH",)))["TH"] == ("refused", "limit_reached")
    assert audit_reasons(region.nodes["TH"])[-1] == "budget_exhausted"
    region.stop_node("TH")
    region.start_node("TH")
    region.refresh_all()
    assert outcomes(ask(au, query(), members=("TH",)))["TH"] == ("refused", "limit_reached")


def test_discrete_gaussian_noise_says_its_delta(region: Network) -> None:
    apply(region.nodes["TH"], policy("TH", NOISED_RULE.format(noise="discrete_gaussian")))
    result = ask(region.nodes["AU"], query(), members=("TH",))
    d = result.members[0].disclosure
    assert (d.noise, d.delta) == ("discrete_gaussian", 1e-9)
    assert d.noise_scale > 1


RECIPROCAL_RULE = """
[[rule]]
id = "movements-reciprocal"
requesters = ["*"]
query = "Aggregate"
datasets = ["irregular_movements"]
group_by = ["nationality", "month"]
filters = ["month", "nationality"]
min_cell_size = 5
reciprocity = true
"""


def test_reciprocity_answers_only_members_that_contributed(region: Network) -> None:
    au, th = region.nodes["AU"], region.nodes["TH"]
    apply(th, policy("TH", RECIPROCAL_RULE))
    # AU has never answered TH's query of this dataset: not a contributor yet.
    assert outcomes(ask(au, query(), members=("TH",)))["TH"] == ("refused", "not_permitted")
    assert audit_reasons(th)[-1] == "reciprocity_required"
    # TH asks AU (and NZ, which holds nothing and refuses); AU's signed table counts.
    first = ask(th, query(), members=("AU", "NZ"))
    assert outcomes(first)["AU"] == ("answered", "")
    assert outcomes(ask(au, query(), members=("TH",)))["TH"] == ("answered", "")
    assert outcomes(ask(region.nodes["NZ"], query(), members=("TH",)))["TH"] == (
        "refused",
        "not_permitted",
    )
