"""Properties of the policy engine and its persistent limits (hypothesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rcf.node.ops.state import StateDB
from rcf.node.policy.admin import PolicyGate
from rcf.node.policy.engine import decide, period_window
from rcf.node.policy.model import (
    AGGREGATE,
    ALERT_CATEGORIES,
    ALERTS,
    IDENTITY_CHECK,
    MICRO,
    PING,
    Budget,
    Charge,
    Policy,
    QueryDescription,
    RateLimit,
    Rule,
)
from rcf.node.policy.store import UsageStore
from rcf.trust.clock import now_ms
from rcf.trust.directory import Member
from rcf.trust.errors import RequestRejected
from tests.policy_fixtures import MEMBERS, NOW_MS

ENTRIES = (
    *(m.member_id for m in MEMBERS),
    "group:steering-group",
    "group:pacific",
    "role:coordinator",
    "role:unhcr",
    "role:iom",
    "*",
)
DATASETS = ("irregular_movements", "asylum_applications", "persons", "documents")
DIMS = ("nationality", "sex", "route", "month")
PURPOSES = ("analysis", "border-control", "research")
FAST = settings(max_examples=60, deadline=None)
SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def names(member: Member) -> set[str]:
    """Requester entries that name member."""
    return {"*", member.member_id, *(f"group:{g}" for g in member.groups),
            *(f"role:{r}" for r in member.roles)}  # fmt: skip


def subset(values: tuple[str, ...]) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(values), unique=True).map(tuple)


@st.composite
def rules(draw: st.DrawFn, entries: tuple[str, ...] = ENTRIES) -> Rule:
    query = draw(st.sampled_from((PING, AGGREGATE, IDENTITY_CHECK, ALERTS)))
    kw: dict[str, object] = {}
    if query in (AGGREGATE, IDENTITY_CHECK):
        kw["datasets"] = draw(subset(DATASETS).filter(bool))
    if query == AGGREGATE:
        kw["group_by"] = draw(subset(DIMS))
        kw["filters"] = draw(subset(DIMS))
        kw["min_cell_size"] = draw(st.integers(1, 20))
        if draw(st.booleans()):
            eps = draw(st.floats(0.1, 2.0))
            kw.update(noise="geometric", epsilon=eps, budget=Budget(eps * 4, "month"))
    if query == IDENTITY_CHECK:
        kw["detail"] = draw(st.sampled_from(("hit_only", "hit_with_reference")))
        kw["max_batch"] = draw(st.none() | st.integers(1, 100))
    if query == ALERTS:
        kw["categories"] = draw(subset(ALERT_CATEGORIES).filter(bool))
    if draw(st.booleans()):
        kw["purposes"] = draw(subset(PURPOSES).filter(bool))
    if draw(st.booleans()):
        kw["rate_limit"] = RateLimit(draw(st.integers(1, 50)), "day")
    return Rule(
        id=f"r{draw(st.integers(0, 10**6))}",
        requesters=draw(st.lists(st.sampled_from(entries), min_size=1, unique=True).map(tuple)),
        query=query,
        **kw,  # type: ignore[arg-type]
    )


@st.composite
def queries(draw: st.DrawFn) -> QueryDescription:
    query = draw(st.sampled_from((PING, AGGREGATE, IDENTITY_CHECK, ALERTS)))
    return QueryDescription(
        query_type=query,
        purpose=draw(st.sampled_from(("", *PURPOSES))),
        dataset=draw(st.sampled_from(DATASETS)) if query in (AGGREGATE, IDENTITY_CHECK) else "",
        group_by=draw(subset(DIMS)) if query == AGGREGATE else (),
        filters=draw(subset(DIMS)) if query == AGGREGATE else (),
        epsilon=draw(st.none() | st.floats(0.05, 2.0)) if query == AGGREGATE else None,
        items=draw(st.integers(1, 200)) if query == IDENTITY_CHECK else 1,
        alert_category=draw(st.sampled_from(("", *ALERT_CATEGORIES))) if query == ALERTS else "",
    )


@st.composite
def unnamed_case(draw: st.DrawFn) -> tuple[Member, list[Rule]]:
    """A member and rules none of which names it."""
    member = draw(st.sampled_from(MEMBERS))
    others = tuple(e for e in ENTRIES if e not in names(member))
    return member, draw(st.lists(rules(others), max_size=8))


@FAST
@given(case=unnamed_case(), query=queries())
def test_a_requester_named_in_no_rule_is_always_refused(
    case: tuple[Member, list[Rule]], query: QueryDescription
) -> None:
    member, rs = case
    d = decide(Policy(tuple(rs)), member, query, now_ms=NOW_MS)
    assert not d.allowed
    assert d.reason == "not_authorized"
    assert d.constraints is None and d.charges == ()


@FAST
@given(
    member=st.sampled_from(MEMBERS),
    base=st.lists(rules(), max_size=8),
    extra=st.data(),
    query=queries(),
)
def test_adding_a_rule_for_someone_else_never_changes_a_decision(
    member: Member, base: list[Rule], extra: st.DataObject, query: QueryDescription
) -> None:
    others = tuple(e for e in ENTRIES if e not in names(member))
    added = extra.draw(rules(others))
    at = extra.draw(st.integers(0, len(base)))
    before = decide(Policy(tuple(base)), member, query, now_ms=NOW_MS)
    after = decide(Policy((*base[:at], added, *base[at:])), member, query, now_ms=NOW_MS)
    assert (before.allowed, before.reason, before.rule_id, before.constraints, before.charges) == (
        after.allowed, after.reason, after.rule_id, after.constraints, after.charges,
    )  # fmt: skip


AGG = Rule(
    id="agg",
    requesters=("*",),
    query=AGGREGATE,
    datasets=("irregular_movements",),
    min_cell_size=5,
    noise="geometric",
    epsilon=3.0,
)


@SLOW
@given(
    budget=st.floats(0.5, 5.0),
    asks=st.lists(st.floats(0.01, 3.0), min_size=1, max_size=25),
    member=st.sampled_from(MEMBERS),
)
def test_a_budget_never_goes_below_zero(budget: float, asks: list[float], member: Member) -> None:
    rule = Rule(**{**AGG.__dict__, "budget": Budget(budget, "month")})
    with tempfile.TemporaryDirectory() as tmp:
        state = StateDB(Path(tmp) / "state.db")
        try:
            usage = UsageStore(state)
            gate = PolicyGate(Policy((rule,)), usage)
            granted = 0
            window = Charge("budget", "irregular_movements", period_window("month", now_ms()), 0, 0)
            limit = round(budget * MICRO)
            for eps in asks:
                q = QueryDescription(AGGREGATE, dataset="irregular_movements", epsilon=eps)
                try:
                    gate.check(member, q)
                    granted += round(eps * MICRO)
                except RequestRejected as exc:
                    assert exc.audit_reason == "budget_exhausted"
                    assert granted + round(eps * MICRO) > limit  # refused only when it must be
                used = usage.used(member.member_id, window)
                assert used == granted
                assert limit - used >= 0  # what remains is never negative
        finally:
            state.close()


@SLOW
@given(
    count=st.integers(1, 6),
    ops=st.lists(st.sampled_from(("ask", "ask", "ask", "restart")), max_size=20),
)
def test_rate_limits_hold_across_restarts(count: int, ops: list[str]) -> None:
    rule = Rule(id="ping", requesters=("*",), query=PING, rate_limit=RateLimit(count, "day"))
    member = MEMBERS[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        state = StateDB(path)
        gate = PolicyGate(Policy((rule,)), UsageStore(state))
        granted = asked = 0
        try:
            for op in ops:
                if op == "restart":
                    state.close()
                    state = StateDB(path)
                    gate = PolicyGate(Policy((rule,)), UsageStore(state))
                    continue
                asked += 1
                try:
                    gate.check(member, QueryDescription(PING))
                    granted += 1
                except RequestRejected as exc:
                    assert exc.audit_reason == "rate_limited"
        finally:
            state.close()
    assert granted == min(asked, count)


@pytest.mark.parametrize("member", MEMBERS[:1])
def test_property_helpers_name_correctly(member: Member) -> None:
    assert all(Rule("x", (e,), PING).names(member) for e in names(member))
