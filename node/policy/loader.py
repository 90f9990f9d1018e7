"""Reading a TOML policy file into a Policy, with every problem located.

This layer checks the file on its own: syntax, known keys, types, ranges and
the rules' internal consistency. What needs the directory or the data
dictionary (members, datasets, dimensions) is checked in ``validate``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import math
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from rcf.node.policy.model import (
    AGGREGATE,
    ALERT_CATEGORIES,
    ALERT_FIELDS,
    ALERT_SEVERITIES,
    ALERTS,
    BUDGET_PERIODS,
    DEFAULT_DELTA,
    DETAILS,
    DIFFERENCING_MODES,
    IDENTITY_CHECK,
    MAX_CAVEAT_CHARS,
    MAX_DELTA,
    MICRO,
    NOISE_MECHANISMS,
    PERSON_CATEGORIES,
    PERTURBATIONS,
    PING,
    QUERY_TYPES,
    RATE_PERIODS,
    Budget,
    Policy,
    RateLimit,
    Rule,
)
from rcf.node.policy.sourcemap import SourceMap, build_source_map
from rcf.trust.errors import ConfigError
from rcf.trust.pki import MEMBER_ID_RE

TOP_KEYS = ("policy", "rule")
POLICY_KEYS = ("member", "description", "caveat", "disclose_reasons_to")
COMMON_KEYS = (
    "id",
    "requesters",
    "query",
    "description",
    "purposes",
    "rate_limit",
    "valid_from",
    "valid_until",
)
KEYS_BY_QUERY: dict[str, tuple[str, ...]] = {
    PING: (),
    AGGREGATE: (
        "datasets",
        "group_by",
        "filters",
        "measures",
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
        "max_group_by",
        "reciprocity",
        "caveat",
    ),
    IDENTITY_CHECK: (
        "datasets",
        "detail",
        "max_batch",
        "exclude_categories",
        "exclude_own_nationals",
    ),
    ALERTS: ("categories", "fields", "issuing_states", "min_severity"),
}
ALL_RULE_KEYS = sorted({*COMMON_KEYS, *(k for ks in KEYS_BY_QUERY.values() for k in ks)})
REQUIRED_BY_QUERY: dict[str, tuple[str, ...]] = {
    PING: (),
    AGGREGATE: ("datasets", "min_cell_size"),
    IDENTITY_CHECK: ("datasets", "detail"),
    ALERTS: ("categories", "fields"),
}
RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
LABEL = re.compile(r"^[a-z0-9][a-z0-9\-]{0,63}$")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)\s*$")
# An aggregate query groups by at most this many dimensions (node.aggregate.query).
MAX_GROUP_BY = 3


@dataclass(frozen=True)
class Issue:
    """One problem in a policy file: where, what, and how to fix it."""

    severity: str  # "error" or "warning"
    file: str
    line: int
    message: str
    hint: str = ""

    def render(self) -> str:
        text = f"{self.file}:{self.line}: {self.severity}: {self.message}"
        return text + (f"\n    hint: {self.hint}" if self.hint else "")

    def as_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "hint": self.hint,
        }


class PolicyError(ConfigError):
    """A policy file has errors; ``issues`` lists every one."""

    default_reason = "bad_policy"

    def __init__(self, issues: list[Issue]):
        errors = [i for i in issues if i.severity == "error"]
        first = errors[0] if errors else issues[0]
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        super().__init__(f"{first.file}:{first.line}: {first.message}{more}")
        self.issues = issues


@dataclass(frozen=True)
class Loaded:
    """A parsed policy (None if it has errors), its source map and the issues found."""

    policy: Policy | None
    issues: tuple[Issue, ...]
    source_map: SourceMap
    data: dict[str, Any]
    # Every rule that could be read at all, errors or not, so that later checks
    # (directory, dictionary) report their errors in the same run.
    partial: Policy | None = None

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else f"known: {', '.join(choices)}"


def _kind(value: object) -> str:
    names = {
        bool: "true/false",
        int: "a whole number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
        dt.date: "a date",
        dt.datetime: "a date-time",
    }
    return names.get(type(value), type(value).__name__)


class _Reader:
    """Checks one file's parsed data, collecting issues with their lines."""

    def __init__(self, filename: str, smap: SourceMap):
        self.filename = filename
        self.smap = smap
        self.issues: list[Issue] = []

    def error(self, path: tuple[str | int, ...], message: str, hint: str = "") -> None:
        self.issues.append(Issue("error", self.filename, self.smap.line(*path), message, hint))

    # -- typed getters: each returns None (and records an error) on a bad value --

    def string(self, table: dict[str, Any], path: tuple[str | int, ...], key: str) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.error(
                (*path, key), f"'{key}' must be a string, not {_kind(value)}.", f'write {key} = "…"'
            )
            return None
        return value

    def strings(
        self,
        table: dict[str, Any],
        path: tuple[str | int, ...],
        key: str,
        *,
        allowed: tuple[str, ...] | None = None,
        nonempty: bool = True,
    ) -> tuple[str, ...] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(
                (*path, key),
                f"'{key}' must be a list of strings, not {_kind(value)}.",
                f'write {key} = ["…", "…"]',
            )
            return None
        if nonempty and not value:
            self.error(
                (*path, key), f"'{key}' is an empty list.", f"list at least one, or remove '{key}'"
            )
            return None
        if len(set(value)) != len(value):
            dup = next(v for v in value if value.count(v) > 1)
            self.error((*path, key), f"'{key}' lists '{dup}' twice.")
            return None
        if allowed is not None:
            for v in value:
                if v not in allowed:
                    self.error(
                        (*path, key),
                        f"'{v}' is not a valid entry of '{key}'.",
                        _suggest(v, allowed),
                    )
                    return None
        return tuple(value)

    def positive_int(
        self, table: dict[str, Any], path: tuple[str | int, ...], key: str
    ) -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error((*path, key), f"'{key}' must be a whole number, not {_kind(value)}.")
            return None
        if value <= 0:
            self.error(
                (*path, key),
                f"'{key}' must be at least 1, not {value}.",
                "a zero or negative threshold would disable the protection",
            )
            return None
        return value

    def epsilon(self, table: dict[str, Any], path: tuple[str | int, ...], key: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error((*path, key), f"'{key}' must be a number, not {_kind(value)}.")
            return None
        number = float(value)
        if not math.isfinite(number) or number * MICRO < 1:
            self.error(
                (*path, key),
                f"'{key}' must be a finite number of at least 0.000001, not {value}.",
                "epsilon 0 would answer nothing and infinity adds no noise at all; "
                "typical values are 0.1 to 1",
            )
            return None
        return number

    def boolean(self, table: dict[str, Any], path: tuple[str | int, ...], key: str) -> bool | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.error(
                (*path, key),
                f"'{key}' must be true or false, not {_kind(value)}.",
                f"write {key} = true (no quotes)",
            )
            return None
        return value

    def delta(self, table: dict[str, Any], path: tuple[str | int, ...], key: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error((*path, key), f"'{key}' must be a number, not {_kind(value)}.")
            return None
        number = float(value)
        if not (math.isfinite(number) and 0 < number <= MAX_DELTA):
            self.error(
                (*path, key),
                f"'{key}' must lie above 0 and at most {MAX_DELTA:g}, not {value}.",
                f"delta is the chance the guarantee fails; {DEFAULT_DELTA:g} is usual",
            )
            return None
        return number

    def caveat(self, table: dict[str, Any], path: tuple[str | int, ...], key: str) -> str | None:
        value = self.string(table, path, key)
        if value is None:
            return None
        if not value.strip() or len(value) > MAX_CAVEAT_CHARS or not value.isprintable():
            self.error(
                (*path, key),
                f"'{key}' must be 1 to {MAX_CAVEAT_CHARS} printable characters on one line.",
                'e.g. caveat = "RESTRICTED - Bali Process members only"',
            )
            return None
        return value

    def choice(
        self, table: dict[str, Any], path: tuple[str | int, ...], key: str, options: tuple[str, ...]
    ) -> str | None:
        value = self.string(table, path, key)
        if value is not None and value not in options:
            self.error((*path, key), f"'{value}' is not a valid {key}.", _suggest(value, options))
            return None
        return value

    def date(self, table: dict[str, Any], path: tuple[str | int, ...], key: str) -> dt.date | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            self.error(
                (*path, key),
                f"'{key}' must be a date, not {_kind(value)}.",
                f"write a TOML date without quotes: {key} = 2026-01-31",
            )
            return None
        return value

    def subtable(
        self,
        table: dict[str, Any],
        path: tuple[str | int, ...],
        key: str,
        keys: tuple[str, ...],
        example: str,
    ) -> dict[str, Any] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(
                (*path, key),
                f"'{key}' must be a table, not {_kind(value)}.",
                f"write {key} = {example}",
            )
            return None
        ok = True
        for k in value:
            if k not in keys:
                self.error((*path, key, k), f"unknown key '{k}' in '{key}'.", _suggest(k, keys))
                ok = False
        for k in keys:
            if k not in value:
                self.error((*path, key), f"'{key}' needs '{k}'.", f"write {key} = {example}")
                ok = False
        return value if ok else None


def parse_policy(text: str, filename: str = "<policy>") -> Loaded:
    """Parse and check a policy file's text; never raises for bad content."""
    smap = build_source_map(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = _TOML_POSITION.search(message)
        line = int(m.group(1)) if m else max(1, len(text.splitlines()))
        message = _TOML_AT_END.sub(" at the end of the file", _TOML_POSITION.sub("", message))
        where = f" (column {m.group(2)})" if m else ""
        issue = Issue(
            "error",
            filename,
            line,
            f"not valid TOML: {message}{where}.",
            "check quotes, brackets and '=' on this line and the one before",
        )
        return Loaded(None, (issue,), smap, {})
    reader = _Reader(filename, smap)
    for key in data:
        if key not in TOP_KEYS:
            reader.error(
                (key,),
                f"unknown key '{key}' at the top level.",
                f"{_suggest(key, TOP_KEYS)} (rules go under [[rule]])",
            )
    member = description = ""
    head = data.get("policy", {})
    if not isinstance(head, dict):
        reader.error(("policy",), "'policy' must be a table: [policy].")
        head = {}
    for key in head:
        if key not in POLICY_KEYS:
            reader.error(
                ("policy", key), f"unknown key '{key}' in [policy].", _suggest(key, POLICY_KEYS)
            )
    member = reader.string(head, ("policy",), "member") or ""
    if member and not MEMBER_ID_RE.fullmatch(member):
        reader.error(
            ("policy", "member"),
            f"'{member}' is not a member id.",
            "member ids are upper-case codes such as TH or RSO",
        )
    description = reader.string(head, ("policy",), "description") or ""
    disclose = reader.strings(head, ("policy",), "disclose_reasons_to") or ()
    for entry in disclose:
        problem = requester_problem(entry)
        if problem:
            reader.error(
                ("policy", "disclose_reasons_to"), f"'{entry}' is not a requester.", problem
            )
    caveat = reader.caveat(head, ("policy",), "caveat") or ""
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        reader.error(("rule",), "'rule' must be an array of tables: write each as [[rule]].")
        raw_rules = []
    rules: list[Rule] = []
    seen_ids: dict[str, int] = {}
    for index, raw in enumerate(raw_rules):
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(rule_id, str) and rule_id in seen_ids:
            reader.error(
                ("rule", index, "id"),
                f"rule id '{rule_id}' is used twice (first at line {seen_ids[rule_id]}).",
                "every rule needs its own id",
            )
            continue
        if isinstance(rule_id, str):
            seen_ids[rule_id] = smap.line("rule", index)
        rule = _read_rule(reader, index, raw)
        if rule is not None:
            rules.append(rule)
    issues = tuple(sorted(reader.issues, key=lambda i: i.line))
    policy = Policy(
        rules=tuple(rules),
        member=member,
        description=description,
        disclose_reasons_to=tuple(disclose),
        caveat=caveat,
        source_sha256=hashlib.sha256(text.encode()).hexdigest(),
    )
    if any(i.severity == "error" for i in issues):
        return Loaded(None, issues, smap, data, partial=policy)
    return Loaded(policy, issues, smap, data, partial=policy)


def _read_rule(reader: _Reader, index: int, raw: object) -> Rule | None:
    path: tuple[str | int, ...] = ("rule", index)
    line = reader.smap.line(*path)
    if not isinstance(raw, dict):
        reader.error(path, "each rule must be a table: [[rule]].")
        return None
    rule_id = reader.string(raw, path, "id")
    if rule_id is None:
        if "id" not in raw:
            reader.error(
                path,
                "this rule has no 'id'.",
                'give every rule a short unique id: id = "sg-aggregates"',
            )
        return None
    if not RULE_ID.match(rule_id):
        reader.error(
            (*path, "id"),
            f"rule id '{rule_id}' is not valid.",
            "use lower-case letters, digits, '-' and '_' (at most 64)",
        )
    query = reader.string(raw, path, "query")
    if query is None:
        if "query" not in raw:
            reader.error(
                path,
                f"rule '{rule_id}' has no 'query'.",
                f"name the query type: {', '.join(QUERY_TYPES)}",
            )
        return None
    if query not in QUERY_TYPES:
        reader.error(
            (*path, "query"), f"'{query}' is not a query type.", _suggest(query, QUERY_TYPES)
        )
        return None
    allowed_keys = (*COMMON_KEYS, *KEYS_BY_QUERY[query])
    for key in raw:
        if key in allowed_keys:
            continue
        if key in ALL_RULE_KEYS:
            owners = [q for q, ks in KEYS_BY_QUERY.items() if key in ks]
            reader.error(
                (*path, key),
                f"'{key}' does not apply to {query} rules.",
                f"it belongs to {' and '.join(owners)} rules",
            )
        else:
            reader.error(
                (*path, key),
                f"unknown key '{key}' in rule '{rule_id}'.",
                _suggest(key, allowed_keys),
            )
    for key in ("requesters", *REQUIRED_BY_QUERY[query]):
        if key not in raw:
            reader.error(path, f"rule '{rule_id}' ({query}) needs '{key}'.", _HINTS[key])
    requesters = reader.strings(raw, path, "requesters")
    for entry in requesters or ():
        problem = requester_problem(entry)
        if problem:
            reader.error(
                (*path, "requesters"),
                f"'{entry}' is not a valid requester: {problem}.",
                "write a member id (TH), group:NAME, role:NAME or *",
            )
    noise = reader.choice(raw, path, "noise", NOISE_MECHANISMS) or "none"
    epsilon = reader.epsilon(raw, path, "epsilon")
    budget_raw = reader.subtable(
        raw, path, "budget", ("epsilon", "per"), '{ epsilon = 10.0, per = "month" }'
    )
    budget = None
    if budget_raw is not None:
        b_eps = reader.epsilon(budget_raw, (*path, "budget"), "epsilon")
        b_per = reader.choice(budget_raw, (*path, "budget"), "per", BUDGET_PERIODS)
        if b_eps is not None and b_per is not None:
            budget = Budget(b_eps, b_per)
    rate_raw = reader.subtable(
        raw, path, "rate_limit", ("count", "per"), '{ count = 100, per = "day" }'
    )
    rate = None
    if rate_raw is not None:
        r_count = reader.positive_int(rate_raw, (*path, "rate_limit"), "count")
        r_per = reader.choice(rate_raw, (*path, "rate_limit"), "per", RATE_PERIODS)
        if r_count is not None and r_per is not None:
            rate = RateLimit(r_count, r_per)
    if noise != "none":
        for key, value in (("epsilon", epsilon), ("budget", budget_raw)):
            if value is None and key not in raw:
                reader.error(
                    (*path, "noise"),
                    f"rule '{rule_id}' adds {noise} noise but sets no '{key}'.",
                    _HINTS[key],
                )
    else:
        for key, parsed in (("epsilon", epsilon), ("budget", budget_raw)):
            if parsed is not None:
                reader.error(
                    (*path, key),
                    f"'{key}' has no effect without noise.",
                    'set noise = "geometric" or "discrete_gaussian", or remove it',
                )
    if epsilon is not None and budget is not None and budget.epsilon < epsilon:
        reader.error(
            (*path, "budget"),
            f"the budget ({budget.epsilon}) is smaller than one query's epsilon "
            f"({epsilon}), so this rule could never grant.",
            "raise the budget or lower epsilon",
        )
    delta = reader.delta(raw, path, "delta")
    if delta is not None and noise != "discrete_gaussian":
        reader.error(
            (*path, "delta"),
            "'delta' applies to discrete_gaussian noise only.",
            'set noise = "discrete_gaussian", or remove it',
        )
    sum_clamp = reader.positive_int(raw, path, "sum_clamp")
    if sum_clamp is not None and noise == "none":
        reader.error(
            (*path, "sum_clamp"),
            "'sum_clamp' has no effect without noise.",
            "it bounds one record's share of a noised sum; remove it",
        )
    max_group_by = reader.positive_int(raw, path, "max_group_by")
    if max_group_by is not None and max_group_by > MAX_GROUP_BY:
        reader.error(
            (*path, "max_group_by"),
            f"'max_group_by' must be at most {MAX_GROUP_BY}, not {max_group_by}.",
            f"no aggregate query groups by more than {MAX_GROUP_BY} dimensions",
        )
        max_group_by = None
    valid_from = reader.date(raw, path, "valid_from")
    valid_until = reader.date(raw, path, "valid_until")
    if valid_from and valid_until and valid_until < valid_from:
        reader.error(
            (*path, "valid_until"),
            f"valid_until ({valid_until}) is before valid_from ({valid_from}).",
        )
    rule = Rule(
        id=rule_id,
        requesters=requesters or (),
        query=query,
        line=line,
        description=reader.string(raw, path, "description") or "",
        datasets=reader.strings(raw, path, "datasets") or (),
        purposes=reader.strings(raw, path, "purposes"),
        group_by=reader.strings(raw, path, "group_by", nonempty=False) or (),
        filters=reader.strings(raw, path, "filters", nonempty=False) or (),
        measures=reader.strings(raw, path, "measures"),
        min_cell_size=reader.positive_int(raw, path, "min_cell_size"),
        noise=noise,
        epsilon=epsilon,
        budget=budget,
        round_to=reader.positive_int(raw, path, "round_to"),
        delta=delta,
        sum_clamp=sum_clamp,
        min_population=reader.positive_int(raw, path, "min_population"),
        differencing=reader.choice(raw, path, "differencing", DIFFERENCING_MODES) or "refuse",
        perturbation=reader.choice(raw, path, "perturbation", PERTURBATIONS) or "cell_key",
        max_group_by=max_group_by,
        reciprocity=bool(reader.boolean(raw, path, "reciprocity")),
        caveat=reader.caveat(raw, path, "caveat") or "",
        detail=reader.choice(raw, path, "detail", DETAILS),
        max_batch=reader.positive_int(raw, path, "max_batch"),
        exclude_categories=reader.strings(
            raw, path, "exclude_categories", allowed=PERSON_CATEGORIES, nonempty=False
        )
        or (),
        exclude_own_nationals=reader.boolean(raw, path, "exclude_own_nationals") or False,
        categories=reader.strings(raw, path, "categories", allowed=ALERT_CATEGORIES) or (),
        fields=reader.strings(raw, path, "fields", allowed=ALERT_FIELDS) or (),
        issuing_states=reader.strings(raw, path, "issuing_states"),
        min_severity=reader.choice(raw, path, "min_severity", ALERT_SEVERITIES),
        rate_limit=rate,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    return rule


def requester_problem(entry: str) -> str:
    if entry == "*":
        return ""
    kind, sep, name = entry.partition(":")
    if sep:
        if kind not in ("group", "role"):
            return f"'{kind}:' is neither 'group:' nor 'role:'"
        return (
            "" if LABEL.match(name) else "group and role names are lower-case, e.g. steering-group"
        )
    return "" if MEMBER_ID_RE.fullmatch(entry) else "member ids are upper-case codes such as TH"


_HINTS = {
    "requesters": 'say who: requesters = ["TH", "group:steering-group", "role:coordinator"]',
    "datasets": 'name the datasets: datasets = ["irregular_movements"]',
    "min_cell_size": "set the smallest count shown: min_cell_size = 5",
    "detail": 'choose detail = "hit_only" or "hit_with_reference"',
    "categories": f'list alert categories: categories = ["{ALERT_CATEGORIES[0]}", …]',
    "fields": f'list the alert fields shared: fields = ["{ALERT_FIELDS[0]}", …]',
    "epsilon": "set the privacy loss per query: epsilon = 0.5",
    "budget": 'set the budget per requester: budget = { epsilon = 10.0, per = "month" }',
}


def load_policy(text: str, filename: str = "<policy>") -> Policy:
    """The policy in text, or PolicyError listing every error."""
    loaded = parse_policy(text, filename)
    if loaded.policy is None:
        raise PolicyError(list(loaded.issues))
    return loaded.policy
