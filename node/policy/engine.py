"""The policy engine: (policy, requester, query) → Decision. Pure: no I/O.

Rules are read in file order. A rule *applies* when it names the requester,
the query type and the dataset and is valid today; the first applicable rule
whose constraints the query meets decides, and its limits (budget, rate) are
then checked against the usage the caller passes in. If no rule applies the
answer is ``not_authorized``; if rules apply but none is met, the first such
rule's refusal code is the answer. Granting is the only effect a rule has, so
a rule for someone else can never change a requester's decision.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from rcf.node.policy.model import (
    AGGREGATE,
    ALERT_SEVERITIES,
    ALERTS,
    DATASET_KIND,
    DEFAULT_DELTA,
    DEFAULT_SUM_CLAMP,
    IDENTITY_CHECK,
    MICRO,
    QUERY_TYPES,
    Charge,
    Constraints,
    Decision,
    Policy,
    QueryDescription,
    Rule,
    RuleTrace,
    to_micro,
)
from rcf.trust.directory import Member

# usage(requester member id, charge) → the amount already used in charge's window.
Usage = Callable[[str, Charge], int]

NOT_AUTHORIZED = "not_authorized"
# Public refusal codes: what the requester learns. Never rule ids or allowed values.
REASONS = {
    NOT_AUTHORIZED: "this node's sharing policy does not grant this query to you",
    "unknown_query_type": "this node does not know that query type",
    "purpose_not_allowed": "the stated purpose is not one this node shares for",
    "dimension_not_allowed": "a group-by dimension is not shared with you",
    "filter_not_allowed": "a filter dimension is not shared with you",
    "measure_not_allowed": "the measure is not shared with you",
    "epsilon_too_large": "the requested privacy loss (epsilon) is above what is granted",
    "too_many_dimensions": "the query groups by more dimensions than shared with you",
    "category_not_allowed": "that alert category is not shared with you",
    "batch_too_large": "the batch is larger than this node accepts from you",
    "budget_exhausted": "your privacy budget for this dataset is spent for this period",
    "rate_limited": "your query volume for this period is used up",
}


def period_window(per: str, now_ms: int) -> str:
    """The UTC calendar period containing now_ms, as a stable key: 'month:2026-11'."""
    t = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    if per == "minute":
        return f"minute:{t:%Y-%m-%dT%H:%M}"
    if per == "hour":
        return f"hour:{t:%Y-%m-%dT%H}"
    if per == "day":
        return f"day:{t:%Y-%m-%d}"
    if per == "week":
        year, week, _ = t.isocalendar()
        return f"week:{year}-W{week:02d}"
    if per == "month":
        return f"month:{t:%Y-%m}"
    if per == "quarter":
        return f"quarter:{t.year}-Q{(t.month - 1) // 3 + 1}"
    if per == "year":
        return f"year:{t.year}"
    raise ValueError(f"unknown period {per!r}")


def utc_day(now_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()


def _scope_miss(rule: Rule, requester: Member, query: QueryDescription, day: dt.date) -> str:
    """Why rule does not apply to this query at all ('' if it does)."""
    if not rule.names(requester):
        return f"does not name {requester.member_id}"
    if rule.query != query.query_type:
        return f"is for {rule.query}"
    if query.query_type in DATASET_KIND and query.dataset not in rule.datasets:
        return f"does not cover dataset {query.dataset or '(none)'}"
    if not rule.valid_on(day):
        if rule.valid_from is not None and day < rule.valid_from:
            return f"is not valid until {rule.valid_from}"
        return f"expired on {rule.valid_until}"
    return ""


def _unmet(rule: Rule, query: QueryDescription) -> tuple[str, str] | None:
    """(public code, internal why) for the first constraint query breaks, or None."""
    if rule.purposes is not None and query.purpose not in rule.purposes:
        return "purpose_not_allowed", f"purpose '{query.purpose}' is not in {list(rule.purposes)}"
    if query.query_type == AGGREGATE:
        extra = [d for d in query.group_by if d not in rule.group_by]
        if extra:
            return "dimension_not_allowed", f"group-by {extra} not in {list(rule.group_by)}"
        extra = [d for d in query.filters if d not in rule.filters]
        if extra:
            return "filter_not_allowed", f"filter on {extra} not in {list(rule.filters)}"
        if rule.max_group_by is not None and len(query.group_by) > rule.max_group_by:
            return "too_many_dimensions", (
                f"groups by {len(query.group_by)} dimensions, more than {rule.max_group_by}"
            )
        if rule.measures is not None and query.measure and query.measure not in rule.measures:
            return "measure_not_allowed", f"measure '{query.measure}' not in {list(rule.measures)}"
        if (
            rule.epsilon is not None
            and query.epsilon is not None
            and to_micro(query.epsilon) > to_micro(rule.epsilon)
        ):
            return "epsilon_too_large", f"epsilon {query.epsilon} is above {rule.epsilon}"
    if (
        query.query_type == IDENTITY_CHECK
        and rule.max_batch is not None
        and (query.items > rule.max_batch)
    ):
        return "batch_too_large", f"batch of {query.items} is above {rule.max_batch}"
    if query.query_type == ALERTS:
        return _unmet_alert(rule, query)
    return None


def _unmet_alert(rule: Rule, query: QueryDescription) -> tuple[str, str] | None:
    """Alert terms: an empty value in the query (a subscription) meets every rule."""
    if query.alert_category not in ("", *rule.categories):
        return "category_not_allowed", (
            f"category '{query.alert_category}' not in {list(rule.categories)}"
        )
    state = query.alert_issuing_state
    if state and rule.issuing_states is not None and state not in rule.issuing_states:
        return "category_not_allowed", (
            f"issuing state '{state}' not in {list(rule.issuing_states)}"
        )
    severity = query.alert_severity
    if (
        severity in ALERT_SEVERITIES
        and rule.min_severity in ALERT_SEVERITIES
        and ALERT_SEVERITIES.index(severity) < ALERT_SEVERITIES.index(rule.min_severity)
    ):
        return "category_not_allowed", (
            f"severity '{severity}' is below the rule's min_severity '{rule.min_severity}'"
        )
    return None


def _grant(
    rule: Rule, query: QueryDescription, now_ms: int, policy_caveat: str = ""
) -> tuple[Constraints, list[Charge]]:
    epsilon = None
    charges: list[Charge] = []
    if rule.noise != "none" and rule.epsilon is not None:
        epsilon = query.epsilon if query.epsilon is not None else rule.epsilon
        if rule.budget is not None:
            charges.append(
                Charge(
                    kind="budget",
                    scope=query.dataset,
                    window=period_window(rule.budget.per, now_ms),
                    amount=to_micro(epsilon),
                    limit=to_micro(rule.budget.epsilon),
                )
            )
    # items 0: a later part of something already charged (an identity check's next
    # chunk or its second round) counts nothing more.
    if rule.rate_limit is not None and query.items > 0:
        charges.append(
            Charge(
                kind="rate",
                scope=f"{query.query_type}:{query.dataset}",
                window=period_window(rule.rate_limit.per, now_ms),
                amount=query.items,
                limit=rule.rate_limit.count,
            )
        )
    constraints = Constraints(
        min_cell_size=rule.min_cell_size,
        noise=rule.noise,
        epsilon=epsilon,
        round_to=rule.round_to,
        delta=rule.delta if rule.delta is not None else DEFAULT_DELTA,
        sum_clamp=rule.sum_clamp if rule.sum_clamp is not None else DEFAULT_SUM_CLAMP,
        min_population=rule.min_population or 0,
        differencing=rule.differencing,
        perturbation=rule.perturbation,
        reciprocity=rule.reciprocity,
        caveat=rule.caveat or policy_caveat,
        detail=rule.detail,
        exclude_categories=rule.exclude_categories,
        exclude_own_nationals=rule.exclude_own_nationals,
        alert_categories=rule.categories,
        alert_fields=rule.fields,
    )
    return constraints, charges


def over_limit(charge: Charge, used: int) -> str | None:
    """The refusal code if charging would pass the limit, else None."""
    if used + charge.amount <= charge.limit:
        return None
    return "budget_exhausted" if charge.kind == "budget" else "rate_limited"


def describe_usage(charge: Charge, used: int) -> str:
    if charge.kind == "budget":
        return (
            f"budget: {used / MICRO:g} of {charge.limit / MICRO:g} epsilon used in "
            f"{charge.window}, this query needs {charge.amount / MICRO:g}"
        )
    return (
        f"rate: {used} of {charge.limit} used in {charge.window}, this query counts {charge.amount}"
    )


def decide(
    policy: Policy,
    requester: Member,
    query: QueryDescription,
    *,
    now_ms: int,
    usage: Usage | None = None,
) -> Decision:
    """Decide query for requester under policy at now_ms (usage: already-used amounts)."""
    version = policy.version
    if query.query_type not in QUERY_TYPES:
        return Decision(
            allowed=False,
            reason="unknown_query_type",
            rule_id=None,
            explanation=f"{query.query_type} is not a query type the policy engine knows",
            policy_version=version,
        )
    day = utc_day(now_ms)
    trace: list[RuleTrace] = []
    refusal: tuple[Rule, str, str] | None = None
    for rule in policy.rules:
        miss = _scope_miss(rule, requester, query, day)
        if miss:
            trace.append(RuleTrace(rule.id, rule.line, "skipped", miss))
            continue
        unmet = _unmet(rule, query)
        if unmet is not None:
            trace.append(RuleTrace(rule.id, rule.line, "refuses", unmet[1]))
            if refusal is None:
                refusal = (rule, *unmet)
            continue
        constraints, charges = _grant(rule, query, now_ms, policy.caveat)
        for charge in charges:
            used = usage(requester.member_id, charge) if usage is not None else 0
            code = over_limit(charge, used)
            if code is not None:
                why = describe_usage(charge, used)
                trace.append(RuleTrace(rule.id, rule.line, "decides", f"refuses: {why}"))
                return Decision(
                    allowed=False,
                    reason=code,
                    rule_id=rule.id,
                    explanation=f"rule '{rule.id}' applies but its limit is reached ({why})",
                    policy_version=version,
                    trace=tuple(trace),
                )
        trace.append(RuleTrace(rule.id, rule.line, "decides", "grants"))
        return Decision(
            allowed=True,
            reason="ok",
            rule_id=rule.id,
            explanation=f"rule '{rule.id}' (line {rule.line}) grants this query",
            policy_version=version,
            constraints=constraints,
            charges=tuple(charges),
            trace=tuple(trace),
        )
    if refusal is not None:
        rule, code, why = refusal
        # A refused probe still counts against the rule's rate limit, so a requester
        # cannot map the policy with unlimited free refusals.
        _, charges = _grant(rule, query, now_ms)
        return Decision(
            allowed=False,
            reason=code,
            rule_id=rule.id,
            explanation=f"rule '{rule.id}' (line {rule.line}) applies but {why}",
            policy_version=version,
            charges=tuple(c for c in charges if c.kind == "rate"),
            trace=tuple(trace),
        )
    what = query.query_type + (f" on {query.dataset}" if query.dataset else "")
    return Decision(
        allowed=False,
        reason=NOT_AUTHORIZED,
        rule_id=None,
        explanation=f"no rule grants {what} to {requester.member_id} (default deny)",
        policy_version=version,
        trace=tuple(trace),
    )
