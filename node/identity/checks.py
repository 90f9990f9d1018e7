"""The identity check protocol: its bounds, its two query types and the responder's
memory of open checks (protos/PROTOCOL-identity.md is the normative text).

``IdentityFilter`` hands the requester the responder's membership structure
(``node.identity.filter``). Round 1 (``IdentityEvaluate``) carries blinded OPRF
elements and creates or extends a *check*; round 2 (``IdentityLookup``), sent
only for persons whose tokens are in the filter, carries those tokens and gets
one outcome per listed person. The responder keeps a check in memory only
(``CheckRegistry``), keyed by (requester, check id), until every person has been
looked up or it expires; a round 2 for a check it does not hold, from another
requester, before round 1 is complete or repeated for a person is refused.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rcf.node.federation.protocol import Authorized, QuerySpec, invalid_field, valid_query_id
from rcf.node.policy.model import IDENTITY_CHECK, QueryDescription
from rcf.protos.v1 import identity_pb2
from rcf.trust.errors import RequestRejected
from rcf.trust.oprf import ELEMENT_BYTES, OUTPUT_BYTES, InvalidElement, deserialize_element

DATASETS = ("persons", "documents")
MAX_CHECK_PERSONS = 10_000  # persons in one check (a manifest); larger: split it
MAX_KEYS_PER_PERSON = 64
MAX_CHUNK_KEYS = 8_192  # round 1: 256 KiB of elements; round 2: 512 KiB of tokens
MAX_CHUNK_PERSONS = 2_048
MAX_CHUNKS = MAX_CHECK_PERSONS  # every chunk holds at least one person
MAX_OPEN_CHECKS = 32  # per requester, in the responder's memory, round 1 not yet complete
# Checks whose round 1 is complete stay (counts only) for an optional round 2 until they
# expire; a no hit never sends one, so past this many per requester the oldest go first.
MAX_EVALUATED_CHECKS = 1_024
DEFAULT_CHECK_TTL_MS = 120_000

EVALUATE = "IdentityEvaluate"
LOOKUP = "IdentityLookup"
FILTER = "IdentityFilter"


def refused(sentence: str, reason: str, status: str = "FAILED_PRECONDITION") -> RequestRejected:
    return RequestRejected(sentence, reason=reason, status=status)


def _check_counts(counts: list[int] | Any, field: str) -> int:
    if not 1 <= len(counts) <= MAX_CHUNK_PERSONS:
        raise invalid_field(field, f"must list 1 to {MAX_CHUNK_PERSONS} persons")
    if any(not 1 <= c <= MAX_KEYS_PER_PERSON for c in counts):
        raise invalid_field(field, f"must give each person 1 to {MAX_KEYS_PER_PERSON} keys")
    total = int(sum(counts))
    if total > MAX_CHUNK_KEYS:
        raise invalid_field(field, f"adds up to more than {MAX_CHUNK_KEYS} keys in one chunk")
    return total


def _check_common(check_id: str, dataset: str, chunk: int) -> None:
    if not valid_query_id(check_id):
        raise invalid_field("check_id", "is not a UUID in canonical lower-case form")
    if dataset not in DATASETS:
        raise invalid_field("dataset", f"must be one of {', '.join(DATASETS)}")
    if chunk >= MAX_CHUNKS:
        raise invalid_field("chunk", f"must be below {MAX_CHUNKS}")


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def validate_evaluate(request: identity_pb2.IdentityEvaluateRequest) -> None:
    """Bounds of round 1, every element checked before the policy charges anything."""
    _check_common(request.check_id, request.dataset, request.chunk)
    if request.total_persons > MAX_CHECK_PERSONS:
        raise refused(
            f"The check has more than {MAX_CHECK_PERSONS} persons; split it.",
            "batch_too_large",
            "RESOURCE_EXHAUSTED",
        )
    if request.total_persons < 1:
        raise invalid_field("total_persons", "must be at least 1")
    keys = _check_counts(list(request.key_counts), "key_counts")
    if len(request.key_counts) > request.total_persons:
        raise invalid_field("key_counts", "lists more persons than the check declares")
    if len(request.blinded_elements) != keys * ELEMENT_BYTES:
        raise invalid_field("blinded_elements", f"must hold {ELEMENT_BYTES} bytes per key")
    try:
        for element in split(request.blinded_elements, ELEMENT_BYTES):
            deserialize_element(element)
    except InvalidElement as exc:
        raise RequestRejected(
            "A blinded element is not a valid ristretto255 element (or is the identity).",
            reason="invalid_element",
            status="INVALID_ARGUMENT",
        ) from exc


def validate_lookup(request: identity_pb2.IdentityLookupRequest) -> None:
    _check_common(request.check_id, request.dataset, 0)
    keys = _check_counts(list(request.key_counts), "key_counts")
    persons = list(request.persons)
    if len(persons) != len(request.key_counts):
        raise invalid_field("persons", "must list one position per key count")
    if any(b <= a for a, b in itertools.pairwise(persons)):
        raise invalid_field("persons", "must be strictly increasing")
    if persons[-1] >= MAX_CHECK_PERSONS:
        raise invalid_field("persons", f"must be below {MAX_CHECK_PERSONS}")
    if len(request.tokens) != keys * OUTPUT_BYTES:
        raise invalid_field("tokens", f"must hold {OUTPUT_BYTES} bytes per key")


VERSION_CHARS = frozenset("0123456789abcdef")


def validate_filter(request: identity_pb2.IdentityFilterRequest) -> None:
    if request.dataset not in DATASETS:
        raise invalid_field("dataset", f"must be one of {', '.join(DATASETS)}")
    if request.version and (
        len(request.version) != 32 or not set(request.version) <= VERSION_CHARS
    ):
        raise invalid_field("version", "must be empty or 32 lower-case hex characters")
    if request.page and not request.version:
        raise invalid_field("version", "must name the version of the page asked for")
    if request.page >= 1 << 20:
        raise invalid_field("page", "is out of range")


def describe_filter(request: identity_pb2.IdentityFilterRequest) -> QueryDescription:
    # Held against the same rule as the checks; fetching it checks no one.
    return QueryDescription(IDENTITY_CHECK, dataset=request.dataset, items=0)


def describe_evaluate(request: identity_pb2.IdentityEvaluateRequest) -> QueryDescription:
    # The whole check is charged (and held against max_batch) at its first chunk.
    items = int(request.total_persons) if request.chunk == 0 else 0
    return QueryDescription(IDENTITY_CHECK, dataset=request.dataset, items=items)


def describe_lookup(request: identity_pb2.IdentityLookupRequest) -> QueryDescription:
    return QueryDescription(IDENTITY_CHECK, dataset=request.dataset, items=0)


# -- the responder's memory of open checks ------------------------------------------


@dataclass
class OpenCheck:
    """What a responder remembers of a check between its rounds: counts, never content."""

    requester: str
    check_id: str
    dataset: str
    total_persons: int
    key_id: str
    expires_at_ms: int
    counts: list[int] = field(default_factory=list)  # round 1 keys per person, in order
    chunks: int = 0
    looked_up: set[int] = field(default_factory=set)  # positions that had their round 2

    @property
    def persons(self) -> int:
        return len(self.counts)

    @property
    def evaluated(self) -> bool:
        return self.persons == self.total_persons


class CheckRegistry:
    """Open checks by (requester, check id), in memory, each until it expires."""

    def __init__(self, *, ttl_ms: int = DEFAULT_CHECK_TTL_MS) -> None:
        self.ttl_ms = ttl_ms
        self._checks: dict[tuple[str, str], OpenCheck] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._checks)

    def _prune(self, now_ms: int) -> None:
        for k in [k for k, c in self._checks.items() if c.expires_at_ms <= now_ms]:
            del self._checks[k]

    def _forget_oldest_evaluated(self, requester: str) -> None:
        evaluated = [(c.expires_at_ms, k) for k, c in self._checks.items()
                     if c.requester == requester and c.evaluated]  # fmt: skip
        if len(evaluated) >= MAX_EVALUATED_CHECKS:
            for _, k in sorted(evaluated)[: len(evaluated) - MAX_EVALUATED_CHECKS + 1]:
                del self._checks[k]

    def evaluate_chunk(
        self, request: identity_pb2.IdentityEvaluateRequest, requester: str, key_id: str, now: int
    ) -> OpenCheck:
        """Open the check (chunk 0) or extend it (next chunk), or refuse."""
        counts = [int(c) for c in request.key_counts]
        with self._lock:
            self._prune(now)
            k = (requester, request.check_id)
            check = self._checks.get(k)
            if request.chunk == 0:
                if check is not None:
                    raise refused("That check id is already in use.", "check_id_in_use")
                in_round1 = sum(c.requester == requester and not c.evaluated
                                for c in self._checks.values())  # fmt: skip
                if in_round1 >= MAX_OPEN_CHECKS:
                    raise refused(
                        f"You have {MAX_OPEN_CHECKS} checks open here; finish or let them expire.",
                        "too_many_open_checks",
                        "RESOURCE_EXHAUSTED",
                    )
                check = OpenCheck(
                    requester, request.check_id, request.dataset, int(request.total_persons),
                    key_id, now + self.ttl_ms,
                )  # fmt: skip
                self._checks[k] = check
            elif check is None:
                raise refused("No such check is open here (unknown or expired).", "unknown_check")
            elif check.dataset != request.dataset or check.total_persons != request.total_persons:
                raise refused("The chunk does not match its check.", "check_mismatch")
            elif request.chunk != check.chunks:
                raise refused("Round 1 chunks must come in order.", "chunk_out_of_order")
            elif check.key_id != key_id:
                del self._checks[k]
                raise refused("This node's OPRF key changed; start the check again.",
                              "key_rotated")  # fmt: skip
            if check.persons + len(counts) > check.total_persons:
                raise refused("The chunks hold more persons than the check declares.",
                              "check_mismatch")  # fmt: skip
            if check.persons + len(counts) == check.total_persons:
                self._forget_oldest_evaluated(requester)
            check.counts += counts
            check.chunks += 1
            return check

    def lookup(
        self, request: identity_pb2.IdentityLookupRequest, requester: str, now: int
    ) -> OpenCheck:
        """Claim round 2 for the listed persons (once each), or refuse."""
        with self._lock:
            self._prune(now)
            k = (requester, request.check_id)
            check = self._checks.get(k)
            # Another requester's check id is simply not found under this requester.
            if check is None:
                raise refused("No such check is open here (unknown or expired).", "unknown_check")
            if check.dataset != request.dataset:
                raise refused("The lookup does not match its check.", "check_mismatch")
            if not check.evaluated:
                raise refused("Round 1 of that check is not complete.", "check_not_evaluated")
            persons = [int(p) for p in request.persons]
            if persons[-1] >= check.total_persons:
                raise refused("The lookup names a person the check does not have.",
                              "check_mismatch")  # fmt: skip
            if any(p in check.looked_up for p in persons):
                raise refused("A listed person was already looked up.", "already_looked_up")
            if any(int(c) > check.counts[p] for p, c in zip(persons, request.key_counts,
                                                              strict=True)):  # fmt: skip
                raise refused("A person has more tokens than round 1 evaluated.",
                              "key_counts_mismatch")  # fmt: skip
            check.looked_up.update(persons)
            if len(check.looked_up) == check.total_persons:
                del self._checks[k]
            return check


# -- the two query types --------------------------------------------------------------


def unbound_answer(authorized: Authorized[Any]) -> Any:
    raise RequestRejected(
        "This node does not answer identity checks.", reason="unsupported", status="UNIMPLEMENTED"
    )


IDENTITY_EVALUATE: QuerySpec[
    identity_pb2.IdentityEvaluateRequest, identity_pb2.IdentityEvaluateResponse
] = QuerySpec(
    name=EVALUATE,
    request_cls=identity_pb2.IdentityEvaluateRequest,
    response_cls=identity_pb2.IdentityEvaluateResponse,
    answer=unbound_answer,
    validate=validate_evaluate,
    describe=describe_evaluate,
)

IDENTITY_LOOKUP: QuerySpec[
    identity_pb2.IdentityLookupRequest, identity_pb2.IdentityLookupResponse
] = QuerySpec(
    name=LOOKUP,
    request_cls=identity_pb2.IdentityLookupRequest,
    response_cls=identity_pb2.IdentityLookupResponse,
    answer=unbound_answer,
    validate=validate_lookup,
    describe=describe_lookup,
)

IDENTITY_FILTER: QuerySpec[
    identity_pb2.IdentityFilterRequest, identity_pb2.IdentityFilterResponse
] = QuerySpec(
    name=FILTER,
    request_cls=identity_pb2.IdentityFilterRequest,
    response_cls=identity_pb2.IdentityFilterResponse,
    answer=unbound_answer,
    validate=validate_filter,
    describe=describe_filter,
)

Answer = Callable[[Authorized[Any]], Any]
