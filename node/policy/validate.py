"""Checking a policy against the network: directory members, dictionary datasets,
and rules that can never decide or that disagree with each other.

Errors stop a policy from being applied; warnings are shown and allowed.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Callable
from dataclasses import dataclass, replace

from rcf.node.aggregate.query import query_dimension
from rcf.node.policy.loader import Issue, Loaded, parse_policy, requester_problem
from rcf.node.policy.model import (
    AGGREGATE,
    ALERT_SEVERITIES,
    ALERTS,
    DATASET_KIND,
    IDENTITY_CHECK,
    Policy,
    Rule,
)
from rcf.trust.dictionary import DataDictionary
from rcf.trust.directory import Directory

Report = Callable[[tuple[str | int, ...], str, str], None]


@dataclass(frozen=True)
class Context:
    """What a policy is checked against. None: that check is skipped."""

    directory: Directory | None = None
    dictionary: DataDictionary | None = None
    member_id: str = ""  # the node the policy is for
    today: dt.date | None = None


def _close(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"known: {', '.join(choices)}" if len(choices) <= 12 else ""


def check_policy(text: str, filename: str, context: Context) -> Loaded:
    """Parse text and check it in context; issues are sorted by line."""
    loaded = parse_policy(text, filename)
    policy = loaded.partial
    if policy is None:
        return loaded  # not even TOML
    issues = list(loaded.issues)
    smap = loaded.source_map

    def err(path: tuple[str | int, ...], message: str, hint: str = "") -> None:
        issues.append(Issue("error", filename, smap.line(*path), message, hint))

    def warn(path: tuple[str | int, ...], message: str, hint: str = "") -> None:
        issues.append(Issue("warning", filename, smap.line(*path), message, hint))

    directory, dictionary = context.directory, context.dictionary
    if policy.member and context.member_id and policy.member != context.member_id:
        err(
            ("policy", "member"),
            f"this policy is for {policy.member}, but this node is {context.member_id}.",
            "apply each member's policy on its own node",
        )
    if directory is not None:
        known = [m.member_id for m in directory.members]
        if policy.member and directory.member(policy.member) is None:
            err(
                ("policy", "member"),
                f"member '{policy.member}' is not in the directory.",
                _close(policy.member, known),
            )
        groups = {g for m in directory.members for g in m.groups}
        roles = {r for m in directory.members for r in m.roles}
    for index, rule in enumerate(policy.rules):
        path: tuple[str | int, ...] = ("rule", _index_of(loaded, rule.id, index))
        if directory is not None:
            for entry in rule.requesters:
                kind, sep, name = entry.partition(":")
                if entry == "*" or requester_problem(entry):
                    continue  # malformed entries are reported by the loader
                if not sep:
                    if directory.member(entry) is None:
                        err(
                            (*path, "requesters"),
                            f"rule '{rule.id}': member '{entry}' is not in the network directory.",
                            _close(entry, known) or "check the member id with the hub admin",
                        )
                elif kind == "group" and name not in groups:
                    warn(
                        (*path, "requesters"),
                        f"rule '{rule.id}': no member is in group '{name}' yet, so it grants "
                        "nobody for now.",
                        _close(name, sorted(groups)),
                    )
                elif kind == "role" and name not in roles:
                    warn(
                        (*path, "requesters"),
                        f"rule '{rule.id}': no member has role '{name}' yet, so it grants "
                        "nobody for now.",
                        _close(name, sorted(roles)),
                    )
        if dictionary is not None and rule.query in DATASET_KIND:
            _check_datasets(rule, path, dictionary, err)
        if (rule.exclude_categories or rule.exclude_own_nationals) and (
            "persons" not in rule.datasets
        ):
            key = "exclude_categories" if rule.exclude_categories else "exclude_own_nationals"
            warn(
                (*path, key),
                f"rule '{rule.id}' excludes persons from hits but does not cover the persons "
                "dataset, so the exclusion has no effect.",
                'add "persons" to datasets, or remove the exclusion',
            )
        if dictionary is not None and rule.issuing_states:
            _check_issuing_states(rule, path, dictionary, err)
        if context.today and rule.valid_until and rule.valid_until < context.today:
            warn(
                (*path, "valid_until"),
                f"rule '{rule.id}' expired on {rule.valid_until}; it grants nothing.",
            )
    if dictionary is not None:
        # Rules the loader could not read whole (a misspelt query type, say) still name
        # datasets and dimensions; report those errors in this same run too.
        read = {r.id for r in policy.rules}
        raw_rules = loaded.data.get("rule", [])
        for index, raw in enumerate(raw_rules if isinstance(raw_rules, list) else []):
            if isinstance(raw, dict) and raw.get("id") not in read:
                _check_raw_datasets(raw, ("rule", index), dictionary, err)
    # Overlaps are judged on a policy without errors only; with errors they mislead.
    for later, earlier, how in overlaps(policy, directory) if loaded.policy else []:
        path = ("rule", _index_of(loaded, later.id, 0))
        if how == "shadowed":
            warn(
                path,
                f"rule '{later.id}' is shadowed by rule '{earlier.id}' (line "
                f"{earlier.line}): that earlier rule grants everything this one does, so this "
                "one never decides.",
                "remove it, or move it above and narrow it",
            )
        else:
            warn(
                path,
                f"rules '{earlier.id}' (line {earlier.line}) and '{later.id}' both grant "
                f"{how}; where both apply the earlier one decides.",
                "give each requester one rule per query and dataset, or make them agree",
            )
    if not policy.rules and loaded.policy is not None:
        issues.append(
            Issue(
                "warning",
                filename,
                1,
                "THIS POLICY HAS NO RULES: the node will refuse every query, "
                "including Ping, from every member.",
                'add at least: [[rule]] id = "ping" requesters = ["*"] query = "Ping"',
            )
        )
    issues.sort(key=lambda i: (i.line, i.severity))
    if any(i.severity == "error" for i in issues):
        return replace(loaded, policy=None, issues=tuple(issues))
    return replace(loaded, issues=tuple(issues))


def _index_of(loaded: Loaded, rule_id: str, default: int) -> int:
    rules = loaded.data.get("rule", [])
    for i, raw in enumerate(rules if isinstance(rules, list) else []):
        if isinstance(raw, dict) and raw.get("id") == rule_id:
            return i
    return default


def _check_datasets(
    rule: Rule, path: tuple[str | int, ...], dictionary: DataDictionary, report: Report
) -> None:
    names = sorted(dictionary.datasets)
    want = DATASET_KIND[rule.query]
    for name in rule.datasets:
        ds = dictionary.dataset(name)
        if ds is None:
            report(
                (*path, "datasets"),
                f"rule '{rule.id}': dataset '{name}' is not in the data dictionary "
                f"(version {dictionary.version}).",
                _close(name, names),
            )
            continue
        if ds.kind != want:
            fits = [n for n, d in dictionary.datasets.items() if d.kind == want]
            report(
                (*path, "datasets"),
                f"rule '{rule.id}': dataset '{name}' holds {ds.kind} data; {rule.query} "
                f"rules need {want} datasets.",
                f"{want} datasets: {', '.join(fits)}",
            )
            continue
        if rule.query == AGGREGATE:
            dims = [d.name for d in ds.dimensions]
            for key, values in (("group_by", rule.group_by), ("filters", rule.filters)):
                for dim in values:
                    if query_dimension(ds, dim) is None:
                        report(
                            (*path, key),
                            f"rule '{rule.id}': dataset '{name}' has no dimension '{dim}'.",
                            _close(dim, dims),
                        )
            for measure in rule.measures or ():
                if measure not in ds.measures:
                    report(
                        (*path, "measures"),
                        f"rule '{rule.id}': dataset '{name}' has no measure '{measure}'.",
                        f"its measures: {', '.join(ds.measures)}",
                    )


def _check_raw_datasets(
    raw: dict[str, object], path: tuple[str | int, ...], dictionary: DataDictionary, report: Report
) -> None:
    """Datasets, dimensions and measures of a rule whose query type is unknown."""
    rule_id = str(raw.get("id", f"#{int(path[-1]) + 1}"))

    def names(key: str) -> list[str]:
        value = raw.get(key)
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

    known = sorted(dictionary.datasets)
    for name in names("datasets"):
        ds = dictionary.dataset(name)
        if ds is None:
            report(
                (*path, "datasets"),
                f"rule '{rule_id}': dataset '{name}' is not in the data dictionary "
                f"(version {dictionary.version}).",
                _close(name, known),
            )
            continue
        dims = [d.name for d in ds.dimensions]
        for key in ("group_by", "filters"):
            for dim in names(key):
                if query_dimension(ds, dim) is None:
                    report(
                        (*path, key),
                        f"rule '{rule_id}': dataset '{name}' has no dimension '{dim}'.",
                        _close(dim, dims),
                    )
        for measure in names("measures"):
            if measure not in ds.measures:
                report(
                    (*path, "measures"),
                    f"rule '{rule_id}': dataset '{name}' has no measure '{measure}'.",
                    f"its measures: {', '.join(ds.measures)}",
                )


# -- rules that overlap ----------------------------------------------------------


def _covers(outer: Rule, inner: Rule, directory: Directory | None) -> bool:
    """Whether outer names everyone inner names (by the directory as it is now)."""
    if "*" in outer.requesters or set(inner.requesters) <= set(outer.requesters):
        return True
    if directory is None or "*" in inner.requesters:
        return False
    named = _members(inner, directory)
    return bool(named) and named <= _members(outer, directory)


def _members(rule: Rule, directory: Directory | None) -> set[str]:
    if directory is None:
        return set()
    return {m.member_id for m in directory.members if rule.names(m)}


def _validity_covers(outer: Rule, inner: Rule) -> bool:
    lo_ok = outer.valid_from is None or (
        inner.valid_from is not None and outer.valid_from <= inner.valid_from
    )
    hi_ok = outer.valid_until is None or (
        inner.valid_until is not None and inner.valid_until <= outer.valid_until
    )
    return lo_ok and hi_ok


def _validity_overlaps(a: Rule, b: Rule) -> bool:
    lo = max((d for d in (a.valid_from, b.valid_from) if d), default=None)
    hi = min((d for d in (a.valid_until, b.valid_until) if d), default=None)
    return lo is None or hi is None or lo <= hi


def _accepts_all_of(a: Rule, b: Rule) -> bool:
    """Whether every query b accepts, a accepts too (a's checks are no stricter)."""
    if a.purposes is not None and (b.purposes is None or not set(b.purposes) <= set(a.purposes)):
        return False
    if b.query == AGGREGATE:
        if not (set(b.group_by) <= set(a.group_by) and set(b.filters) <= set(a.filters)):
            return False
        if a.measures is not None and (
            b.measures is None or not set(b.measures) <= set(a.measures)
        ):
            return False
        if (a.epsilon or 0) < (b.epsilon or 0):
            return False
        if a.max_group_by is not None and (
            b.max_group_by is None or b.max_group_by > a.max_group_by
        ):
            return False
        if a.reciprocity and not b.reciprocity:
            return False
    if (
        b.query == IDENTITY_CHECK
        and a.max_batch is not None
        and (b.max_batch is None or b.max_batch > a.max_batch)
    ):
        return False
    if b.query != ALERTS:
        return True
    if not set(b.categories) <= set(a.categories):
        return False
    if a.issuing_states is not None and (
        b.issuing_states is None or not set(b.issuing_states) <= set(a.issuing_states)
    ):
        return False
    rank = {s: i for i, s in enumerate(ALERT_SEVERITIES)}
    return rank.get(a.min_severity or "", -1) <= rank.get(b.min_severity or "", -1)


def _check_issuing_states(
    rule: Rule, path: tuple[str | int, ...], dictionary: DataDictionary, err: Report
) -> None:
    """An alert rule's issuing_states must be the dictionary's issuing-state codes."""
    fraud = dictionary.dataset("document_fraud_detections")
    dim = fraud.dimension("issuing_state") if fraud is not None else None
    if dim is None:
        return
    for code in rule.issuing_states or ():
        if code not in dim.codes:
            err(
                (*path, "issuing_states"),
                f"rule '{rule.id}': '{code}' is not an issuing-state code of the data dictionary.",
                _close(code, list(dim.codes)) or "use ISO 3166-1 alpha-3 codes such as THA",
            )


def _output_differences(a: Rule, b: Rule) -> list[str]:
    names = (
        "min_cell_size",
        "noise",
        "epsilon",
        "budget",
        "round_to",
        "delta",
        "sum_clamp",
        "min_population",
        "differencing",
        "perturbation",
        "caveat",
        "detail",
        "exclude_categories",
        "exclude_own_nationals",
        "fields",
        "issuing_states",
        "min_severity",
        "rate_limit",
    )
    return [n for n in names if getattr(a, n) != getattr(b, n)]


def _narrower(earlier: Rule, later: Rule, directory: Directory | None) -> bool:
    """Whether earlier names strictly fewer requesters than later."""
    if "*" in later.requesters and "*" not in earlier.requesters:
        return True
    if set(earlier.requesters) < set(later.requesters):
        return True
    if directory is None:
        return False
    return _members(earlier, directory) < _members(later, directory)


def _whom(earlier: Rule, later: Rule, directory: Directory | None) -> list[str]:
    """Who both rules name: member ids if the directory is known, else requester entries."""
    if directory is not None:
        return sorted(_members(earlier, directory) & _members(later, directory))
    if "*" in earlier.requesters:
        return list(later.requesters)
    if "*" in later.requesters:
        return list(earlier.requesters)
    return sorted(set(earlier.requesters) & set(later.requesters))


def overlaps(policy: Policy, directory: Directory | None) -> list[tuple[Rule, Rule, str]]:
    """(later, earlier, 'shadowed' or a description of the contradiction) pairs."""
    found: list[tuple[Rule, Rule, str]] = []
    for j, later in enumerate(policy.rules):
        for earlier in policy.rules[:j]:
            if earlier.query != later.query:
                continue
            if (
                _covers(earlier, later, directory)
                and set(later.datasets) <= set(earlier.datasets)
                and _validity_covers(earlier, later)
                and _accepts_all_of(earlier, later)
            ):
                found.append((later, earlier, "shadowed"))
                break
            if _narrower(earlier, later, directory):
                continue  # a specific grant above a general one: the usual, intended order
            whom = _whom(earlier, later, directory)
            datasets = sorted(set(earlier.datasets) & set(later.datasets))
            if not whom or (later.query in DATASET_KIND and not datasets):
                continue
            if not _validity_overlaps(earlier, later):
                continue
            if (
                earlier.purposes is not None
                and later.purposes is not None
                and not set(earlier.purposes) & set(later.purposes)
            ):
                continue  # no query can meet both: they share no purpose
            diffs = _output_differences(earlier, later)
            if diffs:
                on = f" on {', '.join(datasets)}" if datasets else ""
                found.append(
                    (
                        later,
                        earlier,
                        f"{later.query}{on} to {', '.join(whom)} with different {', '.join(diffs)}",
                    )
                )
    return found
