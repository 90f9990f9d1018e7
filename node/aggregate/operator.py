"""The local operator call behind `rcf query aggregate` and `rcf report situation`.

The CLI never holds the signing key: it hands the query to its own node, which
checks it against its dictionary, signs one request per member, sends them in
parallel under one deadline, verifies and audits every answer, merges the
tables, remembers which members contributed (for reciprocity) and returns every
member's outcome with the merged table.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from rcf.node.aggregate.disclosure import SUPPRESSED_PRIMARY, SUPPRESSED_SECONDARY
from rcf.node.aggregate.merge import ANSWERED
from rcf.node.aggregate.query import validate_query
from rcf.node.aggregate.reciprocity import ContributorRegistry
from rcf.node.aggregate.regional import MemberCall, RegionalResult, query_members, regional_members
from rcf.node.aggregate.wire import (
    STATUS_TO_WIRE,
    disclosure_summary,
    merged_to_proto,
    query_from_proto,
)
from rcf.node.federation.peers import PeerClient
from rcf.node.federation.protocol import valid_purpose_form
from rcf.node.ops.operator import authenticate
from rcf.protos.v1 import aggregate_pb2, aggregate_pb2_grpc
from rcf.trust.dictionary import DataDictionary
from rcf.trust.directory import Directory
from rcf.trust.errors import RcfError
from rcf.trust.serving import refusals_as_status

DEFAULT_PURPOSE = "regional-analysis"
_SUPPRESSED = {STATUS_TO_WIRE[SUPPRESSED_PRIMARY], STATUS_TO_WIRE[SUPPRESSED_SECONDARY]}


def _bad(message: str, reason: str) -> RcfError:
    return RcfError(message, reason=reason, status="INVALID_ARGUMENT")


def members_to_ask(
    request: aggregate_pb2.AggregateOperatorRequest, directory: Directory
) -> list[str]:
    """The regional list, or the named members (each must be in the directory)."""
    if request.regional and request.members:
        raise _bad("Give either --regional or --members, not both.", "bad_members")
    if request.regional:
        return regional_members(directory)
    named: list[str] = []
    for raw in request.members:
        member = raw.strip().upper()
        if directory.member(member) is None:
            raise _bad(f"{member[:16]} is not a member of this network.", "unknown_member")
        if member not in named:
            named.append(member)
    if not named:
        raise _bad("Name the members to ask (--members AU,TH) or ask --regional.", "no_members")
    return named


def run_operator_query(
    request: aggregate_pb2.AggregateOperatorRequest,
    *,
    peers: PeerClient,
    directory: Directory,
    dictionary: DataDictionary,
    contributors: ContributorRegistry | None = None,
) -> aggregate_pb2.RegionalAggregate:
    """Check, fan out, merge; the operator API's answer."""
    query_msg = aggregate_pb2.AggregateQuery()
    query_msg.CopyFrom(request.query)
    if not query_msg.dictionary_version:
        query_msg.dictionary_version = dictionary.version
    query, _ = query_from_proto(query_msg)
    vq = validate_query(query, dictionary)
    purpose = request.purpose or DEFAULT_PURPOSE
    if not valid_purpose_form(purpose) or purpose not in dictionary.purposes:
        raise _bad("The purpose is not one the data dictionary lists.", "unknown_purpose")
    if request.deadline_ms <= 0:
        raise _bad("The deadline must be above 0.", "bad_deadline")
    members = members_to_ask(request, directory)
    result = query_members(
        peers,
        vq,
        query_msg,
        members=members,
        purpose=purpose,
        deadline_s=request.deadline_ms / 1000,
    )
    if contributors is not None:
        contributors.record(
            [c.member for c in result.calls if c.outcome == ANSWERED], vq.dataset.name
        )
    return to_proto(result, dictionary_version=query_msg.dictionary_version, purpose=purpose)


def _outcome(call: MemberCall) -> aggregate_pb2.MemberOutcome:
    out = aggregate_pb2.MemberOutcome(
        member_id=call.member,
        outcome=call.outcome,
        reason=call.reason,
        query_id=call.query_id,
        latency_ms=call.latency_ms,
    )
    if call.table is not None and call.outcome == ANSWERED:
        out.disclosure.CopyFrom(disclosure_summary(call.table))
        suppressed = sum(1 for c in call.table.cells if c.status in _SUPPRESSED)
        out.cells_suppressed = suppressed
        out.cells_released = len(call.table.cells) - suppressed
    return out


def to_proto(
    result: RegionalResult, *, dictionary_version: str, purpose: str
) -> aggregate_pb2.RegionalAggregate:
    merged = result.merged
    return aggregate_pb2.RegionalAggregate(
        dataset=merged.dataset,
        measure=merged.measure or "",
        dimensions=list(merged.dimensions),
        cells=merged_to_proto(merged),
        members=[_outcome(c) for c in result.calls],
        wall_ms=result.wall_ms,
        dictionary_version=dictionary_version,
        purpose=purpose,
    )


class AggregateOperatorServicer(aggregate_pb2_grpc.AggregateOperatorServicer):
    def __init__(
        self,
        *,
        token: str,
        peers: PeerClient,
        directory: Callable[[], Directory],
        dictionary: Callable[[], DataDictionary],
        contributors: ContributorRegistry | None,
    ) -> None:
        self._token = token.encode()
        self._peers = peers
        self._directory = directory
        self._dictionary = dictionary
        self._contributors = contributors

    @refusals_as_status
    def QueryAggregate(
        self, request: aggregate_pb2.AggregateOperatorRequest, context: grpc.ServicerContext
    ) -> aggregate_pb2.RegionalAggregate:
        authenticate(context, self._token)
        return run_operator_query(
            request,
            peers=self._peers,
            directory=self._directory(),
            dictionary=self._dictionary(),
            contributors=self._contributors,
        )
