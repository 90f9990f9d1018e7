"""Aggregate: statistics from a member's store, released under the member's policy.

The query type, in the pipeline's stages:

* ``validate``: the request's form (bounds of every field), then every name and
  value against the node's data dictionary (``node.aggregate.query``). Unknown
  datasets, dimensions, measures, malformed filters and a dictionary version the
  node cannot answer for are refused here with their own codes: the dictionary is
  public, so saying which name is wrong reveals nothing.
* ``describe``: dataset, group-by, filtered dimensions, measure and the epsilon
  asked for, for the policy; the gate then charges the privacy budget.
* ``answer`` (the handler): reciprocity if the rule asks for it, then the query as
  parameterised SQL on the store. The exact table never leaves this process: it is
  handed to the release step, keyed by requester and query id.
* ``release``: the dataset's earlier released populations (every requester's) →
  ``disclosure.release`` (minimum population, differencing, noise, suppression,
  rounding, caveat) → the population is recorded only once the release succeeded.

Refusals that follow from this node's policy (reciprocity, minimum population,
differencing, group-by limit) reach the requester as ``not_permitted``; a spent
budget as ``limit_reached``. The audit record keeps the detailed code.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rcf.node.aggregate.disclosure import (
    ReleaseRefused,
    ReleaseRules,
    noise_scale,
    release,
    rules_from_decision,
)
from rcf.node.aggregate.execute import DOMAIN, OBSERVED, CellTable, execute
from rcf.node.aggregate.ledger import create_schema, populations_near_in, record_population_in
from rcf.node.aggregate.query import (
    MAX_FILTERS,
    MAX_GROUP_BY,
    MAX_NAME_LENGTH,
    MAX_SET_SIZE,
    MAX_VALUE_LENGTH,
    MAX_VERSION_LENGTH,
    TOO_MANY_DIMENSIONS,
    TOO_MANY_FILTERS,
    QueryError,
    describe,
    validate_query,
)
from rcf.node.aggregate.reciprocity import RECIPROCITY_REQUIRED, ContributorRegistry
from rcf.node.aggregate.wire import query_from_proto, table_to_proto
from rcf.node.federation.protocol import Authorized, QuerySpec, invalid_field
from rcf.node.ops.state import StateDB
from rcf.node.policy.admin import refusal
from rcf.node.policy.model import AGGREGATE as AGGREGATE_NAME
from rcf.node.policy.model import QueryDescription
from rcf.protos.v1 import aggregate_pb2
from rcf.trust.dictionary import DataDictionary
from rcf.trust.errors import RcfError

Request = aggregate_pb2.AggregateRequest
Response = aggregate_pb2.AggregateResponse


def _check_text(value: str, field: str, max_chars: int) -> None:
    if len(value) > max_chars:
        raise invalid_field(field, f"is longer than {max_chars} characters")


def validate_form(request: Request) -> None:
    """Bounds of every field a requester controls, before anything reads them."""
    q = request.query
    _check_text(q.dataset, "dataset", MAX_NAME_LENGTH)
    _check_text(q.dictionary_version, "dictionary version", MAX_VERSION_LENGTH)
    _check_text(q.measure, "measure", MAX_NAME_LENGTH)
    # The two counts keep their own codes (PROTOCOL-aggregate.md), as validate_query
    # gives them: the limits are public, so naming them reveals nothing.
    if len(q.group_by) > MAX_GROUP_BY:
        raise QueryError(
            f"A query may group by at most {MAX_GROUP_BY} dimensions.",
            reason=TOO_MANY_DIMENSIONS,
        )
    for name in q.group_by:
        _check_text(name, "group-by dimension", MAX_NAME_LENGTH)
    if len(q.filters) > MAX_FILTERS:
        raise QueryError(
            f"A query may have at most {MAX_FILTERS} filters.", reason=TOO_MANY_FILTERS
        )
    for f in q.filters:
        _check_text(f.dimension, "filter dimension", MAX_NAME_LENGTH)
        if len(f.one_of.values) > MAX_SET_SIZE:
            raise invalid_field("filter value set", f"holds more than {MAX_SET_SIZE} values")
        for v in (*f.one_of.values, f.between.low, f.between.high):
            _check_text(v, "filter value", MAX_VALUE_LENGTH)
    query_from_proto(q)  # the form of filters and the epsilon


def describe_request(request: Request) -> QueryDescription:
    query, epsilon = query_from_proto(request.query)
    return describe(query, epsilon=epsilon)


def _unbound(authorized: Authorized[Request]) -> Response:
    raise RcfError(
        "This node serves no aggregate data.", reason="unsupported", status="UNIMPLEMENTED"
    )


# The registered spec: enough for a requester (messages, bounds, policy description).
# A serving node binds its handler and release step to its store (AggregateResponder).
AGGREGATE = QuerySpec(
    name=AGGREGATE_NAME,
    request_cls=Request,
    response_cls=Response,
    answer=_unbound,
    validate=validate_form,
    describe=describe_request,
)


class AggregateResponder:
    """The responder side of Aggregate on one node: its store, dictionary and state.db."""

    def __init__(
        self,
        *,
        data_db: Path,
        dictionary: Callable[[], DataDictionary],
        state: StateDB,
        contributors: ContributorRegistry,
        rng: random.Random | None = None,
    ) -> None:
        self._data_db = data_db
        self._dictionary = dictionary
        self._state = state
        self._contributors = contributors
        self._rng = rng or random.SystemRandom()
        self._local = threading.local()
        self._pending: dict[tuple[str, str], tuple[CellTable, ReleaseRules]] = {}
        self._pending_lock = threading.Lock()
        self._history_locks: dict[str, threading.Lock] = {}
        state.run(create_schema)

    def spec(self) -> QuerySpec[Request, Response]:
        """The Aggregate spec with this node's handler and release step."""
        return replace(AGGREGATE, answer=self.answer, release=self.release, validate=self.validate)

    def _conn(self) -> sqlite3.Connection:
        # One read-only connection per server thread: SQLite connections are not shared.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            uri = f"file:{self._data_db}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=True)
            conn.execute("PRAGMA cache_size=-16384")  # 16 MB per server thread
            self._local.conn = conn
        return conn

    # -- stages -------------------------------------------------------------------

    def validate(self, request: Request) -> None:
        validate_form(request)
        query, _ = query_from_proto(request.query)
        validate_query(query, self._dictionary())

    def answer(self, authorized: Authorized[Request]) -> Response:
        """Reciprocity, then the exact table, kept for the release step."""
        query, _ = query_from_proto(authorized.request.query)
        dictionary = self._dictionary()
        vq = validate_query(query, dictionary)
        rules = rules_from_decision(authorized.decision)
        constraints = authorized.decision.constraints
        requester = authorized.requester.member_id
        if constraints is not None and constraints.reciprocity:
            try:
                self._contributors.check(requester, vq.dataset.name)
            except RcfError:
                raise refusal(RECIPROCITY_REQUIRED) from None
        table = execute(
            self._conn(),
            vq,
            grid=DOMAIN if rules.noised else OBSERVED,
            sum_clamp=rules.sum_clamp if rules.noised and vq.measure else None,
        )
        with self._pending_lock:
            self._pending[(requester, authorized.query_id)] = (table, rules)
        return Response()

    def release(self, response: Response, authorized: Authorized[Request]) -> Response:
        """Disclosure control on the exact table; record the population once released."""
        requester = authorized.requester.member_id
        with self._pending_lock:
            table, rules = self._pending.pop((requester, authorized.query_id))
        k = rules.min_cell_size
        with self._history_lock(table.dataset):
            history = self._state.run(
                lambda conn: populations_near_in(
                    conn, requester, table.dataset, table.population, k
                )
            )
            assert isinstance(history, tuple)
            try:
                released = release(table, rules, rng=self._rng, history=history)
            except ReleaseRefused as exc:
                raise refusal(exc.audit_reason) from None
            self._state.run(
                lambda conn: record_population_in(
                    conn,
                    requester=requester,
                    dataset=table.dataset,
                    query_id=authorized.query_id,
                    population=table.population,
                )
            )
        scale = None
        if rules.noised and rules.epsilon is not None and table.sensitivity is not None:
            scale = noise_scale(rules.noise, rules.epsilon, table.sensitivity, rules.delta)
        response.table.CopyFrom(
            table_to_proto(
                released,
                scale=scale,
                delta=rules.delta if rules.noise == "discrete_gaussian" else None,
                dictionary_version=self._dictionary().version,
            )
        )
        return response

    def _history_lock(self, dataset: str) -> threading.Lock:
        # Check-release-record is one step per dataset (the history spans requesters), so
        # two queries in flight cannot both pass the differencing check against it.
        with self._pending_lock:
            return self._history_locks.setdefault(dataset, threading.Lock())
