"""A regional query: one aggregate query to many members in parallel, under one deadline.

Every member asked has an outcome — answered, refused (with the reason code its
node sent), unreachable, timed out, or invalid (an answer that failed verification
or does not fit the query) — and the answered tables are merged
(``node.aggregate.merge``). A member still working when the deadline passes is
marked timed out and left behind: the caller gets its answer on time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass

from rcf.node.aggregate.merge import (
    ANSWERED,
    INVALID,
    REFUSED,
    TIMED_OUT,
    UNREACHABLE,
    MemberResult,
    MergedTable,
    merge,
)
from rcf.node.aggregate.query import ValidatedQuery
from rcf.node.aggregate.responder import AGGREGATE
from rcf.node.aggregate.wire import table_from_proto
from rcf.node.federation.peers import PeerAnswer, PeerClient
from rcf.protos.v1 import aggregate_pb2
from rcf.trust.directory import Directory, MemberStatus
from rcf.trust.errors import RcfError

MAX_DEADLINE_MS = 120_000
MAX_MEMBERS = 256  # members asked in one query (the network has about 50)
MAX_PARALLEL = 64  # calls in flight at once


@dataclass(frozen=True)
class MemberCall:
    """One member's outcome with what its node sent (the table when answered)."""

    member: str
    outcome: str
    reason: str = ""
    query_id: str = ""
    latency_ms: float = 0.0
    table: aggregate_pb2.AggregateTable | None = None


@dataclass(frozen=True)
class RegionalResult:
    merged: MergedTable
    calls: tuple[MemberCall, ...]
    wall_ms: float


def regional_members(directory: Directory) -> list[str]:
    """Every active member of the directory (nodes or not: one without a node is
    reported unreachable, never silently left out)."""
    return sorted(m.member_id for m in directory.members if m.status is MemberStatus.ACTIVE)


def outcome_of(error: RcfError) -> tuple[str, str]:
    """(outcome, reason) for a failed call."""
    reason = error.reason
    if reason == "timeout":
        return TIMED_OUT, "deadline"
    if reason.startswith("refused"):
        return REFUSED, reason.partition(":")[2] or "refused"
    if reason == "bad_answer":
        return INVALID, reason
    if reason == "unreachable":
        return UNREACHABLE, "unreachable"
    if reason == "peer_error":  # the directory lists no node endpoint for the member
        return UNREACHABLE, "no_endpoint"
    return UNREACHABLE, reason


Call = Callable[[str, float], PeerAnswer[aggregate_pb2.AggregateResponse]]


def fan_out(call: Call, members: Sequence[str], deadline_s: float) -> list[MemberCall]:
    """call(member, timeout_s) for every member at once; outcomes in members' order."""
    started = time.monotonic()
    deadline = started + deadline_s

    def one(member: str) -> MemberCall:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return MemberCall(member, TIMED_OUT, "deadline")
        try:
            answer = call(member, remaining)
        except RcfError as exc:
            outcome, reason = outcome_of(exc)
            return MemberCall(member, outcome, reason)
        return MemberCall(
            member,
            ANSWERED,
            query_id=answer.query_id,
            latency_ms=answer.latency_ms,
            table=answer.response.table,
        )

    pool = ThreadPoolExecutor(max_workers=max(1, min(len(members), MAX_PARALLEL)))
    try:
        futures: list[Future[MemberCall]] = [pool.submit(one, m) for m in members]
        wait_for(futures, timeout=max(0.0, deadline - time.monotonic()))
    finally:
        # Calls still running end at their own gRPC deadline (the same one); nobody waits.
        pool.shutdown(wait=False, cancel_futures=True)
    out = []
    for member, future in zip(members, futures, strict=True):
        if future.done() and not future.cancelled():
            out.append(future.result())
        else:
            out.append(MemberCall(member, TIMED_OUT, "deadline"))
    return out


def query_members(
    peers: PeerClient,
    vq: ValidatedQuery,
    query_msg: aggregate_pb2.AggregateQuery,
    *,
    members: Sequence[str],
    purpose: str,
    deadline_s: float,
) -> RegionalResult:
    """Ask members vq (as query_msg) in parallel under deadline_s; merge what comes back."""
    if not 0 < deadline_s * 1000 <= MAX_DEADLINE_MS:
        raise RcfError(
            f"The deadline must be above 0 and at most {MAX_DEADLINE_MS // 1000} s.",
            reason="bad_deadline",
            status="INVALID_ARGUMENT",
        )
    if not members:
        raise RcfError(
            "Name at least one member to ask.", reason="no_members", status="INVALID_ARGUMENT"
        )
    if len(members) > MAX_MEMBERS:
        raise RcfError(
            f"At most {MAX_MEMBERS} members can be asked at once.",
            reason="too_many_members",
            status="INVALID_ARGUMENT",
        )

    def fill(request: aggregate_pb2.AggregateRequest) -> None:
        request.query.CopyFrom(query_msg)

    def call(member: str, timeout_s: float) -> PeerAnswer[aggregate_pb2.AggregateResponse]:
        return peers.call(
            AGGREGATE, responder=member, purpose=purpose, fill=fill, timeout_s=timeout_s
        )

    started = time.perf_counter()
    calls = fan_out(call, members, deadline_s)
    int_dims = [d.kind == "int" for d in vq.group_by]
    results = []
    checked = []
    for c in calls:
        if c.table is None:
            results.append(MemberResult(c.member, c.outcome, c.reason))
            checked.append(c)
            continue
        try:
            table = table_from_proto(c.table, int_dims)
        except RcfError:
            results.append(MemberResult(c.member, INVALID, "bad_answer"))
            checked.append(MemberCall(c.member, INVALID, "bad_answer", c.query_id, c.latency_ms))
            continue
        results.append(MemberResult(c.member, ANSWERED, table=table))
        checked.append(c)
    merged = merge(results, dataset=vq.dataset.name, measure=vq.measure, dimensions=vq.dimensions)
    # An answer that does not fit the query is invalid in the outcomes too.
    by_member = {o.member: o for o in merged.outcomes}
    final = tuple(_with_outcome(c, by_member[c.member].outcome, by_member[c.member].reason)
                  for c in checked)  # fmt: skip
    return RegionalResult(
        merged=merged, calls=final, wall_ms=(time.perf_counter() - started) * 1000
    )


def _with_outcome(call: MemberCall, outcome: str, reason: str) -> MemberCall:
    if call.outcome == outcome:
        return call
    return MemberCall(call.member, outcome, reason, call.query_id, call.latency_ms)
