"""Typed values of the sharing-policy engine: rules, policies, queries, decisions.

A policy is a list of rules, default deny. A rule grants requesters one query
type (on named datasets) under constraints. Every value here is immutable, so a
compiled policy can be swapped atomically while requests are being decided.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from rcf.trust import dictionary
from rcf.trust.directory import Member

# Query types, named exactly as the Federation RPC (QuerySpec.query_type) names them.
PING = "Ping"
AGGREGATE = "Aggregate"
IDENTITY_CHECK = "IdentityCheck"
ALERTS = "Alerts"
QUERY_TYPES = (PING, AGGREGATE, IDENTITY_CHECK, ALERTS)
# Which dictionary dataset kind each data-bearing query type reads.
DATASET_KIND = {AGGREGATE: "aggregate", IDENTITY_CHECK: "identity"}

# geometric: the discrete Laplace mechanism (ε-DP); discrete_gaussian: (ε, δ)-DP.
NOISE_MECHANISMS = ("none", "geometric", "discrete_gaussian")
# What an Aggregate release does with a query whose population is within k of one the
# same requester asked before (see node.aggregate.disclosure).
DIFFERENCING_MODES = ("refuse", "flag", "off")
PERTURBATIONS = ("cell_key", "none")  # "cell_key": the published cell-key table; "none": exact
DEFAULT_DELTA = 1e-9  # δ of a discrete_gaussian rule that names none
MAX_DELTA = 1e-3  # a larger δ is not a privacy guarantee worth the name
DEFAULT_SUM_CLAMP = 100  # a noised measure sum counts at most this much of one record
MAX_CAVEAT_CHARS = 1000
DETAILS = ("hit_only", "hit_with_reference")
# Categories of the dictionary's persons dataset an IdentityCheck rule may exclude
# from hits (e.g. trafficking victims are never a "hit" for enforcement purposes).
PERSON_CATEGORIES = dictionary.PERSON_CATEGORIES
# Fraud types, as in the dictionary's document_fraud_detections.fraud_type codes.
ALERT_FRAUD_TYPES = (
    "counterfeit",
    "forged",
    "pseudo",
    "fraudulently_obtained_genuine",
    "impostor",
    "stolen_blank",
)
# Statuses of a genuine document that an alert may report instead of a fraud type.
ALERT_DOCUMENT_STATUSES = ("stolen", "lost", "revoked", "invalid")
# An alert's category is one fraud type or one document status.
ALERT_CATEGORIES = ALERT_FRAUD_TYPES + ALERT_DOCUMENT_STATUSES
# Ordered, lowest first: a rule's min_severity passes this level and those after it.
ALERT_SEVERITIES = ("low", "medium", "high", "critical")
# Fields of a document-fraud alert a rule may pass on; alert id, version and
# category always travel, since without them an alert cannot be applied.
ALERT_FIELDS = (
    "issuing_state",
    "document_type",
    "document_number",
    "series",
    "modus_operandi",
    "security_features",
    "detection_place",
    "detection_date",
    "valid_until",
    "ncp",
)
RATE_PERIODS = ("minute", "hour", "day", "week", "month")
BUDGET_PERIODS = ("day", "week", "month", "quarter", "year")
# Budgets are kept in integer micro-epsilon so repeated charges add up exactly.
MICRO = 1_000_000


def to_micro(epsilon: float) -> int:
    return round(epsilon * MICRO)


def names(entries: tuple[str, ...], requester: Member) -> bool:
    """Whether requester entries (member id, group:NAME, role:NAME, "*") name requester."""
    for entry in entries:
        if entry in ("*", requester.member_id):
            return True
        kind, _, name = entry.partition(":")
        if (kind == "group" and name in requester.groups) or (
            kind == "role" and name in requester.roles
        ):
            return True
    return False


@dataclass(frozen=True)
class RateLimit:
    count: int
    per: str


@dataclass(frozen=True)
class Budget:
    epsilon: float
    per: str


@dataclass(frozen=True)
class Rule:
    """One grant. Empty tuples mean "none allowed"; None means "not restricted"."""

    id: str
    requesters: tuple[str, ...]
    query: str
    line: int = 0
    description: str = ""
    datasets: tuple[str, ...] = ()
    purposes: tuple[str, ...] | None = None
    group_by: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    measures: tuple[str, ...] | None = None
    min_cell_size: int | None = None
    noise: str = "none"
    epsilon: float | None = None
    budget: Budget | None = None
    round_to: int | None = None
    delta: float | None = None
    sum_clamp: int | None = None
    min_population: int | None = None
    differencing: str = "refuse"
    perturbation: str = "cell_key"
    max_group_by: int | None = None
    reciprocity: bool = False
    caveat: str = ""
    detail: str | None = None
    max_batch: int | None = None
    exclude_categories: tuple[str, ...] = ()
    exclude_own_nationals: bool = False
    categories: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    issuing_states: tuple[str, ...] | None = None  # alerts: None = documents of any state
    min_severity: str | None = None  # alerts: None = every severity
    rate_limit: RateLimit | None = None
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None  # inclusive: the whole day, UTC

    def names(self, requester: Member) -> bool:
        """Whether this rule's requesters include requester."""
        return names(self.requesters, requester)

    def valid_on(self, day: dt.date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_until is None or day <= self.valid_until
        )


@dataclass(frozen=True)
class Policy:
    """A compiled policy: what the engine decides with. Immutable."""

    rules: tuple[Rule, ...]
    member: str = ""
    description: str = ""
    # Requesters (member, group:, role:, or "*") told the detailed refusal code
    # instead of only not_permitted / limit_reached.
    disclose_reasons_to: tuple[str, ...] = ()
    caveat: str = ""  # the handling caveat of every released table, unless a rule sets one
    version: int = 0  # the store's version number; 0 for a file not yet applied
    source_sha256: str = ""

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def discloses_reasons_to(self, requester: Member) -> bool:
        return names(self.disclose_reasons_to, requester)


@dataclass(frozen=True)
class QueryDescription:
    """What a request asks, as far as the policy cares; filled by each query type.

    ``filters`` names the dimensions filtered on (values do not matter to the
    policy); ``epsilon`` is what the requester asks for (None: the rule's);
    ``items`` counts identities in a batch check (1 otherwise).
    """

    query_type: str
    purpose: str = ""
    dataset: str = ""
    group_by: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    measure: str = ""
    epsilon: float | None = None
    items: int = 1
    alert_category: str = ""
    alert_issuing_state: str = ""
    alert_severity: str = ""


@dataclass(frozen=True)
class Constraints:
    """What the answering handler must apply for a granted query."""

    min_cell_size: int | None = None
    noise: str = "none"
    epsilon: float | None = None
    round_to: int | None = None
    delta: float = DEFAULT_DELTA
    sum_clamp: int = DEFAULT_SUM_CLAMP
    min_population: int = 0
    differencing: str = "refuse"
    perturbation: str = "cell_key"
    reciprocity: bool = False
    caveat: str = ""
    detail: str | None = None
    exclude_categories: tuple[str, ...] = ()
    exclude_own_nationals: bool = False
    alert_categories: tuple[str, ...] = ()
    alert_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Charge:
    """Usage a grant consumes: budget in micro-epsilon, or rate in items."""

    kind: str  # "budget" or "rate"
    scope: str  # dataset (budget) or "QueryType:dataset" (rate)
    window: str  # the period it counts in, e.g. "month:2026-11"
    amount: int
    limit: int


@dataclass(frozen=True)
class RuleTrace:
    """How one rule related to a query: for `rcf policy explain`."""

    rule_id: str
    line: int
    outcome: str  # decides, refuses, skipped
    why: str


@dataclass(frozen=True)
class Decision:
    """The engine's answer. ``reason`` is the public code a refused requester sees;
    ``explanation`` (which rule, which constraint) stays on this node."""

    allowed: bool
    reason: str
    rule_id: str | None
    explanation: str
    policy_version: int = 0
    constraints: Constraints | None = None
    charges: tuple[Charge, ...] = ()
    trace: tuple[RuleTrace, ...] = field(default=(), compare=False)
