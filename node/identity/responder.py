"""The responder's side of identity checks: evaluate (round 1), look up (round 2), notices.

Round 1 multiplies each blinded element by the node's OPRF key. Round 2 turns
each person's tokens into one outcome: ``hit`` when a token matches an exact,
strong or phonetic key of a record, ``possible hit`` when only weak keys (partial
dates, phonetic family name + birth year + nationality) match, ``no hit``
otherwise. The rule that granted the lookup may exclude records from hits: by
persons category (``exclude_categories``) and the responder's own nationals
(``exclude_own_nationals``); an excluded record is as if it were not held.

On a hit or possible hit the node writes a *hit notice* for its own officers
(state.db ``identity_hits``: when, who asked, for what purpose, which record;
``rcf hits``) and, where the rule says ``hit_with_reference``, answers an opaque
reference and its NCP. On a no hit it keeps nothing but the pipeline's audit
record (digests): the open check is in memory only and is dropped after the
last chunk's lookup or at expiry.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcf.node.federation.directory_cache import DirectoryCache
from rcf.node.federation.protocol import Authorized
from rcf.node.identity.checks import (
    IDENTITY_EVALUATE,
    IDENTITY_LOOKUP,
    CheckRegistry,
    refused,
    split,
)
from rcf.node.identity.keys import Strength
from rcf.node.identity.node_keys import hit_reference
from rcf.node.identity.token_store import TAG_BYTES, Match, TokenIndex
from rcf.node.ops.state import StateDB
from rcf.protos.v1 import identity_pb2
from rcf.trust.clock import now_ms
from rcf.trust.dictionary import state_alpha3
from rcf.trust.oprf import ELEMENT_BYTES, OUTPUT_BYTES, OprfKey, blind_evaluate

HITS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS identity_hits (hit_id INTEGER PRIMARY KEY,"
    " at_ms INTEGER NOT NULL, query_id TEXT NOT NULL, requester TEXT NOT NULL,"
    " purpose TEXT NOT NULL, dataset TEXT NOT NULL, record_id TEXT NOT NULL,"
    " outcome TEXT NOT NULL, reference TEXT NOT NULL)"
)
HIT = identity_pb2.IDENTITY_OUTCOME_HIT
POSSIBLE = identity_pb2.IDENTITY_OUTCOME_POSSIBLE_HIT
NO_HIT = identity_pb2.IDENTITY_OUTCOME_NO_HIT
OUTCOME_NAMES = {HIT: "hit", POSSIBLE: "possible_hit", NO_HIT: "no_hit"}


@dataclass(frozen=True)
class HitNotice:
    hit_id: int
    at_ms: int
    query_id: str
    requester: str
    purpose: str
    dataset: str
    record_id: str
    outcome: str
    reference: str


def read_hits(state: StateDB, *, since_ms: int = 0, limit: int = 1000) -> list[HitNotice]:
    """The hit notices, newest first."""
    try:
        rows = state.read(
            "SELECT hit_id, at_ms, query_id, requester, purpose, dataset, record_id, outcome,"
            " reference FROM identity_hits WHERE at_ms >= ? ORDER BY hit_id DESC LIMIT ?",
            (since_ms, limit),
        )
    except sqlite3.OperationalError:
        return []  # no table: this node never had a hit
    return [HitNotice(*r) for r in rows]  # type: ignore[arg-type]


def contact_of(directory: DirectoryCache, member_id: str) -> identity_pb2.IdentityContact:
    """The member's first NCP in the directory (empty when it lists none)."""
    member = directory.peek().member(member_id)
    if member is None or not member.ncps:
        return identity_pb2.IdentityContact()
    n = member.ncps[0]
    return identity_pb2.IdentityContact(
        ncp_id=n.ncp_id, agency=n.agency, role=n.role, name=n.name, email=n.email,
        phone=n.phone, languages=list(n.languages), working_hours=n.working_hours,
    )  # fmt: skip


def _own_nationality(member_id: str) -> str:
    return state_alpha3(member_id) or ""  # not a state (the RSO): it has no nationals


class IdentityResponder:
    """One node's answers to identity checks; bind its specs into the node's registry."""

    def __init__(
        self,
        *,
        member_id: str,
        key: OprfKey,
        reference_key: bytes,
        data_db: Path,
        state: StateDB,
        directory: DirectoryCache,
        ttl_ms: int,
    ) -> None:
        self.member_id = member_id
        self._key = key
        self._reference_key = reference_key
        self.index = TokenIndex(data_db)
        self._state = state
        self._directory = directory
        self.checks = CheckRegistry(ttl_ms=ttl_ms)
        self._nationality = _own_nationality(member_id)
        self._key_lock = threading.Lock()
        state.run(lambda conn: conn.execute(HITS_SCHEMA))

    @property
    def key(self) -> OprfKey:
        return self._key

    def swap_key(self, key: OprfKey) -> None:
        """Use key from now on (after a rotation re-indexed under it)."""
        with self._key_lock:
            self._key = key

    # -- round 1 -------------------------------------------------------------------

    def evaluate(
        self, authorized: Authorized[identity_pb2.IdentityEvaluateRequest]
    ) -> identity_pb2.IdentityEvaluateResponse:
        request = authorized.request
        key = self._key
        check = self.checks.evaluate_chunk(
            request, authorized.requester.member_id, key.key_id, now_ms()
        )
        evaluated = b"".join(
            blind_evaluate(key, e) for e in split(request.blinded_elements, ELEMENT_BYTES)
        )
        return identity_pb2.IdentityEvaluateResponse(
            check_id=request.check_id,
            chunk=request.chunk,
            evaluated_elements=evaluated,
            oprf_key_id=key.key_id,
            check_expires_at_ms=check.expires_at_ms,
        )

    # -- round 2 -------------------------------------------------------------------

    def lookup(
        self, authorized: Authorized[identity_pb2.IdentityLookupRequest]
    ) -> identity_pb2.IdentityLookupResponse:
        request = authorized.request
        check = self.checks.lookup_chunk(request, authorized.requester.member_id, now_ms())
        if check.key_id != self._key.key_id:
            raise refused("This node's OPRF key changed; start the check again.", "key_rotated")
        indexed = self.index.key_id()
        if indexed is not None and indexed != check.key_id:
            raise refused(
                "This node's token index is being rebuilt; try again shortly.",
                "index_not_ready",
                "UNAVAILABLE",
            )
        tags = [t[:TAG_BYTES] for t in split(request.tokens, OUTPUT_BYTES)]
        found = self.index.lookup(request.dataset, tags)
        constraints = authorized.decision.constraints
        excluded_categories = set(constraints.exclude_categories) if constraints else set()
        exclude_nationals = bool(constraints and constraints.exclude_own_nationals)
        with_reference = bool(constraints and constraints.detail == "hit_with_reference")

        def kept(m: Match) -> bool:
            if m.category and m.category in excluded_categories:
                return False
            return not (exclude_nationals and self._nationality and
                        m.nationality == self._nationality)  # fmt: skip

        response = identity_pb2.IdentityLookupResponse(
            check_id=request.check_id, chunk=request.chunk
        )
        notices: list[tuple[str, str, str]] = []
        position = 0
        for count in request.key_counts:
            matches = [m for t in tags[position : position + count] for m in found.get(t, ())]
            position += count
            matches = [m for m in matches if kept(m)]
            strong = [m for m in matches if m.strength != Strength.WEAK.value]
            outcome = HIT if strong else POSSIBLE if matches else NO_HIT
            reference = ""
            if outcome != NO_HIT:
                record = (strong or matches)[0].record_id
                ref = hit_reference(self._reference_key, request.dataset, record)
                if outcome == HIT and with_reference:
                    reference = ref
                notices.append((record, OUTCOME_NAMES[outcome], ref))
            response.outcomes.append(outcome)
            response.references.append(reference)
        if notices:
            response.contact.CopyFrom(contact_of(self._directory, self.member_id))
            self._notify(authorized, request.dataset, notices)
        return response

    def _notify(
        self,
        authorized: Authorized[Any],
        dataset: str,
        notices: list[tuple[str, str, str]],
    ) -> None:
        at = now_ms()
        rows = [
            (at, authorized.query_id, authorized.requester.member_id, authorized.purpose,
             dataset, record, outcome, ref)
            for record, outcome, ref in notices
        ]  # fmt: skip

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO identity_hits (at_ms, query_id, requester, purpose, dataset,"
                " record_id, outcome, reference) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        self._state.run(write)

    def close(self) -> None:
        self.index.close()


__all__ = [
    "IDENTITY_EVALUATE",
    "IDENTITY_LOOKUP",
    "IdentityResponder",
    "read_hits",
]
