"""What changes between two policies: rule by rule, and for whom.

The "for whom" view asks, for every member and every (query type, dataset),
which rule would apply today and on what terms, under the old policy and the
new one, and lists where the answers differ.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

from rcf.node.policy.model import DATASET_KIND, QUERY_TYPES, Policy, Rule
from rcf.trust.directory import Directory, Member, MemberStatus

_COMPARED = [f.name for f in fields(Rule) if f.name not in ("id", "line")]


def terms(rule: Rule) -> str:
    """A rule's grant in one line, for people."""
    parts: list[str] = []
    if rule.purposes is not None:
        parts.append(f"purposes {','.join(rule.purposes)}")
    if rule.query in DATASET_KIND and rule.group_by:
        parts.append(f"group-by {','.join(rule.group_by)}")
    if rule.filters:
        parts.append(f"filters {','.join(rule.filters)}")
    if rule.measures is not None:
        parts.append(f"measures {','.join(rule.measures)}")
    if rule.min_cell_size is not None:
        parts.append(f"min cell {rule.min_cell_size}")
    if rule.noise != "none":
        parts.append(f"{rule.noise} noise eps {rule.epsilon:g}")
    if rule.budget is not None:
        parts.append(f"budget {rule.budget.epsilon:g}/{rule.budget.per}")
    if rule.round_to is not None:
        parts.append(f"round to {rule.round_to}")
    if rule.min_population is not None:
        parts.append(f"min population {rule.min_population}")
    if rule.max_group_by is not None:
        parts.append(f"group-by <= {rule.max_group_by}")
    if rule.query == "Aggregate" and rule.differencing != "refuse":
        parts.append(f"differencing {rule.differencing}")
    if rule.query == "Aggregate" and rule.perturbation != "cell_key":
        parts.append(f"perturbation {rule.perturbation}")
    if rule.reciprocity:
        parts.append("reciprocity")
    if rule.detail is not None:
        parts.append(rule.detail)
    if rule.max_batch is not None:
        parts.append(f"batch <= {rule.max_batch}")
    if rule.exclude_categories:
        parts.append(f"never hit {','.join(rule.exclude_categories)}")
    if rule.exclude_own_nationals:
        parts.append("own nationals: no hit")
    if rule.categories:
        parts.append(f"categories {','.join(rule.categories)}")
    if rule.fields:
        parts.append(f"fields {','.join(rule.fields)}")
    if rule.rate_limit is not None:
        parts.append(f"{rule.rate_limit.count}/{rule.rate_limit.per}")
    if rule.valid_from or rule.valid_until:
        parts.append(f"valid {rule.valid_from or '…'} to {rule.valid_until or '…'}")
    return "; ".join(parts) or "no constraints"


@dataclass(frozen=True)
class RuleChange:
    rule_id: str
    change: str  # added, removed, changed, moved
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccessChange:
    member: str
    query: str
    dataset: str
    before: str
    after: str


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "-" if value is None else str(value)


def rule_changes(old: Policy, new: Policy) -> list[RuleChange]:
    old_by_id = {r.id: r for r in old.rules}
    new_by_id = {r.id: r for r in new.rules}
    changes: list[RuleChange] = []
    for r in old.rules:
        if r.id not in new_by_id:
            changes.append(RuleChange(r.id, "removed", (terms(r),)))
    old_order = [r.id for r in old.rules if r.id in new_by_id]
    new_order = [r.id for r in new.rules if r.id in old_by_id]
    for r in new.rules:
        before = old_by_id.get(r.id)
        if before is None:
            changes.append(RuleChange(r.id, "added", (terms(r),)))
            continue
        details = tuple(
            f"{name}: {_show(getattr(before, name))} -> {_show(getattr(r, name))}"
            for name in _COMPARED
            if getattr(before, name) != getattr(r, name)
        )
        if details:
            changes.append(RuleChange(r.id, "changed", details))
        elif old_order.index(r.id) != new_order.index(r.id):
            changes.append(RuleChange(r.id, "moved", ("its place in the order changed",)))
    return changes


def _grant(policy: Policy, member: Member, query: str, dataset: str, day: dt.date) -> str:
    for rule in policy.rules:
        if (
            rule.query == query
            and rule.names(member)
            and (not dataset or dataset in rule.datasets)
            and rule.valid_on(day)
        ):
            return f"{rule.id}: {terms(rule)}"
    return "denied"


def access_changes(
    old: Policy, new: Policy, directory: Directory | None, *, today: dt.date
) -> list[AccessChange]:
    """Per member, query type and dataset: the terms before and after, where they differ."""
    members = {m.member_id: m for m in (directory.members if directory else ())}
    for policy in (old, new):
        for rule in policy.rules:
            for entry in rule.requesters:
                if entry != "*" and ":" not in entry and entry not in members:
                    members[entry] = Member(entry, entry, MemberStatus.ACTIVE)
    scopes: set[tuple[str, str]] = set()
    for policy in (old, new):
        for rule in policy.rules:
            if rule.query in DATASET_KIND:
                scopes.update((rule.query, d) for d in rule.datasets)
            else:
                scopes.add((rule.query, ""))
    order = {q: i for i, q in enumerate(QUERY_TYPES)}
    out: list[AccessChange] = []
    for member_id in sorted(members):
        member = members[member_id]
        for query, dataset in sorted(scopes, key=lambda s: (order.get(s[0], 99), s[1])):
            before = _grant(old, member, query, dataset, today)
            after = _grant(new, member, query, dataset, today)
            if before != after:
                out.append(AccessChange(member_id, query, dataset, before, after))
    return out
